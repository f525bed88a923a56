"""The real ``flossrun`` command in a subprocess at tiny sizes, its files read back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

FLOSSRUN = str(Path(sys.executable).parent / "flossrun")
TINY = [
    "model.N=12", "task.T=40", "task.delay=4", "train.epochs=30", "train.eval_every=10",
    "train.test_size=32", "train.batch=4", "train.log_every=5", "floss.k=4", "floss.steps=20",
    "floss.transient=5", "floss.pre_epochs=20", "floss.epochs=5", "floss.every=10",
    "diag.steps=60", "diag.transient=10", "device=cpu",
]  # fmt: skip


def flossrun(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([FLOSSRUN, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"flossrun failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def only_run_dir(root: Path) -> Path:
    dirs = [p.parent.parent for p in root.glob("outputs/**/.hydra/config.yaml")]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_run_writes_well_formed_outputs(tmp_path):
    proc = flossrun(tmp_path, *TINY, "realizations=2")
    run = only_run_dir(tmp_path)
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


def test_finished_run_is_skipped(tmp_path):
    flossrun(tmp_path, *TINY)
    run = only_run_dir(tmp_path)
    before = (run / "summary.csv").read_text()
    proc = flossrun(tmp_path, *TINY)
    assert "already finished" in proc.stdout
    assert (run / "summary.csv").read_text() == before


def test_preflossing_moves_lambda1_toward_target(tmp_path):
    flossrun(
        tmp_path,
        *TINY,
        "floss.pre_epochs=150",
        "train.epochs=1",
        "realizations=3",
        "model.N=16",
        "floss.k=2",
    )
    spectra = pd.read_csv(only_run_dir(tmp_path) / "spectra.csv")
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


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL right after the third checkpoint (mid-training, between flossing phases); the
    rerun resumes and every number of summary.csv and metrics.csv equals an unkilled run."""
    args = [*TINY, "train.epochs=60", "train.checkpoint_every=15", "train.eval_every=15"]
    ref = tmp_path / "ref"
    ref.mkdir()
    flossrun(ref, *args)
    killed = tmp_path / "killed"
    killed.mkdir()
    env = {**os.environ, "KILL_AFTER_SAVES": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_SAVES, *args], cwd=killed, env=env, timeout=300,
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
        want = pd.read_csv(only_run_dir(ref) / name).drop(columns="wall_seconds", errors="ignore")
        pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_multirun_seeds_equal_one_ensemble(tmp_path):
    """``-m seed=0,1,2`` and ``realizations=3`` train the same three networks, bit for bit."""
    args = [*TINY, "train.epochs=20"]
    flossrun(tmp_path, "-m", *args, "seed=0,1,2")
    runs = sorted(tmp_path.glob("outputs/default/*/summary.csv"))
    assert len(runs) == 3
    multi = pd.concat(pd.read_csv(p) for p in runs).set_index("seed").sort_index()
    flossrun(tmp_path, *args, "realizations=3")
    (ens_file,) = set(tmp_path.glob("outputs/default/*/summary.csv")) - set(runs)
    ens = pd.read_csv(ens_file).set_index("seed").sort_index()
    cols = ["test_accuracy", "test_loss", "success", "epochs_to_success", "lambda_1"]
    pd.testing.assert_frame_equal(multi[cols], ens[cols], check_exact=True)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("floss.k=500", "floss.k"),
        ("task.delay=301", "task.delay"),
        ("task=nonexistent", "task"),
        ("train.epochs=-1", "train.epochs"),
        ("task.delay=21", "task.delay"),  # not a multiple of the 2 XOR taps
        ("dtype=float16", "dtype"),
    ],
)
def test_bad_config_fails_in_one_line_before_compute(tmp_path, override, key):
    proc = flossrun(tmp_path, override, check=False)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"flossrun: error: {key}"), lines[0]
    assert not list(tmp_path.glob("**/summary.csv"))
    assert not list(
        tmp_path.glob("**/.hydra/config.yaml")
    )  # nothing a report could mistake for a run
