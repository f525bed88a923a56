"""What a run folder's numbers are tied to: the run's identity and the code that made them.

A run folder holds one run. Its **identity** is the resolved config minus the keys that only
name or place the run (``name``, ``scale``, ``threads``, ``hydra``, ``report``), with ``device``
replaced by the device the run actually used (``auto`` → ``cpu`` or ``cuda``), so CPU and GPU
results never share a folder. Its **code** is recorded in ``provenance.json``: the flossrun
version, the git commit and whether the tree was dirty (when flossrun runs from a git checkout),
the torch version and the device. A job whose identity or code differs from what a folder holds
is refused (docs/design.md §7): it writes ``conflict.txt`` and leaves the results untouched.
File names, the identity keys and the record's keys are the run-folder contract's
(:mod:`flossrun.contract`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from flossrun import io
from flossrun.contract import (
    CODE_KEYS,
    CONFIG_FILE,
    CONFLICT_FILE,
    HYDRA_FILE,
    NOT_RUN_IDENTITY,
    OVERRIDES_FILE,
    PROVENANCE_FILE,
    Provenance,
    flatten,
)

NO_ANALYSIS = "none"  # the analysis= name of a plain training run (flossrun.analyses)


def learning_rates(cfg: Any) -> tuple[float, float]:
    """The Adam learning rates ``(training, flossing)`` of a run config (the composed
    ``DictConfig``, or the validated :class:`flossrun.config.Settings`): ``train.lr`` and
    ``floss.lr`` where set, else the architecture's own ``model.lr`` and ``model.floss_lr``
    (every model schema has both; defaults chosen per model by a pilot, docs/pilots.md)."""
    train, floss = getattr(cfg.train, "lr", None), getattr(cfg.floss, "lr", None)
    if train is None:
        train = cfg.model.lr
    if floss is None:
        floss = cfg.model.floss_lr
    return float(train), float(floss)


def run_identity(cfg: DictConfig, device: str) -> dict[str, Any]:
    """The resolved config that determines a run's numbers; ``device`` is the type it runs on."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_RUN_IDENTITY:
        plain.pop(key, None)
    # keys at a value that changes nothing are left out, so runs from before they existed keep
    # their folders: no analysis, no learning-rate milestones, the default
    # clipping and loss reduction
    if (plain.get("analysis") or {}).get("name", NO_ANALYSIS) == NO_ANALYSIS:
        plain.pop("analysis", None)
    train = plain.get("train") or {}
    if not train.get("milestones", []):
        train.pop("milestones", None)
        train.pop("gamma", None)
    for key, default in (("clip_mode", "per_tensor"), ("loss_reduction", "mean")):
        if train.get(key, default) == default:
            train.pop(key, None)
    # a run is identified by the learning rates in effect (train.lr / floss.lr, else the
    # model's own), written as train.lr and floss.lr; model.lr / model.floss_lr are left out
    train["lr"], plain["floss"]["lr"] = learning_rates(cfg)
    for key in ("lr", "floss_lr"):
        plain["model"].pop(key, None)
    plain["device"] = device
    return plain


def identity_text(identity: dict[str, Any]) -> str:
    """A run identity as stored in the checkpoint (YAML, keys in config order)."""
    return OmegaConf.to_yaml(OmegaConf.create(identity))


def identity_diff(old_text: str, new: dict[str, Any] | str, limit: int = 4) -> str:
    """``task.delay 40 → 60, floss.k 75 → 32`` (at most ``limit`` keys, then ``…``); ``new``:
    an identity or its text (:func:`identity_text`)."""
    old = flatten(OmegaConf.to_container(OmegaConf.create(old_text)))
    if isinstance(new, str):
        new = OmegaConf.to_container(OmegaConf.create(new))
    new_flat = flatten(new)
    keys = [k for k in dict.fromkeys([*old, *new_flat]) if old.get(k, "—") != new_flat.get(k, "—")]
    parts = [f"{k} {old.get(k, '—')} → {new_flat.get(k, '—')}" for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"… ({len(keys)} keys)")
    return ", ".join(parts) or "the stored config could not be compared"


@cache
def _git(root: str) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the checkout flossrun runs from, or ``(None, None)``."""
    if not (Path(root) / ".git").exists() or shutil.which("git") is None:
        return None, None
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return (commit or None), (bool(status.strip()) if commit else None)


@cache
def flossrun_version() -> str:
    """The installed distribution's version (``importlib.metadata``), ``unknown`` if flossrun
    runs from a source tree that was never installed."""
    try:
        return metadata.version("flossrun")
    except metadata.PackageNotFoundError:
        return "unknown"


def code_provenance(device: str) -> Provenance:
    """The ``provenance.json`` record of this process: flossrun and torch versions, git commit
    and dirty flag (``null`` outside a git checkout), and the device type the run uses."""
    import torch

    commit, dirty = _git(str(Path(__file__).resolve().parent.parent))
    return Provenance(
        flossrun_version=flossrun_version(),
        git_commit=commit,
        git_dirty=dirty,
        torch_version=torch.__version__,
        device=device,
    )


def describe_code(p: dict[str, Any] | None) -> str:
    """``flossrun 0.1.0 @ 1a2b3c4 (dirty)``, or ``unrecorded code`` for folders without a record."""
    if not p:
        return f"unrecorded code (a folder from before {PROVENANCE_FILE})"
    text = f"flossrun {p.get('flossrun_version', '?')}"
    if p.get("git_commit"):
        text += f" @ {str(p['git_commit'])[:7]}" + (" (dirty)" if p.get("git_dirty") else "")
    return text


def same_code(a: dict[str, Any] | None, b: dict[str, Any]) -> bool:
    """Whether a stored record names the same code (version and commit) as ``b``."""
    return a is not None and all(a.get(k) == b.get(k) for k in CODE_KEYS)


def write_provenance(out: Path, record: Provenance) -> None:
    """``provenance.json`` (indented JSON, keys in :class:`~flossrun.contract.Provenance` order)."""
    io.write_text(Path(out) / PROVENANCE_FILE, json.dumps(record, indent=2) + "\n")


# --- the Hydra files of the run a folder holds -------------------------------------------------
def write_hydra_files(out: Path, cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """``.hydra/{config,hydra,overrides}.yaml`` of the job that owns the folder.

    flossrun sets ``hydra.output_subdir: null`` and writes these itself, only once a job is
    accepted, so a refused job never overwrites the record of the run a folder holds.
    """
    out = Path(out)
    io.write_text(out / CONFIG_FILE, OmegaConf.to_yaml(cfg))
    io.write_text(out / HYDRA_FILE, OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})))
    io.write_text(out / OVERRIDES_FILE, OmegaConf.to_yaml(hydra_cfg.overrides.task))


def write_conflict(out: Path, line: str) -> None:
    """``conflict.txt``: the one line a refused job printed (the report lists the folder)."""
    io.write_text(Path(out) / CONFLICT_FILE, line + "\n")
