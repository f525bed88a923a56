"""Find flossrun run directories (any directory holding ``.hydra/config.yaml``) and read one of
them as the run-folder contract says (:mod:`flossrun.contract`, docs/design.md §7).

Reading never raises on bad files: a run whose files cannot be parsed is marked ``corrupt``
with the reason, one without a summary ``unfinished`` (killed or still running).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, get_type_hints

import numpy as np
import pandas as pd
import yaml
from omegaconf import DictConfig, OmegaConf

import flossrun.config  # noqa: F401  (registers flossrun's resolvers, e.g. ${scaled:...})
from flossrun.contract import (
    CONFIG_FILE,
    CONFLICT_FILE,
    DIAGNOSTICS_FILE,
    FAILED_FILE,
    METRICS_FILE,
    OVERRIDES_FILE,
    PLOTS_DIR,
    PROVENANCE_FILE,
    SPECTRA_FILE,
    SUMMARY_COLUMNS,
    SUMMARY_FILE,
    SUMMARY_REQUIRED,
    DiagnosticsRow,
    MetricsRow,
    SpectrumRow,
    SummaryRow,
    flatten,
    read_provenance,
)
from flossrun.io import modern_metrics

STATUSES = ("finished", "failed", "unfinished", "corrupt")
SKIP_DIRS = {PLOTS_DIR, "figures", "__pycache__"}
UNKNOWN_VERSION = "unknown version"


class CorruptFile(Exception):
    """A run file exists but cannot be read as the contract says."""


@dataclass
class RunFolder:
    """One run directory as read from disk: ``config`` flattened (lists as JSON strings),
    ``settings`` its ``report:`` node, ``code`` the version (:func:`provenance_label`),
    ``conflict`` the line of ``conflict.txt``; a frame is ``None`` when its file is absent."""

    path: Path
    status: str = "unfinished"
    reason: str = ""
    code: str = UNKNOWN_VERSION
    ran_on: str = ""  # the device from provenance.json (cpu | cuda), "" when unknown
    conflict: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    summary: pd.DataFrame | None = None
    metrics: pd.DataFrame | None = None
    spectra: pd.DataFrame | None = None
    diagnostics: pd.DataFrame | None = None


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``run_2`` before ``run_10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def find_run_dirs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Every run directory at or below ``paths``, in natural order; hidden directories and
    ``plots/`` are not entered, symlinked ones are followed once each (loops are harmless)."""
    found: list[Path] = []
    seen: set[str] = set()
    for root in paths:
        for dirpath, dirnames, _ in os.walk(root, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:
                dirnames[:] = []
                continue
            seen.add(real)
            if (Path(dirpath) / CONFIG_FILE).is_file():
                found.append(Path(dirpath))
            keep = [d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS]
            dirnames[:] = sorted(keep, key=natural_key)
    return found


def read_table(
    path: Path, row: type[NamedTuple], partial_ok: bool = False, required: Sequence[str] = ()
) -> pd.DataFrame:
    """Read one tidy CSV, checking the columns of the contract's ``row`` and their types; with
    ``partial_ok`` (a run still writing, or killed) an incomplete last line and malformed rows
    are dropped, otherwise they raise :class:`CorruptFile`."""
    data = path.read_bytes()
    if not data.strip():
        if partial_ok:
            return pd.DataFrame(columns=list(row._fields))
        raise CorruptFile(f"{path.name}: empty file")
    if not data.endswith(b"\n"):
        if not partial_ok:
            raise CorruptFile(f"{path.name}: truncated (last line incomplete)")
        data = data[: data.rfind(b"\n") + 1]
    try:
        df = pd.read_csv(io.BytesIO(data), on_bad_lines="skip" if partial_ok else "error")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise CorruptFile(f"{path.name}: {_one_line(e)}") from e
    missing = [c for c in (required or row._fields) if c not in df.columns]
    if missing:
        raise CorruptFile(f"{path.name}: missing column(s) {', '.join(missing)}")
    hints = get_type_hints(row)
    kinds = {c: hints[c] for c in df.columns.intersection(row._fields)}
    bad = np.zeros(len(df), dtype=bool)
    for col, kind in kinds.items():
        values = df[col]
        if kind is str:
            bad |= values.isna().to_numpy()
            if not pd.api.types.is_string_dtype(values):
                df[col] = values.astype(str)
        elif kind is not bool:
            df[col] = num = pd.to_numeric(values, errors="coerce")
            bad |= (num.isna() & values.notna()).to_numpy()  # text where a number belongs
            if kind is int:
                bad |= (num.isna() | (num % 1 != 0)).to_numpy()
    if bad.any():
        if not partial_ok:
            line = int(bad.argmax()) + 2
            raise CorruptFile(
                f"{path.name}: {int(bad.sum())} malformed row(s), first on line {line}"
            )
        df = df[~bad]
    for col in [c for c, kind in kinds.items() if kind is int]:
        if df[col].notna().all():
            df[col] = df[col].astype("int64")
    return df.reset_index(drop=True)


def read_summary(path: Path) -> pd.DataFrame:
    """``summary.csv`` with every contract column (absent ones NaN), booleans as ``boolean``."""
    df = read_table(path, SummaryRow, required=SUMMARY_REQUIRED)
    if df.empty:
        raise CorruptFile(f"{path.name}: no rows")
    words = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}
    for col, kind in get_type_hints(SummaryRow).items():
        if kind is bool:
            values = df[col] if col in df.columns else pd.Series(pd.NA, index=df.index)
            df[col] = values.map(lambda v: words.get(str(v).strip().lower(), pd.NA))
            df[col] = df[col].astype("boolean")
        elif col not in df.columns:
            df[col] = float("nan")
    if df["success"].isna().any():
        raise CorruptFile(f"{path.name}: success is not a boolean")
    return df[list(SUMMARY_COLUMNS)]


def _one_line(error: BaseException | str, limit: int = 200) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_line(path: Path, empty: str, last_of_traceback: bool = False) -> str:
    """The first non-empty line of a text file (the last one after a traceback), ``""`` when it
    is absent, ``empty`` when it holds nothing."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except FileNotFoundError:
        return ""
    except OSError as e:
        return f"{path.name} unreadable: {_one_line(e)}"
    if not lines:
        return empty
    traceback = last_of_traceback and any(ln.startswith("Traceback") for ln in lines)
    return _one_line(lines[-1] if traceback else lines[0])


def provenance_label(path: Path) -> tuple[str, str]:
    """The code version (``0.1.0 @ 1a2b3c4 (dirty)``, or ``unknown version``) that wrote a run
    and the device it ran on (or ``""``), from ``provenance.json``."""
    prov = read_provenance(path)
    if prov is None and not (path / PROVENANCE_FILE).exists():
        return UNKNOWN_VERSION, ""
    try:
        version = str(prov["flossrun_version"])  # type: ignore[index]
    except (KeyError, TypeError):
        return f"{UNKNOWN_VERSION} ({PROVENANCE_FILE} unreadable)", ""
    commit = prov.get("git_commit")
    label = f"{version} @ {str(commit)[:7]}" if commit else version
    return label + (" (dirty)" if prov.get("git_dirty") else ""), str(prov.get("device") or "")


def _resolve(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain containers; a node whose interpolation cannot be resolved here
    (``${hydra:...}``, an unknown resolver) keeps its raw ``${...}`` string."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except Exception:
        raw = OmegaConf.to_container(cfg, resolve=False)

    def walk(node: Any, key: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, f"{key}.{k}" if key else str(k)) for k, v in node.items()}
        if isinstance(node, str) and "${" in node:
            try:
                value = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
                return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            except Exception:
                return node
        return node

    return walk(raw, "")


def _read_config(run: RunFolder) -> None:
    cfg = OmegaConf.load(run.path / CONFIG_FILE)
    if not isinstance(cfg, DictConfig):
        raise CorruptFile("config.yaml: not a mapping")
    container = _resolve(cfg)
    container.pop("hydra", None)
    settings = container.get("report")
    run.settings = settings if isinstance(settings, dict) else {}
    run.config = flatten(container, json_lists=True)
    if (run.path / OVERRIDES_FILE).is_file():
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        overrides = yaml.load((run.path / OVERRIDES_FILE).read_bytes(), Loader=loader)
        if not isinstance(overrides, list):
            raise CorruptFile("overrides.yaml: not a list")
        run.overrides = [str(o) for o in overrides]


def load_run(path: Path) -> RunFolder:
    """Read one run directory; never raises (bad files → ``status="corrupt"`` + reason)."""
    code, ran_on = provenance_label(path)
    conflict = _first_line(path / CONFLICT_FILE, f"{CONFLICT_FILE} (empty)")  # what differs
    run = RunFolder(path=path, code=code, ran_on=ran_on, conflict=conflict)
    try:
        _read_config(run)
    except Exception as e:
        reason = e if isinstance(e, CorruptFile) else f"config: {e}"
        run.status, run.reason = "corrupt", _one_line(reason)
        return run
    if (path / SUMMARY_FILE).is_file():
        run.status = "finished"
    elif (path / FAILED_FILE).is_file():
        reason = _first_line(path / FAILED_FILE, f"failed ({FAILED_FILE} is empty)", True)
        run.status, run.reason = "failed", reason
    else:
        run.reason = f"no {SUMMARY_FILE} or {FAILED_FILE} (killed or still running)"
    partial_ok = run.status != "finished"
    try:
        if run.status == "finished":
            run.summary = read_summary(path / SUMMARY_FILE)
        for attr, name, row in (
            ("metrics", METRICS_FILE, MetricsRow),
            ("spectra", SPECTRA_FILE, SpectrumRow),
            ("diagnostics", DIAGNOSTICS_FILE, DiagnosticsRow),
        ):
            file = path / name
            if file.is_file():
                setattr(run, attr, read_table(file, row, partial_ok=partial_ok))
        if run.metrics is not None:  # a run of before 2026-12 in today's metric names
            run.metrics = modern_metrics(run.metrics, run.config)
    except (CorruptFile, OSError) as e:
        if run.status == "finished":
            run.status, run.reason, run.summary = "corrupt", _one_line(e), None
        else:
            run.reason += f"; {_one_line(e)}"
        run.metrics = run.spectra = run.diagnostics = None
    return run
