"""A new user's first hour through the real ``flossrun`` command (issue 21): typos refused with
or without ``+``, keys of the groups a preset selects accepted, Ctrl-C that says how to resume
and loses nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

FLOSSRUN = str(Path(sys.executable).parent / "flossrun")
TINY = [
    "model.N=12", "task.T=40", "task.delay=4", "train.epochs=30", "train.eval_every=10",
    "train.test_size=32", "train.batch=4", "train.log_every=5", "floss.k=4", "floss.steps=20",
    "floss.transient=5", "floss.pre_epochs=20", "floss.epochs=5", "floss.every=10",
    "train.checkpoint_every=1000", "diag.steps=60", "diag.transient=10", "device=cpu",
    "threads=1",
]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def flossrun(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FLOSSRUN, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=ENV
    )


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one non-empty stderr line of a refused command."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    return lines[0]


def test_unknown_key_refused_with_or_without_plus(tmp_path):
    """``+floss.kk=3`` is the same typo as ``floss.kk=3``: one line, nothing written."""
    plain = error_line(flossrun(tmp_path, *TINY, "floss.kk=3"))
    plus = error_line(flossrun(tmp_path, *TINY, "+floss.kk=3"))
    assert plain == plus
    assert plain.startswith("flossrun: error: floss.kk: not an option of floss (allowed: ")
    assert "every" in plain and "times" in plain
    assert not list(tmp_path.rglob("*"))  # no folder, no log


def test_keys_of_the_groups_a_preset_selects_are_accepted(tmp_path):
    """``variant=orbit_lstm`` selects ``analysis=orbit`` and ``model=lstm``: their keys are
    options; a key of the default groups that the preset replaced is not."""
    ok = flossrun(tmp_path, "experiment=orbit_diagram", "variant=orbit_lstm",
                  "analysis.every=25", "task.n_omega=5", "--cfg", "job")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "every: 25" in ok.stdout
    bad = error_line(flossrun(tmp_path, "experiment=orbit_diagram", "variant=orbit_lstm",
                              "+model.g=2"))  # fmt: skip
    assert bad.startswith("flossrun: error: model.g: not an option of model=lstm"), bad


def test_missing_key_names_the_composed_group():
    """In process: the key check reads the composition, not the defaults."""
    from flossrun.cli import CONFIG_DIR, GROUPS
    from flossrun.config import ConfigError
    from flossrun.keys import check_keys

    check_keys(["task=sine_generator", "analysis=orbit", "analysis.every=3"], CONFIG_DIR, GROUPS)
    with pytest.raises(ConfigError, match=r"^analysis.every: not an option of analysis=none"):
        check_keys(["analysis.every=3"], CONFIG_DIR, GROUPS)
    with pytest.raises(ConfigError, match=r"^seeed: not a key of flossrun"):
        check_keys(["+seeed=3"], CONFIG_DIR, GROUPS)


SIGINT_AT = """
import os, signal, sys
from flossrun import cli, runner
phase, epoch = os.environ["SIGINT_AT"].split(":")
record = runner.Run.record
def record_then_interrupt(self, ph, ep, values):
    record(self, ph, ep, values)
    if ph == phase and ep == int(epoch):
        os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C in a terminal
runner.Run.record = record_then_interrupt
sys.argv = ["flossrun", *sys.argv[1:]]
cli.main()
"""


def interrupted(cwd: Path, at: str, *args: str) -> subprocess.CompletedProcess:
    """``flossrun args`` with SIGINT right after the metrics row ``phase:epoch``."""
    return subprocess.run(
        [sys.executable, "-c", SIGINT_AT, *args], cwd=cwd, env={**ENV, "SIGINT_AT": at},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def run_dir(root: Path) -> Path:
    (cfg,) = root.glob("outputs/**/.hydra/config.yaml")
    return cfg.parent.parent


def test_ctrl_c_says_how_to_resume_and_loses_nothing(tmp_path):
    """SIGINT in preflossing, inside a flossing phase and in training, one after another: each
    prints one line naming where it stopped (exit code 130, no traceback), the rerun resumes
    there, and the run ends with every number of an uninterrupted run. A rerun of a folder
    whose run stopped before any checkpoint starts over and says so."""
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    ref.mkdir(), cut.mkdir()
    assert flossrun(ref, *TINY).returncode == 0
    assert interrupted(cut, "floss:3", *TINY).returncode == 130
    (run_dir(cut) / "checkpoint.pt").unlink()  # as a SIGKILL before the first save
    before = None
    for at, where in [
        ("floss:7", "preflossing epoch 7/20"),
        ("floss:22", "flossing phase 1 epoch 2/5 after training epoch 10"),
        ("train:15", "training epoch 15"),
        (None, None),
    ]:
        proc = interrupted(cut, at, *TINY) if at else flossrun(cut, *TINY)
        said = proc.stdout + proc.stderr
        if before is None:
            assert "holds no checkpoint" in said and "starting over" in said, said
        else:
            assert f"resuming {run_dir(cut)} at {before}" in said, said
        if at is None:
            assert proc.returncode == 0, proc.stderr
            break
        assert proc.returncode == 130, proc.stderr
        assert error_line(proc) == (
            f"flossrun: interrupted at {where}; rerun the same command to resume from {where} "
            f"(checkpoint {run_dir(cut) / 'checkpoint.pt'})"
        )
        assert not (run_dir(cut) / "summary.csv").exists()
        before = where
    for name in ("summary.csv", "metrics.csv", "spectra.csv"):
        got = pd.read_csv(run_dir(cut) / name).drop(columns="wall_seconds", errors="ignore")
        want = pd.read_csv(run_dir(ref) / name).drop(columns="wall_seconds", errors="ignore")
        pd.testing.assert_frame_equal(got, want, check_exact=True)


SMALL = [
    "model.N=8", "task.T=30", "train.epochs=10", "train.eval_every=5", "train.test_size=16",
    "train.batch=4", "train.log_every=5", "floss.k=2", "floss.steps=12", "floss.transient=2",
    "floss.pre_epochs=3", "floss.epochs=2", "floss.every=5", "diag.steps=30", "diag.transient=5",
    "device=cpu", "threads=1",
]  # fmt: skip


def test_a_sweeps_report_covers_only_its_own_jobs(tmp_path):
    """A plain sweep shares ``outputs/default`` with earlier plain runs; its report counts only
    its own jobs, labels conditions by the one key that varies, and its legend leaves the axes
    their width."""
    assert flossrun(tmp_path, *SMALL, "task.delay=2", "model.g=1.5", "seed=7").returncode == 0
    sweep = flossrun(tmp_path, "-m", *SMALL, "seed=0", "task.delay=4,6")
    assert sweep.returncode == 0, sweep.stderr
    root = tmp_path / "outputs" / "default"
    assert len(list(root.glob("*/summary.csv"))) == 3  # the earlier run is still there
    results = pd.read_csv(root / "results.csv")
    assert sorted(results["task.delay"]) == [4, 6] and set(results.seed) == {0}
    conditions = pd.read_csv(root / "conditions.csv")
    assert list(conditions.condition) == ["delay=4", "delay=6"]
    assert not list(root.glob(".flossrun-jobs-*"))  # the job list is cleaned up

    import matplotlib

    from flossrun.report import collect
    from flossrun.report.figures import generic
    from flossrun.report.style import RC

    exp = collect([root]).subset("default")
    exp.settings["default"] = {"condition": [c for c in exp.config_columns if "." in c][:12]}
    with matplotlib.rc_context(RC):
        fig = generic(exp)
        fig.canvas.draw()
    labels = fig.legends[0].get_texts()
    assert max(len(t.get_text()) for t in labels) > 100  # long labels, as in issue 21
    for ax in fig.axes:
        assert ax.get_position().width > 0.3, ax.get_position()
