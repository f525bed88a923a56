"""Collect every run below some paths into tidy pandas frames (docs/design.md §6–7): a
:class:`Collection` of

- ``runs``: one row per run directory, ``META`` then the flattened config (``seed``: the base);
- ``results``: one row per realization, also of runs that did not finish (summary columns
  empty); ``counted`` is false for a network (config and seed) an earlier run already holds,
  ``duplicate_of`` names that run; the config's seed is ``base_seed``;
- ``curves``, ``spectra``, ``diagnostics``: the run files with ``run, experiment, condition,
  status`` and the condition keys, without duplicate networks' rows;
- ``notes``: runs holding duplicates, conditions pooling code versions or devices.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from flossrun.contract import (
    DIAGNOSTICS_COLUMNS,
    METRICS_COLUMNS,
    SPECTRA_COLUMNS,
    SUMMARY_COLUMNS,
)
from flossrun.report.conditions import (
    as_keys,
    condition_keys,
    identity_columns,
    label_conditions,
)
from flossrun.report.presets import preset_report, with_preset
from flossrun.report.rundir import RunFolder, find_run_dirs, load_run
from flossrun.report.stats import counted

META = [
    "run", "status", "reason", "conflict", "code", "ran_on", "experiment", "condition", "overrides",
]  # fmt: skip


@dataclass
class Collection:
    """Tidy frames of a set of runs; ``cell_keys`` and ``settings`` are per experiment."""

    runs: pd.DataFrame
    results: pd.DataFrame
    curves: pd.DataFrame
    spectra: pd.DataFrame
    diagnostics: pd.DataFrame
    cell_keys: dict[str, list[str]] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def experiments(self) -> list[str]:
        """Experiment (preset) names with at least one readable config, sorted."""
        return sorted(self.runs["experiment"].dropna().unique().tolist())

    def report_node(self, preset: str | None = None) -> dict[str, Any]:
        """The ``report:`` node of ``preset`` (default: the first experiment) as its runs
        recorded it, else its preset file's (a pilot sweep reported as that preset)."""
        name = preset or (self.experiments[0] if self.experiments else "")
        return self.settings.get(name) or preset_report(name)

    def config(self) -> pd.DataFrame:
        """Flattened config, one row per run, indexed by ``run``."""
        return self.runs.set_index("run").drop(columns=META[1:])

    def subset(self, experiment: str, finished: bool = True) -> Collection:
        """The runs of one experiment (by default only the finished ones)."""
        keep = self.runs["experiment"] == experiment
        if finished:
            keep &= self.runs["status"] == "finished"
        runs = self.runs[keep]
        frames = {f: getattr(self, f) for f in ("results", "curves", "spectra", "diagnostics")}
        picked = {f: df[df["run"].isin(runs["run"])] for f, df in frames.items()}
        return replace(self, runs=runs, **picked)


def _realization_rows(run: RunFolder) -> pd.DataFrame:
    """The summary, or placeholder rows (realization, seed) for a run without one."""
    if run.summary is not None:
        return run.summary
    try:
        n, base = int(run.config["realizations"]), int(run.config["seed"])
        return pd.DataFrame({"realization": range(n), "seed": range(base, base + n)})
    except (KeyError, TypeError, ValueError):
        return pd.DataFrame({"realization": [pd.NA], "seed": [pd.NA]})


def _concat(frames: list[pd.DataFrame], columns: Iterable[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(frames, ignore_index=True)


def _experiment(run: RunFolder) -> str:
    """The experiment (preset) name: the config's ``name``."""
    return str(run.config.get("name", "unnamed"))


def _assign_conditions(runs: pd.DataFrame, loaded: list[RunFolder], config_columns: list[str]):
    """Fill ``runs.condition``; returns (cell_keys, order, settings) per experiment. The keys:
    those the ``report:`` node declares (``grid``, ``condition``, ``x``), then any other key
    that still tells runs apart (:func:`condition_keys`)."""
    cell_keys, order, settings = {}, {}, {}
    runs["condition"] = ""
    for exp, idx in runs.groupby("experiment").groups.items():
        recorded = (r.settings for r in loaded if r.config and _experiment(r) == exp)
        settings[exp] = with_preset(next((s for s in recorded if s), {}), str(exp))
        declared = [
            k for key in ("grid", "condition", "x") for k in as_keys(settings[exp].get(key))
        ]
        config = runs.loc[idx, config_columns]
        cell_keys[exp] = condition_keys(config, declared)
        labels, order[exp] = label_conditions(config, cell_keys[exp], default=str(exp))
        runs.loc[idx, "condition"] = labels
    return cell_keys, order, settings


def _mark_duplicates(results: pd.DataFrame, config_columns: list[str]) -> list[str]:
    """Set ``counted``/``duplicate_of`` (the first copy of a network counts); one note per run
    holding duplicates."""
    results["counted"] = results["status"] == "finished"
    results["duplicate_of"] = ""
    done = results[results["counted"] & results["seed"].notna()]  # no seed: nothing to match
    if done.empty:
        return []
    # map(str), not astype(str): pandas ≥ 3 keeps missing values (a key only some models have,
    # e.g. model.l1) as NaN in a str column, which join cannot take
    identity = done[["experiment", *identity_columns(config_columns), "seed"]].map(str)
    network = identity.apply("\x1f".join, axis=1)
    kept = done.index.to_series().groupby(network).transform("first")
    dup = kept.index[kept != kept.index]
    dup = dup[done.loc[dup, "run"].to_numpy() != done.loc[kept[dup], "run"].to_numpy()]
    results.loc[dup, "counted"] = False
    results.loc[dup, "duplicate_of"] = done.loc[kept[dup], "run"].to_numpy()
    acc = results["test_accuracy"].astype("float64")
    a, b = acc[dup].to_numpy(), acc[kept[dup]].to_numpy()
    differs = pd.Series((a != b) & ~(np.isnan(a) & np.isnan(b)), index=dup)
    notes = []
    for (run, first), rows in results.loc[dup].groupby(["run", "duplicate_of"], sort=False):
        seeds = ", ".join(str(s) for s in rows["seed"])
        note = (
            f"duplicate network(s) dropped: seed(s) {seeds} of {run} — same config and seed "
            f"as in {first}; counted once"
        )
        odd = [
            f"{s} ({acc[i]:.4g} here, {acc[kept[i]]:.4g} there)"
            for i, s in rows["seed"].items()
            if differs[i]
        ]
        if odd:
            note += f"; the copies' test accuracy differs for seed(s) {', '.join(odd)}"
        notes.append(note)
    return notes


def _version_notes(results: pd.DataFrame) -> list[str]:
    """One note per condition whose counted runs come from several code versions or devices."""
    notes = []
    for (exp, cond), g in counted(results).groupby(["experiment", "condition"], sort=False):
        runs = g.drop_duplicates("run")
        per = runs["code"].value_counts()
        if len(per) > 1:
            versions = ", ".join(f"{v} ({n} run(s))" for v, n in sorted(per.items()))
            dirty = " (dirty: uncommitted changes)" if per.index.str.contains("dirty").any() else ""
            notes.append(f"{exp} / {cond} pools runs of different code versions: {versions}{dirty}")
        devices = sorted(set(runs["ran_on"]) - {""})
        if len(devices) > 1:
            notes.append(f"{exp} / {cond} pools runs on different devices: {', '.join(devices)}")
    return notes


def collect(paths: Iterable[str | os.PathLike[str]]) -> Collection:
    """Find and read every run below ``paths``; never raises on bad run files."""
    loaded = [load_run(p) for p in find_run_dirs(paths)]
    rows = []
    for r in loaded:
        meta = {"run": str(r.path), "status": r.status, "reason": r.reason}
        meta |= {"conflict": r.conflict, "code": r.code, "ran_on": r.ran_on}
        meta["experiment"] = _experiment(r) if r.config else pd.NA
        meta["overrides"] = " ".join(r.overrides)
        rows.append({**meta, **{k: v for k, v in r.config.items() if k != "name"}})
    runs = pd.DataFrame(rows, columns=[*META[:7], "overrides"]) if not rows else pd.DataFrame(rows)
    config_columns = [c for c in runs.columns if c not in META]
    cell_keys, order, settings = _assign_conditions(runs, loaded, config_columns)
    # runs by experiment (unreadable configs last), condition in sorted order, then path
    pairs = zip(runs["experiment"], runs["condition"], strict=True)
    rank = [(1, "", 0) if pd.isna(e) else (0, str(e), order[e].index(c)) for e, c in pairs]
    ranked = sorted(range(len(runs)), key=rank.__getitem__)  # stable: paths stay in order
    runs, loaded = runs[META + config_columns].iloc[ranked], [loaded[i] for i in ranked]

    per_run = [_realization_rows(r).assign(run=str(r.path)) for r in loaded]
    columns = ["run", *SUMMARY_COLUMNS]  # a run without a summary: its columns empty
    results = _concat(per_run, columns).reindex(columns=columns)
    config = runs[["run", *config_columns]].rename(columns={"seed": "base_seed"})
    results = runs[META].merge(results, on="run", how="right").merge(config, on="run", how="left")
    notes = _mark_duplicates(results, config_columns)
    notes += _version_notes(results)
    results = results[[*META, "counted", "duplicate_of", *SUMMARY_COLUMNS, *config.columns[1:]]]
    dropped = results.loc[results["duplicate_of"] != "", ["run", "seed"]]

    keys = list(dict.fromkeys(k for ks in cell_keys.values() for k in ks))
    attach = runs[["run", "experiment", "condition", "status", *keys]]

    def tidy(attr: str, columns: tuple[str, ...]) -> pd.DataFrame:
        frames = [(getattr(r, attr), str(r.path)) for r in loaded]
        df = _concat([f.assign(run=run) for f, run in frames if f is not None], ["run", *columns])
        df = df[["run", *columns]].merge(attach, on="run", how="left")
        if len(dropped) and len(df):  # a duplicate network's curves would be pooled twice
            key = df["run"] + "\x1f" + df["seed"].astype(str)
            df = df[~key.isin(dropped["run"] + "\x1f" + dropped["seed"].astype(str))]
        return df[["run", "experiment", "condition", "status", *columns, *keys]]

    return Collection(
        runs=runs,
        results=results,
        curves=tidy("metrics", METRICS_COLUMNS),
        spectra=tidy("spectra", SPECTRA_COLUMNS),
        diagnostics=tidy("diagnostics", DIAGNOSTICS_COLUMNS),
        cell_keys=cell_keys,
        settings=settings,
        notes=notes,
    )
