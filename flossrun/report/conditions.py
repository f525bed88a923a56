"""Conditions: the config keys that tell runs apart, their labels, and per-condition statistics.

A *condition* is the set of runs that share every setting but the seed; their realizations are
pooled (the seeds of a multirun and the realizations inside each run count alike). The keys come
from the varying config keys of an experiment (``seed`` excluded), reduced greedily to a minimal
set that separates the same runs: overridden keys and the preset's ``report.condition`` and
``report.x`` first, then group names (``floss.name``), so ``floss=pre`` wins over the
``floss.pre_epochs`` it implies.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from flossrun.report.style import colours

if TYPE_CHECKING:
    from flossrun.report.collect import Collection

NOT_CONDITIONS = {
    "name",
    "seed",
    "device",
    "threads",
    "report",
    "train.log_every",
    "train.checkpoint_every",
}


def as_keys(value: Any) -> list[str]:
    """A dotted key or a list of them (``report.condition``) as a list of strings."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value]


def override_keys(overrides: Iterable[str], columns: Iterable[str]) -> list[str]:
    """Config keys named by Hydra overrides (``floss=pre`` → ``floss.name``, ``+task.T=9``)."""
    columns = set(columns)
    keys: list[str] = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~").replace("/", ".")
        if key + ".name" in columns:
            key += ".name"
        if key in columns and key not in keys:
            keys.append(key)
    return keys


def _n_settings(config: pd.DataFrame, keys: Sequence[str]) -> int:
    return len(config[list(keys)].drop_duplicates()) if keys else min(len(config), 1)


def choose_keys(
    config: pd.DataFrame, fixed: Sequence[str] = (), preferred: Sequence[str] = ()
) -> list[str]:
    """Minimal keys that, with ``fixed`` (axes, panels), separate the distinct settings of runs.

    ``config`` holds one row per run and one column per flattened config key.
    """
    fixed = [k for k in fixed if k in config.columns]
    varying = [
        c
        for c in config.columns
        if c not in NOT_CONDITIONS
        and not c.startswith(("report.", "hydra."))
        and config[c].astype(str).nunique() > 1
    ]
    target = _n_settings(config, list(dict.fromkeys(fixed + varying)))
    names = [k for k in varying if k.endswith(".name")]
    order = list(dict.fromkeys([k for k in preferred if k in varying] + names + varying))
    chosen: list[str] = []
    current = _n_settings(config, fixed)
    for key in order:
        if current >= target:
            break
        if key in fixed:
            continue
        n = _n_settings(config, fixed + chosen + [key])
        if n > current:
            chosen.append(key)
            current = n
    return chosen


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Legend names: ``floss.name`` → ``floss``, ``floss.k`` → ``k`` (full key if ambiguous)."""
    parts = {k: k.split(".") for k in keys}
    short = {k: (p[-2] if p[-1] == "name" and len(p) > 1 else p[-1]) for k, p in parts.items()}
    clash = {s for s in short.values() if list(short.values()).count(s) > 1}
    return {k: (k if s in clash else s) for k, s in short.items()}


def format_value(value: Any) -> str:
    """``40.0`` → ``40``, ``0.5`` → ``0.5``, NaN → ``?``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def sort_key(values: Iterable[Any]) -> tuple:
    """Orders numbers numerically (also numeric strings), then text, then missing values."""
    out = []
    for v in values:
        try:
            number = float(v)
            out.append((0, number, "") if not math.isnan(number) else (2, 0.0, ""))
        except (TypeError, ValueError):
            out.append((1, 0.0, str(v)))
    return tuple(out)


def label_conditions(config: pd.DataFrame, keys: Sequence[str], default: str = "all"):
    """Label per row (``floss=pre, delay=40``) and the labels in sorted condition order.

    Returns ``(labels: Series aligned with config, order: list[str])``.
    """
    names = short_names(keys)
    values = [tuple(row) for row in config[list(keys)].itertuples(index=False)]
    text = {
        v: ", ".join(f"{names[k]}={format_value(x)}" for k, x in zip(keys, v, strict=True))
        for v in values
    }
    if not keys:
        text = {v: default for v in values}
    order = [text[v] for v in sorted(set(values), key=sort_key)]
    return pd.Series([text[v] for v in values], index=config.index, dtype=object), order


def condition_table(results: pd.DataFrame, order: dict[str, list[str]]) -> pd.DataFrame:
    """Per experiment and condition: runs, finished realizations n, success rate, medians.

    Success rate and medians pool the finished realizations of every run in the condition;
    failed, unfinished and corrupt runs are counted in ``problem_runs`` but not in ``n``.
    """
    columns = ["experiment", "condition", "runs", "problem_runs", "n", "successes"]
    columns += [
        "success_rate",
        "median_test_accuracy",
        "median_lambda_1",
        "median_epochs_to_success",
    ]
    rows = []
    for (exp, cond), g in results.groupby(["experiment", "condition"], sort=False):
        done = g[g["status"] == "finished"]
        success = done["success"].astype("float64")
        rows.append(
            {
                "experiment": exp,
                "condition": cond,
                "runs": g["run"].nunique(),
                "problem_runs": g.loc[g["status"] != "finished", "run"].nunique(),
                "n": len(done),
                "successes": int(success.sum()),
                "success_rate": success.mean() if len(done) else float("nan"),
                "median_test_accuracy": done["test_accuracy"].median(),
                "median_lambda_1": done["lambda_1"].median(),
                "median_epochs_to_success": done["epochs_to_success"].median(),
            }
        )
    table = pd.DataFrame(rows, columns=columns)
    rank = {(e, c): i for e, labels in order.items() for i, c in enumerate(labels)}
    table["_rank"] = [
        rank.get((e, c), len(rank)) for e, c in zip(table.experiment, table.condition, strict=True)
    ]
    return table.sort_values(["experiment", "_rank"]).drop(columns="_rank").reset_index(drop=True)


SETTING_KEYS = (
    "task.name",
    "task.delay",
    "task.taps",
    "task.channels",
    "model.name",
    "model.N",
    "model.g",
    "floss.name",
    "floss.k",
    "floss.target",
)
FLOSS_SETTING_KEYS = (
    "model.name",
    "model.N",
    "model.g",
    "floss.k",
    "floss.target",
    "floss.batch",
    "floss.steps",
)


@dataclass
class Conditions:
    """The colour conditions of one experiment's figure: labels per run, order, colours, n.

    Keys are the preset's ``report.condition`` or, without it, :func:`choose_keys` with the
    figure's axes and panels as ``fixed`` (so the x key never also becomes a colour).
    """

    keys: list[str]
    config: pd.DataFrame  # flattened config indexed by run
    by_run: pd.Series  # run → condition label
    order: list[str]
    colour: dict[str, str]
    n: dict[str, int]  # finished realizations per condition

    @classmethod
    def of(cls, exp: Collection, fixed: Sequence[str] = ()) -> Conditions:
        """Conditions of ``exp`` (a :meth:`Collection.subset` of one experiment)."""
        name = exp.experiments[0] if exp.experiments else ""
        config = exp.config()
        explicit = as_keys(exp.settings.get(name, {}).get("condition"))
        keys = [k for k in explicit if k in config.columns and k not in fixed]
        if not keys:
            keys = choose_keys(config, fixed=fixed, preferred=exp.cell_keys.get(name, []))
        by_run, order = label_conditions(config, keys, default=str(name))
        n = exp.results["run"].map(by_run).value_counts().to_dict()
        return cls(keys, config, by_run, order, colours(order), n)

    def groups(self, df: pd.DataFrame) -> Iterator[tuple[str, str, pd.DataFrame]]:
        """``(label, colour, rows)`` per condition present in ``df``, in sorted order."""
        labels = df["run"].map(self.by_run)
        for name in self.order:
            rows = df[labels == name]
            if len(rows):
                yield name, self.colour[name], rows

    def legend(self, name: str, n: int | None = None) -> str:
        """Legend entry with the number of realizations pooled in it."""
        return f"{name} (n={self.n.get(name, 0) if n is None else n})"

    def column(self, df: pd.DataFrame, key: str) -> pd.Series:
        """A config key's value on every row of ``df`` (looked up by ``run``)."""
        if key not in self.config.columns:
            return pd.Series(pd.NA, index=df.index, dtype=object)
        return df["run"].map(self.config[key])

    def values(self, name: str, key: str) -> list[Any]:
        """Distinct values of a config key among the runs of condition ``name``."""
        if key not in self.config.columns:
            return []
        return self.config.loc[self.by_run == name, key].drop_duplicates().tolist()

    def setting(self, skip: Sequence[str] = (), keys: Sequence[str] = SETTING_KEYS) -> str:
        """The constant settings (``task=delayed_xor, N=80, k=75``) and the realization count."""
        keys = [k for k in keys if k in self.config.columns and k not in skip]
        keys = [k for k in keys if self.config[k].astype(str).nunique() == 1]
        names = short_names(keys)
        parts = [f"{names[k]}={format_value(self.config[k].iloc[0])}" for k in keys]
        return ", ".join([*parts, f"{sum(self.n.values())} realizations"])
