"""The run-folder contract (docs/design.md §7): what a job writes into its folder and the report
reads back — every file name, the columns of every table, typed rows, the keys that make a
run's identity, :func:`flatten` and the ``provenance.json`` record.

Writers (runner, jobs, io, analyses, provenance, cli) and readers (report, plots) import these
names; no other module spells a file name or a column list (``tests/test_contract.py``). On the
floor of the package (§12): the standard library and :mod:`flossrun.errors` only.

Rows are ``NamedTuple``\\ s, built and read by field (``row.success``). A checkpoint stores the
logs as plain tuples (``torch.load(..., weights_only=True)`` refuses classes it does not know),
so writers append ``tuple(Row(...))`` and readers take stored rows back with ``Row._make``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

# --- files of every run folder --------------------------------------------------------------
HYDRA_DIR = ".hydra"  # the job's record, written once the job owns the folder
CONFIG_FILE = f"{HYDRA_DIR}/config.yaml"  # the composed config
HYDRA_FILE = f"{HYDRA_DIR}/hydra.yaml"  # Hydra's own config of the job
OVERRIDES_FILE = f"{HYDRA_DIR}/overrides.yaml"  # the command line's overrides (a list)
METRICS_FILE = "metrics.csv"  # METRICS_COLUMNS
SPECTRA_FILE = "spectra.csv"  # SPECTRA_COLUMNS
DIAGNOSTICS_FILE = "diagnostics.csv"  # DIAGNOSTICS_COLUMNS, only with diag.jacobian
SUMMARY_FILE = "summary.csv"  # SUMMARY_COLUMNS; present ⇔ the job finished
CHECKPOINT_FILE = "checkpoint.pt"  # the whole state of a run (weights_only loadable)
PROVENANCE_FILE = "provenance.json"  # a Provenance record
FAILED_FILE = "failed.txt"  # present ⇔ the job raised: the traceback
CONFLICT_FILE = "conflict.txt"  # a later job of another config or code refused the folder
PLOTS_DIR = "plots"  # the run's own figures

# --- files of the analyses (docs/design.md §11) ---------------------------------------------
ORBITS_PT = "orbits.pt"  # analysis=orbit: the snapshots' tensors
ORBITS_CSV = "orbits.csv"  # ORBIT_COLUMNS
EXTRAPOLATION_CSV = "extrapolation.csv"  # EXTRAPOLATION_COLUMNS
LANDSCAPE_CSV = "landscape.csv"  # analysis=landscape: LANDSCAPE_COLUMNS
LANDSCAPE_PT = "landscape.pt"  # per path: s1, s2, loss, lambda_1, outputs; the path stats
SMOOTHNESS_POINTS_CSV = "smoothness_points.csv"  # analysis=smoothness: SMOOTHNESS_POINT_COLUMNS
SMOOTHNESS_WINDOWS_CSV = "smoothness_windows.csv"  # WINDOW_COLUMNS
SMOOTHNESS_RATES_CSV = "smoothness_rates.csv"  # RATE_COLUMNS
SMOOTHNESS_PT = "smoothness.pt"  # the tensors, the rate rows and RATE_COLUMNS
REGIONS_CSV = "regions.csv"  # analysis=regions: REGION_COLUMNS, one row per network and stage
REGIONS_PT = "regions.pt"  # the path tensors per stage and realization


# --- the tidy tables and their rows -----------------------------------------------------------
class MetricsRow(NamedTuple):
    """A ``metrics.csv`` row. ``phase``: ``train`` (loss, accuracy, grad_h0_norm), ``prefloss``
    and ``floss`` (floss_loss, lambda_1_floss; ``epoch`` = running count of flossing epochs),
    ``eval`` (test_loss, test_<metric>, lambda_1_eval in nats/step)."""

    realization: int
    seed: int
    phase: str
    epoch: int
    name: str
    value: float


class SpectrumRow(NamedTuple):
    """A ``spectra.csv`` row: exponent ``index`` (1-based), ``value`` in nats/step; ``stage``
    ``initial``, ``preflossed``, ``final`` (full spectrum) or ``eval`` (λ1..λmin(k,10))."""

    realization: int
    seed: int
    stage: str
    epoch: int
    index: int
    value: float


class DiagnosticsRow(NamedTuple):
    """A ``diagnostics.csv`` row at one ``lag`` (steps): ``log_singular_value`` (``index`` i,
    natural log), ``log10_condition`` (index k), ``log_singular_value_error`` and
    ``error_signal_norm`` (index 0)."""

    realization: int
    seed: int
    stage: str
    lag: int
    index: int
    name: str
    value: float


class SummaryRow(NamedTuple):
    """A ``summary.csv`` row: one realization at the end of its job. ``lambda_1`` in
    nats/step, ``wall_seconds`` the job's wall time (s), ``test_accuracy`` NaN for a task
    without an accuracy, ``epochs_to_success`` NaN if never reached."""

    realization: int
    seed: int
    test_accuracy: float
    test_loss: float
    success: bool
    epochs_to_success: float
    diverged: bool
    lambda_1: float
    wall_seconds: float


class RateRow(NamedTuple):
    """A ``smoothness_rates.csv`` row: one window of s on a path. λ1 columns in nats/step
    (``LAMBDA_COLUMNS``), ``rate_L``/``rate_L_g`` the growth rates of ln L, ln L_g per step of
    T, ``ratio_*`` those over λ1 (mean, or max over the window) and 2 λ1, ``T_min``/``T_max``
    the horizons fitted (:func:`flossrun.analyses.smoothness.window_table`)."""

    path: str
    window: int
    s_low: float
    s_high: float
    lambda_1: float
    lambda_1_min: float
    lambda_1_max: float
    regime: str
    lambda_1_T: float
    lambda_1_T_max: float
    rate_L: float
    rate_L_g: float
    ratio_L: float
    ratio_L_g: float
    ratio_L_max: float
    ratio_L_g_max: float
    T_min: float
    T_max: float


METRICS_COLUMNS = MetricsRow._fields
SPECTRA_COLUMNS = SpectrumRow._fields
DIAGNOSTICS_COLUMNS = DiagnosticsRow._fields
SUMMARY_COLUMNS = SummaryRow._fields
RATE_COLUMNS = RateRow._fields
FLOSS_PHASES = ("prefloss", "floss")  # the metrics.csv phases of flossing epochs
SUMMARY_REQUIRED = ("realization", "test_accuracy", "success")  # without them: corrupt

ORBIT_COLUMNS = (
    "realization", "seed", "epoch", "omega_index", "omega", "init", "distinct", "low", "high",
    "lambda_1", "regime",
)  # fmt: skip
EXTRAPOLATION_COLUMNS = (
    "realization", "seed", "epoch", "window", "after_step", "to_step", "mse", "attractor",
)  # fmt: skip
LANDSCAPE_COLUMNS = ("path", "point", "s1", "s2", "loss", "lambda_1", "regime")
SMOOTHNESS_POINT_COLUMNS = (
    "path", "point", "s", "T", "V", "dV_ds", "d2V_ds2", "lambda_1", "regime",
)  # fmt: skip
LAMBDA_COLUMNS = (
    "lambda_1",
    "lambda_1_min",
    "lambda_1_max",
    "regime",
    "lambda_1_T",
    "lambda_1_T_max",
)  # fmt: skip  (the λ1 statistics of a window: in RATE_COLUMNS and WINDOW_COLUMNS)
WINDOW_COLUMNS = (
    "path", "window", "s_low", "s_high", "points", "T", "L", "L_g", "minima_per_s",
    "resolution", *LAMBDA_COLUMNS,
)  # fmt: skip
REGION_COLUMNS = (
    "realization", "seed", "stage", "lambda_1", "regime", "lambda_1_path_min", "lambda_1_path_max",
    "rate_L", "rate_L_g", "L_T_max", "L_g_T_max", "lag", "error_signal_norm", "log10_condition",
    "condition_k", "success", "test_accuracy",
)  # fmt: skip


# --- identity -----------------------------------------------------------------------------
NOT_RUN_IDENTITY = ("hydra", "name", "scale", "threads", "report")
"""Top-level config keys that only name or place a run. A run's identity — what a folder's
results are tied to, compared before a job resumes or skips (flossrun.provenance.run_identity)
— is the resolved config without them."""

NOT_NETWORK_IDENTITY = (
    *NOT_RUN_IDENTITY, "seed", "realizations", "device", "train.log_every",
    "train.checkpoint_every",
)  # fmt: skip
"""Flattened keys outside a network's identity (the report's conditions and duplicates). A
network is one realization; its identity is the run's minus the keys that pick or count the
realizations of a run (``seed``, ``realizations``: a network is its config plus its own seed),
the device (CPU and GPU networks of one config pool in a condition; the report notes it) and
how often a run logs and saves (``train.log_every``, ``train.checkpoint_every``: they change
which rows are written, not the numbers). A run's identity keeps all of these, so a folder is
never resumed with another seed, size, device or log cadence. A flattened key is outside when
it or its top-level key is listed."""


def in_network_identity(key: str) -> bool:
    """Whether the flattened config key ``key`` (``task.delay``) is part of a network's identity
    (:data:`NOT_NETWORK_IDENTITY`)."""
    return key not in NOT_NETWORK_IDENTITY and key.split(".")[0] not in NOT_RUN_IDENTITY


def flatten(node: Any, prefix: str = "", json_lists: bool = False) -> dict[str, Any]:
    """Nested mappings → ``{"task.delay": 40, ...}``. Other values as they are, or with
    ``json_lists`` lists and tuples as JSON strings (hashable: a column of a frame)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}{k}.", json_lists))
        return out
    if json_lists and isinstance(node, list | tuple):
        node = json.dumps(node, default=str)
    return {prefix[:-1]: node}


# --- provenance.json ----------------------------------------------------------------------------
class Provenance(TypedDict):
    """The ``provenance.json`` record: the code that wrote a run folder and where it ran."""

    flossrun_version: str  # importlib.metadata's version, "unknown" from an uninstalled tree
    git_commit: str | None  # HEAD of the checkout flossrun runs from, null outside one
    git_dirty: bool | None  # uncommitted changes to tracked files (any part of the run)
    torch_version: str
    device: str  # the device type the run used: cpu | cuda


PROVENANCE_KEYS = tuple(Provenance.__annotations__)
CODE_KEYS = ("flossrun_version", "git_commit")  # a resumed run must match these


def read_provenance(folder: str | Path) -> dict[str, Any] | None:
    """A folder's ``provenance.json`` as a mapping, or None when absent, unreadable or not a
    JSON object."""
    try:
        record = json.loads((Path(folder) / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
