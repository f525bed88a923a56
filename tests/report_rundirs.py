"""Run directories written by hand for the report tests, as the runner writes them
(docs/design.md §7): config, overrides, tidy CSVs, summary or failed.txt, and optionally
``provenance.json`` and ``conflict.txt``.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

BASE: dict[str, Any] = {
    "name": "preflossing",
    "scale": "quick",
    "seed": 0,
    "realizations": 2,
    "device": "cpu",
    "dtype": "float32",
    "task": {
        "name": "delayed_copy",
        "delay": 20,
        "T": 60,
        "channels": 1,
        "taps": 1,
        "amplitude": 1.0,
    },
    "model": {"name": "vanilla", "N": 12, "g": 1.0, "init": "normal"},
    "floss": {
        "name": "pre",
        "k": 4,
        "target": 0.0,
        "batch": 1,
        "steps": 55,
        "transient": 16,
        "pre_epochs": 30,
        "every": 100,
        "epochs": 30,
        "times": 2,
        "qr_every": 1,
        "lr": 1e-3,
    },
    "train": {
        "epochs": 200,
        "batch": 16,
        "lr": 1e-3,
        "clip": 0.03,
        "eval_every": 50,
        "test_size": 64,
        "success_threshold": 0.95,
        "log_every": 10,
        "checkpoint_every": 100,
    },
}


def _config(settings: dict[str, Any]) -> dict[str, Any]:
    cfg = copy.deepcopy(BASE)
    for key, value in settings.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    if cfg["floss"]["name"] == "none":  # what floss=none implies, as the real preset does
        cfg["floss"].update(pre_epochs=0, times=0)
    return cfg


def make_run(
    path: Path,
    settings: dict[str, Any] | None = None,
    success: list[bool] | None = None,
    state: str = "finished",
    diagnostics: bool = False,
) -> Path:
    """Write a run directory as the runner would; ``success`` per realization (default all)."""
    settings = settings or {}
    cfg = _config(settings)
    R, seed, N, k = cfg["realizations"], cfg["seed"], cfg["model"]["N"], cfg["floss"]["k"]
    success = [True] * R if success is None else success
    (path / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(cfg), path / ".hydra" / "config.yaml")
    overrides = [f"{k.removesuffix('.name')}={v}" for k, v in settings.items()]
    OmegaConf.save(OmegaConf.create(overrides), path / ".hydra" / "overrides.yaml")
    target = float(np.atleast_1d(cfg["floss"]["target"])[0])
    metrics, spectra, diag = [], [], []
    for r in range(R):
        s = seed + r
        for e in range(0, cfg["train"]["epochs"] + 1, 10):
            metrics += [
                (r, s, "train", e, "loss", 0.7 - e / 1000),
                (r, s, "train", e, "accuracy", 0.5),
            ]
            metrics.append((r, s, "train", e, "grad_h0_norm", math.exp(-e / 100) * (1 + r)))
        for e in range(1, cfg["floss"]["pre_epochs"] + 1):
            metrics.append(
                (r, s, "prefloss", e, "lambda_1_floss", target + (0.3 + 0.1 * r) * math.exp(-e / 8))
            )
            metrics.append((r, s, "prefloss", e, "floss_loss", math.exp(-e / 4)))
        for e in range(0, cfg["train"]["epochs"] + 1, cfg["train"]["eval_every"]):
            acc = 0.5 + (0.47 if success[r] else 0.1) * e / cfg["train"]["epochs"]
            metrics += [
                (r, s, "eval", e, "test_accuracy", acc),
                (r, s, "eval", e, "test_loss", 1 - acc),
            ]
            metrics.append((r, s, "eval", e, "lambda_1_eval", target - 0.01 * r))
        stages = ["initial", "final"] + (["preflossed"] if cfg["floss"]["pre_epochs"] else [])
        for stage, i in itertools.product(stages, range(1, N + 1)):
            shift = 0.0 if stage == "initial" or i > k else 0.05 * i
            spectra.append((r, s, stage, 0, i, -0.05 * i + shift))
        for stage, lag in itertools.product(stages, (1, 5, 10, 20)):
            diag += [
                (r, s, stage, lag, i, "log_singular_value", -0.03 * i * lag)
                for i in range(1, N + 1)
            ]
            diag += [(r, s, stage, lag, kk, "log10_condition", 0.01 * kk * lag) for kk in (1, 4, N)]
            diag.append((r, s, stage, lag, 0, "error_signal_norm", math.exp(-lag / 10)))
    pd.DataFrame(
        metrics, columns=["realization", "seed", "phase", "epoch", "name", "value"]
    ).to_csv(path / "metrics.csv", index=False)
    pd.DataFrame(
        spectra, columns=["realization", "seed", "stage", "epoch", "index", "value"]
    ).to_csv(path / "spectra.csv", index=False)
    if diagnostics:
        columns = ["realization", "seed", "stage", "lag", "index", "name", "value"]
        pd.DataFrame(diag, columns=columns).to_csv(path / "diagnostics.csv", index=False)
    if state == "finished":
        rows = [
            {
                "realization": r,
                "seed": seed + r,
                "test_accuracy": 0.97 if ok else 0.6,
                "test_loss": 0.05 if ok else 0.6,
                "success": ok,
                "epochs_to_success": 150 if ok else None,
                "diverged": False,
                "lambda_1": target - 0.01 * r,
                "wall_seconds": 1.5,
            }
            for r, ok in enumerate(success)
        ]
        pd.DataFrame(rows).to_csv(path / "summary.csv", index=False)
    elif state == "failed":
        (path / "failed.txt").write_text(
            "Traceback (most recent call last):\n  ...\nRuntimeError: boom\n"
        )
    return path


def write_provenance(
    path: Path,
    commit: str | None = "1a2b3c4d5e",
    dirty: bool | None = False,
    version: str = "0.1.0",
    device: str = "cpu",
) -> None:
    """``provenance.json`` as the runner writes it into every run folder."""
    prov = {
        "flossrun_version": version,
        "git_commit": commit,
        "git_dirty": dirty,
        "torch_version": "2.13.0",
        "device": device,
    }
    (path / "provenance.json").write_text(json.dumps(prov))
