"""The real ``flossrun`` with analyses (docs/design.md §11): the job seam, the files, resume and
skip, and bad analysis options failing in one line naming the key (found in-process; the line
the command prints is checked in test_cli.py).

The orbit and the chaotic-landscape runs are made once for the module (``shared_run``) and read
by the tests of their files, of their skip and of the report.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from cli_support import config_error, copy_tree, flossrun, only_run_dir

SINE = [
    "task=sine_generator", "model=lstm", "model.N=4", "task.T=30", "task.n_omega=12",
    "train.epochs=6", "train.eval_every=3", "train.log_every=3", "train.batch=3", "floss=none",
    "diag.steps=40", "diag.transient=10", "device=cpu",
]  # fmt: skip
ORBIT = ["analysis=orbit", "analysis.every=3", "analysis.steps=40", "analysis.burn_in=30"]
CHAOTIC = [
    "analysis=landscape", "model=lstm", "model.N=2", "task=sine_generator", "floss=none",
    "analysis.points=21", "analysis.grid=3", "device=cpu",
]  # fmt: skip
ORBIT_RUN = [*SINE, *ORBIT, "name=orbit_diagram"]  # made once (``shared_run``)
CHAOTIC_RUN = [*CHAOTIC, "name=loss_landscape"]


def test_orbit_run_trains_and_stores_orbits_of_the_documented_shape(tmp_path, shared_run):
    root, proc = shared_run(*ORBIT_RUN)
    run = only_run_dir(root)
    data = torch.load(run / "orbits.pt", weights_only=True)
    assert data["epochs"].tolist() == [0, 3, 6]
    assert data["outputs"].shape == (3, 1, 10, 4, 10)  # [E, R, W, I, steps - burn_in]
    assert data["lambda_1"].shape == (3, 1, 10, 4)
    orbits = pd.read_csv(run / "orbits.csv")
    assert len(orbits) == 3 * 10 * 4 and (orbits.distinct >= 1).all()
    summary = pd.read_csv(run / "summary.csv")
    assert summary.test_accuracy.isna().all() and summary.test_loss.notna().all()
    assert "test MSE" in proc.stdout
    again = flossrun(copy_tree(root, tmp_path), *ORBIT_RUN)
    assert "already finished" in again.stdout


def test_chaotic_landscape_job_runs_without_training_and_is_skipped_when_done(tmp_path, shared_run):
    root, proc = shared_run(*CHAOTIC_RUN)
    run = only_run_dir(root)
    df = pd.read_csv(run / "landscape.csv")
    assert list(df.columns) == ["path", "point", "s1", "s2", "loss", "lambda_1", "regime"]
    assert (df.path == "scale").sum() == 21 and (df.path == "grid").sum() == 9
    scale = df[df.path == "scale"]
    assert scale.loc[scale.s1 == 1.0, "loss"].item() == 0.0
    assert not (run / "metrics.csv").exists()  # an analysis job: no training
    assert "crosses 0" in proc.stdout
    assert "already finished" in flossrun(copy_tree(root, tmp_path), *CHAOTIC_RUN).stdout


def test_trained_landscape_job_trains_then_slices(tmp_path):
    flossrun(tmp_path, *SINE, "analysis=landscape", "analysis.network=trained",
             "analysis.points=11", "analysis.s_min=0", "analysis.sequences=3")  # fmt: skip
    run = only_run_dir(tmp_path)
    df = pd.read_csv(run / "landscape.csv")
    assert set(df.path) == {"from_init", "random"}
    assert (run / "metrics.csv").exists() and (run / "summary.csv").exists()
    summary = pd.read_csv(run / "summary.csv")
    trained = df[(df.path == "from_init") & (df.s1 == 1.0)].loss.item()
    assert trained == pytest.approx(summary.test_loss.item(), rel=0.5)  # 3 of the test ω


@pytest.mark.parametrize(
    ("args", "key"),
    [
        ([*SINE, *ORBIT, "analysis.burn_in=40"], "analysis.burn_in"),
        ([*SINE, "analysis=orbit", "analysis.inits=0"], "analysis.inits"),
        ([*SINE, "analysis=orbit", "analysis.radius=2"], "analysis.radius"),
        (["analysis=orbit", "device=cpu"], "analysis"),  # delayed XOR has no constant inputs
        ([*CHAOTIC, "analysis.network=mystery"], "analysis.network"),
        ([*CHAOTIC, "analysis.grid_s1=[1,0]"], "analysis.grid_s1"),
        ([*CHAOTIC, "model.N=3"], "analysis.network"),  # the chaotic LSTM has 2 units
        ([*CHAOTIC, "realizations=2"], "realizations"),
        ([*SINE, "task.delay=4"], "task.delay"),
        (["analysis=bifurcation"], "analysis"),
    ],
)
def test_bad_analysis_options_fail_in_one_line_naming_the_key(args, key):
    line = config_error(*args)
    assert "\n" not in line and line.startswith(f"flossrun: error: {key}"), line


def test_report_draws_both_analysis_figures_and_states_their_numbers(tmp_path, shared_run):
    from flossrun.report import report
    from flossrun.report.claims import summarize

    for args in (ORBIT_RUN, CHAOTIC_RUN):
        copy_tree(shared_run(*args)[0], tmp_path)
    res = report([tmp_path / "outputs"], out=tmp_path / "report")
    names = {p.name for p in res["figures"]}
    assert {"orbit_diagram.png", "loss_landscape.png"} <= names, res["notes"]
    col = res["collection"]
    assert "distinct outputs" in summarize("orbit_diagram", col.subset("orbit_diagram"))
    text = summarize("loss_landscape", col.subset("loss_landscape"))
    assert "crosses 0 at s = " in text and "per unit s" in text
