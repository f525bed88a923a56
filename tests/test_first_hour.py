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


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """One uninterrupted TINY run (pre_during: preflossing and two flossing phases)."""
    root = tmp_path_factory.mktemp("reference")
    proc = flossrun(root, *TINY)
    assert proc.returncode == 0, proc.stderr
    return proc, run_dir(root)


@pytest.mark.slow  # two interrupted runs and their resumes (~29 s): make test-slow, CI
def test_ctrl_c_says_how_to_resume_and_loses_nothing(tmp_path, reference):
    """SIGINT in preflossing, inside a flossing phase and in training, one after another: each
    prints one line naming where it stopped (exit code 130, no traceback), the rerun resumes
    there, and the run ends with every number of an uninterrupted run. A rerun of a folder
    whose run stopped before any checkpoint starts over and says so."""
    cut = tmp_path / "cut"
    cut.mkdir()
    assert interrupted(cut, "prefloss:3", *TINY).returncode == 130
    (run_dir(cut) / "checkpoint.pt").unlink()  # as a SIGKILL before the first save
    before = None
    for at, where in [
        ("prefloss:7", "preflossing epoch 7/20"),
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
        want = pd.read_csv(reference[1] / name).drop(columns="wall_seconds", errors="ignore")
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
    exp.settings["default"] = {"condition": [c for c in exp.config().columns if "." in c][:12]}
    with matplotlib.rc_context(RC):
        fig = generic(exp)
        fig.canvas.draw()
    labels = fig.legends[0].get_texts()
    assert max(len(t.get_text()) for t in labels) > 100  # long labels, as in issue 21
    for ax in fig.axes:
        assert ax.get_position().width > 0.3, ax.get_position()


def test_two_lambda_1_have_two_names(reference):
    """metrics.csv names λ1 of the flossing sequences and of the evaluation trajectory apart,
    and preflossing apart from the flossing phases during training; so does the log."""
    proc, run = reference
    metrics = pd.read_csv(run / "metrics.csv")
    assert set(metrics.phase) == {"train", "prefloss", "floss", "eval"}
    names = metrics.groupby("phase").name.unique().map(set).to_dict()
    assert names["prefloss"] == names["floss"] == {"floss_loss", "lambda_1_floss"}
    assert names["eval"] == {"test_loss", "test_accuracy", "lambda_1_eval"}
    floss = metrics[metrics.name == "lambda_1_floss"]
    assert floss.groupby("phase").epoch.agg(["min", "max"]).to_dict("index") == {
        "prefloss": {"min": 1, "max": 20}, "floss": {"min": 21, "max": 30},
    }  # fmt: skip
    said = proc.stdout + proc.stderr
    assert "preflossing done: median λ1_floss" in said and "20-step sequences" in said
    assert "λ1_eval" in said and "50-step diagnostic trajectory" in said
    assert "reached test accuracy >= 0.95" in proc.stdout  # the value, not the key


def test_old_metric_names_are_read_in_the_new_ones():
    from flossrun.io import modern_metrics

    old = pd.DataFrame(
        {"realization": 0, "seed": 0, "phase": ["floss", "floss", "floss", "eval", "eval"],
         "epoch": [1, 2, 3, 0, 0], "name": ["lambda_1"] * 3 + ["lambda_1", "test_loss"],
         "value": 0.0}
    )  # fmt: skip
    cfg = {"floss.name": "pre_during", "floss.k": 4, "floss.pre_epochs": 2}
    new = modern_metrics(old, cfg)
    assert list(new.phase) == ["prefloss", "prefloss", "floss", "eval", "eval"]
    assert list(new.name) == ["lambda_1_floss"] * 3 + ["lambda_1_eval", "test_loss"]
    assert modern_metrics(new, cfg) is new  # today's files pass unchanged


def test_a_job_without_training_reports_no_accuracy(tmp_path):
    """A flossing-only job (as the lyapunov_control preset) prints no success or accuracy, and
    its report row shows "-" there; epochs print as integers."""
    proc = flossrun(tmp_path, *TINY, "floss=pre", "train.epochs=0")
    assert proc.returncode == 0, proc.stderr
    summary = proc.stdout[proc.stdout.index("flossrun: delayed_xor") :]
    assert "success" not in summary and "accuracy" not in summary
    assert "no training (train.epochs=0)" in summary
    from flossrun.report.cli import condition_text, report

    res = report([tmp_path / "outputs"], plots=False)
    row = condition_text(res["conditions"]).splitlines()[1].split()
    assert row[1:4] == ["1", "-", "-"], row  # n, success, median_acc
    trained = res["conditions"].assign(trained=True, epochs_to_success_median=1000.0)
    assert " 1000 " in condition_text(trained)  # not 1e+03


def test_per_run_plots_fit_for_a_talk(reference):
    """The run's figures: whole titles, λ_i in mathtext, bands and k explained, flossing phases
    marked on the learning curves, λ1 of preflossing and of the phases apart."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401

    from flossrun import plots

    _, run = reference
    assert {p.name for p in (run / "plots").iterdir()} == {
        "learning_curve.png", "flossing.png", "spectrum.png",
    }  # fmt: skip
    title = "delayed_xor d=20 T=300, vanilla N=80, floss=pre_during k=75, R=10 " * 2
    spectra = pd.read_csv(run / "spectra.csv")
    fig = plots.run_spectrum_figure(spectra, title, k=4)
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_ylabel() == r"$\lambda_i$ (nats/step)"
    assert ax.title.get_window_extent().width <= fig.bbox.width
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "k = 4 (flossed exponents)" in labels
    metrics = pd.read_csv(run / "metrics.csv")
    cfg = plots.run_config(run)
    assert plots.flossing_phase_epochs(cfg) == [10, 20]
    fig = plots.learning_figure(metrics, title, [10, 20], 5)
    for ax in fig.axes:
        marks = [ln for ln in ax.lines if list(ln.get_xdata()) in ([10, 10], [20, 20])]
        assert len(marks) == 2
        assert "flossing phase (5 flossing epochs)" in [
            t.get_text() for t in ax.get_legend().get_texts()
        ]
    assert fig.axes[1].get_yscale() == "log"  # the training loss (positive) spans decades
    fig = plots.run_flossing_figure(metrics, title, 0.0)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[:2] == ["preflossing", "flossing phases during training"]


def test_help_explains_every_key(monkeypatch, capsys):
    from flossrun import cli

    monkeypatch.setattr(sys, "argv", ["flossrun", "--help"])
    cli.main()
    text = capsys.readouterr().out
    for line in ("floss.every = 100               training epochs between flossing phases",
                 "floss.times = 2                 maximum number of interflossing phases",
                 "train.success_threshold = 0.95  final test accuracy counted as success",
                 "model.g = 1.0                   gain"):  # fmt: skip
        assert line in text, line
    presets = " ".join(text.split("presets:")[1].split())  # the wrapped lines as one
    for preset in (cli.CONFIG_DIR / "experiment").glob("*.yaml"):
        assert f" {preset.stem}," in presets or f" {preset.stem};" in presets, preset.stem
    assert "summary, grid, condition, x, claim" in presets


def test_folder_names_hold_no_glob_characters():
    from flossrun.cli import run_name

    assert run_name("model.g=[0,1],seed=2") == "model.g=(0,1),seed=2"
    a, b = run_name("task.x=a*b"), run_name("task.x=a?b")
    assert a != b and not set("[]*?") & set(a + b)


def test_packaging_declares_a_license_string_and_every_config_folder():
    import tomllib

    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert isinstance(project["project"]["license"], str)
    packages = set(project["tool"]["setuptools"]["packages"])
    for group in (root / "configs").iterdir():
        if group.is_dir():
            assert f"flossrun.configs.{group.name}" in packages, group.name


def test_conditions_that_trained_nothing_are_marked():
    from flossrun.report.conditions import trained

    rows = pd.DataFrame(
        {"train.epochs": [0, 100, 100, 100, 100, 100, 100, 100],
         "analysis.name": ["none", "none", "landscape", "landscape", "smoothness", "smoothness",
                           "orbit", "gone"],
         "analysis.network": [None, None, "chaotic_lstm", "trained", "chaotic_lstm", "trained",
                              None, None],
         "analysis.retired_key": [None, None, None, None, 3.0, None, None, None]}
    )  # fmt: skip
    # as each analysis declares (trains()), never by its name: the smoothness analysis of the
    # built-in network trains nothing even when train.epochs is left at its default; a key the
    # schema no longer has is ignored, an analysis this code does not know counts as training
    expected = [False, True, False, True, False, True, True, True]
    assert trained(rows).tolist() == expected
