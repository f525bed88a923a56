"""The real ``flossrun`` command in a subprocess at tiny sizes, its files read back; bad configs
found in-process, and the one line the command prints for them checked once per code path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch
from cli_support import (
    SWEEP_TABLES_ONLY,
    TINY,
    config_error,
    copy_tree,
    error_lines,
    flossrun,
    only_run_dir,
)
from cli_support import run_in_process as run_here

__all__ = ["TINY", "flossrun", "only_run_dir"]  # also used by the other command-line tests
ENSEMBLE = [*TINY, "realizations=2"]  # run once per module (``shared_run``)


def test_run_writes_well_formed_outputs(shared_run):
    root, proc = shared_run(*ENSEMBLE)
    run = only_run_dir(root)
    assert "success:" in proc.stdout and str(run) in proc.stdout
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics.columns) == ["realization", "seed", "phase", "epoch", "name", "value"]
    assert set(metrics.phase) == {"train", "prefloss", "floss", "eval"}
    evals = metrics[(metrics.phase == "eval") & (metrics.name == "test_accuracy")]
    assert sorted(evals.epoch.unique()) == [0, 10, 20, 30]
    floss = metrics[metrics.phase.isin(["prefloss", "floss"]) & (metrics.name == "lambda_1_floss")]
    assert floss.epoch.max() == 20 + 2 * 5  # preflossing + two interflossing phases
    spectra = pd.read_csv(run / "spectra.csv")
    assert list(spectra.columns) == ["realization", "seed", "stage", "epoch", "index", "value"]
    for stage in ("initial", "preflossed", "final"):
        s = spectra[spectra.stage == stage]
        assert sorted(s["index"].unique()) == list(range(1, 13)), stage
        assert len(s) == 2 * 12
    summary = pd.read_csv(run / "summary.csv")
    assert list(summary.seed) == [0, 1] and summary.test_accuracy.between(0, 1).all()
    assert {"success", "epochs_to_success", "diverged", "lambda_1", "wall_seconds"} <= set(
        summary.columns
    )
    assert (run / "plots" / "learning_curve.png").stat().st_size > 1000
    assert (run / "plots" / "spectrum.png").stat().st_size > 1000
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ck["model"]["W"].shape == (2, 12, 12) and ck["state"]["finished"]


def test_finished_run_is_skipped(tmp_path, shared_run):
    copy_tree(shared_run(*ENSEMBLE)[0], tmp_path)
    run = only_run_dir(tmp_path)
    before = (run / "summary.csv").read_text()
    proc = flossrun(tmp_path, *ENSEMBLE)
    assert "already finished" in proc.stdout
    assert (run / "summary.csv").read_text() == before


def test_preflossing_moves_lambda1_toward_target(tmp_path):
    args = ["floss.pre_epochs=150", "train.epochs=1", "realizations=3", "model.N=16", "floss.k=2"]
    spectra = pd.read_csv(run_here(tmp_path, *TINY, *args) / "spectra.csv")
    full = spectra[spectra.stage.isin(["initial", "preflossed"]) & (spectra["index"] == 1)]
    lam1 = full.pivot(index="realization", columns="stage", values="value")
    assert (lam1.preflossed.abs() < lam1.initial.abs()).all(), lam1


KILL_AFTER_SAVES = """
import os, signal, sys
from flossrun import cli, runner
n = int(os.environ["KILL_AFTER_SAVES"])
save = runner.Run.save
def save_then_die(self):
    save(self)
    global n
    n -= 1
    if n == 0:
        os.kill(os.getpid(), signal.SIGKILL)  # as a cluster's OOM killer or scancel would
runner.Run.save = save_then_die
sys.argv = ["flossrun", *sys.argv[1:]]
cli.main()
"""


@pytest.mark.slow  # a killed run resumed (~13 s): make test-slow, CI
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL right after the third checkpoint (mid-training, between flossing phases); the
    rerun resumes and every number of summary.csv and metrics.csv equals an unkilled run (made
    in-process: a run's numbers do not depend on the thread count, test_determinism.py)."""
    args = [*TINY, "train.epochs=60", "train.checkpoint_every=15", "train.eval_every=15"]
    ref = run_here(tmp_path / "ref", *args)
    killed = tmp_path / "killed"
    killed.mkdir()
    env = {**os.environ, "KILL_AFTER_SAVES": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_SAVES, *args], cwd=killed, env=env, timeout=1200,
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run = only_run_dir(killed)
    assert not (run / "summary.csv").exists()
    state = torch.load(run / "checkpoint.pt", weights_only=True)["state"]
    assert (state["train_done"], state["phases_done"]) == (15, 1)  # saves: pre, phase 1, epoch 15
    resumed = flossrun(killed, *args)
    assert "resuming" in resumed.stdout + resumed.stderr
    for name in ("summary.csv", "metrics.csv", "spectra.csv"):
        got = pd.read_csv(run / name).drop(columns="wall_seconds", errors="ignore")
        want = pd.read_csv(ref / name).drop(columns="wall_seconds", errors="ignore")
        pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_multirun_seeds_equal_one_ensemble(tmp_path, shared_run):
    """``-m seed=0,1`` and ``realizations=2`` train the same two networks, bit for bit."""
    flossrun(tmp_path, "-m", *TINY, "seed=0,1", SWEEP_TABLES_ONLY)
    runs = sorted(tmp_path.glob("outputs/default/*/summary.csv"))
    assert len(runs) == 2
    ens = only_run_dir(shared_run(*ENSEMBLE)[0])
    for name in ("summary.csv", "metrics.csv", "spectra.csv"):
        multi = pd.concat(pd.read_csv(p.parent / name) for p in runs)
        one = pd.read_csv(ens / name)
        assert set(one.seed) == set(multi.seed) == {0, 1}, name
        for seed in (0, 1):
            got, want = (
                df[df.seed == seed]
                .drop(columns=["realization", "wall_seconds"], errors="ignore")
                .reset_index(drop=True)
                for df in (multi, one)
            )
            pd.testing.assert_frame_equal(got, want, check_exact=True, obj=f"{name} seed {seed}")


BAD_CONFIGS = [
    ("floss.k=500", "floss.k"),
    ("task.delay=301", "task.delay"),
    ("task=nonexistent", "task"),
    ("train.epochs=-1", "train.epochs"),
    ("task.delay=21", "task.delay"),  # not a multiple of the 2 XOR taps
    ("dtype=float16", "dtype"),
]


@pytest.mark.parametrize(("override", "key"), BAD_CONFIGS)
def test_bad_config_fails_in_one_line_before_compute(override, key):
    line = config_error(override)
    assert "\n" not in line and line.startswith(f"flossrun: error: {key}"), line


@pytest.mark.parametrize(
    "override",
    [
        "task=nonexistent",  # refused by the command-line checks, before Hydra composes
        "floss.k=500",  # refused by the job's validation of the composed config
        "experiment=k_sweep report.summary=k_swep",  # by the job's check of the report node
    ],
)
def test_the_command_prints_the_one_line_exits_2_and_leaves_no_run(tmp_path, override):
    proc = flossrun(tmp_path, *override.split(), check=False)
    assert proc.returncode == 2, proc.stderr
    assert error_lines(proc.stderr) == [config_error(*override.split())], proc.stderr
    assert not list(tmp_path.glob("**/summary.csv"))
    assert not list(tmp_path.glob("**/checkpoint.pt"))
    assert not list(
        tmp_path.glob("**/.hydra/config.yaml")
    )  # nothing a report could mistake for a run
