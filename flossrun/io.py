"""The one writer of run results: tidy CSVs, checkpoints and status files, all atomic.

What is written where, with which columns, is the run-folder contract (:mod:`flossrun.contract`).

Every file is written to a temporary name in the same directory and renamed into place, so a
killed job never leaves a half-written file behind and a reader sees the old or the new file.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    _atomic(Path(path), lambda fh: fh.write(text.encode()))


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a header and rows atomically (floats with full precision, NaN as ``nan``)."""

    def write(fh) -> None:
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        w.writerows(rows)
        fh.write(buf.getvalue().encode())

    _atomic(Path(path), write)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save tensors and plain containers (loadable with ``weights_only=True``) atomically."""
    _atomic(Path(path), lambda fh: torch.save(state, fh))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) onto the CPU."""
    return torch.load(path, map_location="cpu", weights_only=True)


def modern_metrics(metrics: Any, config: dict[str, Any]) -> Any:
    """A metrics.csv DataFrame of a run written before flossing and evaluation λ1 had their own
    names (``lambda_1`` in phases ``floss`` and ``eval``; preflossing rows in phase ``floss``)
    in today's names; ``config`` is the run's flattened config (``floss.pre_epochs``, ...).
    A current metrics.csv comes back unchanged."""
    old = metrics["name"] == "lambda_1"
    if not old.any():
        return metrics
    metrics = metrics.copy()
    is_floss, is_eval = metrics["phase"] == "floss", metrics["phase"] == "eval"
    metrics.loc[old & is_floss, "name"] = "lambda_1_floss"
    metrics.loc[old & is_eval, "name"] = "lambda_1_eval"
    pre = config.get("floss.pre_epochs", 0) or 0
    if config.get("floss.name", "none") in ("pre", "pre_during") and config.get("floss.k", 0):
        metrics.loc[is_floss & (metrics["epoch"] <= pre), "phase"] = "prefloss"
    return metrics
