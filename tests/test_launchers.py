"""Seed sweeps of the real ``flossrun -m`` through Hydra's parallel launchers, at tiny sizes.

Each launcher must run every job to the end, give exactly the same numbers as the basic
(serial) launcher (which tests/test_cli.py checks against one ensemble of the same seeds),
and leave a sweep folder that the report callback and :func:`flossrun.report.report` read
back as finished runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from flossrun.report import report

FLOSSRUN = str(Path(sys.executable).parent / "flossrun")
TIMEOUT = 300  # seconds per sweep: generous for a busy machine; a sweep takes ~10 s when idle
TINY = [
    "model.N=12", "task.T=40", "task.delay=4", "train.epochs=10", "train.eval_every=5",
    "train.test_size=32", "train.batch=4", "train.log_every=5", "floss.k=4", "floss.steps=20",
    "floss.transient=5", "floss.pre_epochs=5", "floss.epochs=2", "floss.every=5", "device=cpu",
]  # fmt: skip
SEEDS = [0, 1]
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
SUBMITIT = [
    "hydra/launcher=submitit_local",
    "hydra.launcher.timeout_min=5",  # submitit kills a job after this; a job takes ~2 s here
    "hydra.launcher.cpus_per_task=1",
]


def sweep(cwd: Path, *launcher: str) -> Path:
    """Run ``flossrun -m TINY seed=0,1 LAUNCHER...`` in ``cwd``; return the sweep folder.

    The command gets its own process group, so a hung sweep is killed with every worker it
    started (joblib's loky processes, submitit's job subprocesses) instead of leaking them.
    """
    cwd.mkdir(parents=True, exist_ok=True)
    args = [FLOSSRUN, "-m", *TINY, f"seed={','.join(map(str, SEEDS))}", *launcher]
    proc = subprocess.Popen(
        args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"flossrun sweep timed out after {TIMEOUT} s:\n{out}\n{err}") from None
    root = cwd / "outputs" / "default"
    if proc.returncode != 0:
        job_logs = "".join(f"\n--- {p}\n{p.read_text()}" for p in root.glob(".submitit/*/*_log.*"))
        raise AssertionError(f"flossrun failed ({proc.returncode}):\n{out}\n{err}{job_logs}")
    return root


def run_dirs(root: Path) -> list[Path]:
    """The job folders of a sweep (each holds ``.hydra/config.yaml``), one per seed."""
    dirs = sorted(p.parent.parent for p in root.glob("*/.hydra/config.yaml"))
    assert len(dirs) == len(SEEDS), dirs
    return dirs


def launcher_of(run: Path) -> str:
    return OmegaConf.load(run / ".hydra" / "hydra.yaml").hydra.launcher._target_


def numbers(root: Path, name: str) -> pd.DataFrame:
    """``name`` (summary.csv or metrics.csv) of every job, stacked; timings dropped."""
    frames = [pd.read_csv(run / name) for run in run_dirs(root)]
    df = pd.concat(frames).drop(columns=["wall_seconds"], errors="ignore")
    return df.sort_values(list(df.columns[:-1])).reset_index(drop=True)


def assert_same_numbers(root: Path, ref: Path) -> None:
    """Same folder names, same summaries and same metric curves as the reference sweep."""
    assert [p.name for p in run_dirs(root)] == [p.name for p in run_dirs(ref)]
    for name in ("summary.csv", "metrics.csv"):
        pd.testing.assert_frame_equal(numbers(root, name), numbers(ref, name), check_exact=True)


def assert_reported_finished(root: Path, out: Path) -> None:
    """The multirun's callback wrote results.csv, and a fresh report reads every job back."""
    callback = pd.read_csv(root / "results.csv")  # written by on_multirun_end, not by this test
    assert sorted(callback.seed) == SEEDS and (callback.status == "finished").all(), callback
    result = report([root], out=out, plots=False)
    assert result["counts"]["finished"] == len(SEEDS), result["problems"]
    assert result["problems"].empty, result["problems"]
    assert sorted(result["results"].seed) == SEEDS


@pytest.fixture(scope="module")
def basic(tmp_path_factory) -> Path:
    """The reference: the same sweep with Hydra's basic launcher (jobs one after the other)."""
    root = sweep(tmp_path_factory.mktemp("basic"))
    assert all("BasicLauncher" in launcher_of(run) for run in run_dirs(root))
    return root


@pytest.mark.slow  # two sweeps with plugin start-up (~50 s CPU): make test-all, CI
def test_joblib_sweep_matches_basic_launcher(tmp_path, basic):
    root = sweep(tmp_path / "joblib", *JOBLIB)
    runs = run_dirs(root)
    assert all("JoblibLauncher" in launcher_of(run) for run in runs)
    assert all((run / "summary.csv").exists() for run in runs)
    # joblib workers run torch on one thread (cli.set_threads): the numbers must not change
    assert_same_numbers(root, basic)
    assert_reported_finished(root, tmp_path / "report")


@pytest.mark.slow  # two sweeps with plugin start-up (~50 s CPU): make test-all, CI
def test_submitit_local_sweep_finishes_and_reports(tmp_path, basic):
    root = sweep(tmp_path / "submitit", *SUBMITIT)
    runs = run_dirs(root)
    assert all("submitit_launcher.LocalLauncher" in launcher_of(run) for run in runs)
    assert all((run / "summary.csv").exists() for run in runs)
    assert len(list(root.glob(".submitit/*/*_result.pkl"))) == len(SEEDS)  # one submitit job each
    assert_same_numbers(root, basic)
    assert_reported_finished(root, tmp_path / "report")
