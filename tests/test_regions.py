"""The ``regions`` preset and ``analysis=regions`` (docs/design.md §11, claim 9): the options'
one-line errors, the memory rows it reads, the verdict, and the real command at tiny sizes
through the report's figure and claim text."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from cli_support import SWEEP_TABLES_ONLY, config_error, flossrun

from flossrun.analyses import regions as rg
from flossrun.report.regions import verdict

TINY_REGIONS = [
    "-m", "experiment=regions", "model.g=1,3", "floss.target=-0.2", "realizations=2", "model.N=8",
    "task.T=30", "task.delay=4", "train.epochs=6", "train.eval_every=3", "train.log_every=3",
    "train.test_size=16", "floss.pre_epochs=4", "floss.epochs=2", "floss.every=3",
    "floss.steps=20", "floss.transient=4", "diag.steps=40", "diag.transient=5",
    "diag.lags=[1,5,10]", "analysis.horizons=[6,10,16]", "analysis.fit_from=6",
    "analysis.points=5", "analysis.lyap_steps=40", "analysis.lyap_transient=10",
    "analysis.sequences=2", "device=cpu", SWEEP_TABLES_ONLY,
]  # fmt: skip


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("analysis.span=1.5", "analysis.span"),
        ("analysis.horizons=[5,20]", "analysis.horizons"),  # must exceed task.delay=10
        ("analysis.fit_from=90", "analysis.fit_from"),
        ("analysis.points=2", "analysis.points"),
        ("analysis.derivatives=numeric", "analysis.derivatives"),
    ],
)
def test_bad_regions_options_fail_in_one_line_naming_the_key(override, key):
    line = config_error("experiment=regions", override)
    assert "\n" not in line and line.startswith(f"flossrun: error: {key}="), line


def test_regions_needs_a_delayed_task():
    line = config_error("analysis=regions", "task=sine_generator", "diag.jacobian=false")
    assert line.startswith("flossrun: error: analysis=regions: needs a delayed task"), line


def test_memory_reads_the_longest_lag_of_the_final_stage():
    rows = [
        (0, 7, "final", 5, 0, "error_signal_norm", 0.5),
        (0, 7, "final", 20, 0, "error_signal_norm", 0.01),
        (0, 7, "final", 20, 4, "log10_condition", 3.0),
        (0, 7, "final", 20, 8, "log10_condition", 9.0),
        (0, 7, "initial", 40, 0, "error_signal_norm", 1.0),
        (1, 8, "final", 20, 0, "error_signal_norm", 2.0),
    ]
    mem = rg.memory_of(rows, 0, 4)
    assert mem == {"lag": 20, "error_signal_norm": 0.01, "log10_condition": 3.0, "condition_k": 4}
    assert math.isnan(rg.memory_of([], 0, 4)["error_signal_norm"])
    assert rg.memory_of(rows, 0, 4, "initial")["error_signal_norm"] == 1.0
    assert math.isnan(rg.memory_of(rows, 0, 1)["log10_condition"])  # no recorded k <= 1
    assert rg.diagnostics_stage("trained", True) == "final"
    assert rg.diagnostics_stage("placed", True) == "preflossed"
    assert rg.diagnostics_stage("placed", False) == "initial"


def test_the_placed_network_is_the_one_preflossing_left_not_the_trained_one():
    import torch

    from flossrun.models.vanilla import VanillaRNN

    model = VanillaRNN(6, 1, 1, [3, 4])
    hook = rg.PlacementRecorder()
    assert hook.due(0) and not hook.due(1)
    snap = hook.snapshot(model, 0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():  # "training" moves every parameter
        for p in model.parameters():
            p.add_(1.0)
    placed = rg.placed_model(model, snap)
    for name, p in placed.named_parameters():
        assert torch.equal(p, before[name]), name
        assert not torch.equal(p, getattr(model, name)), name


def test_verdict_says_whether_each_part_of_the_three_regions_holds():
    df = pd.DataFrame({
        "regime": ["contracting", "neutral", "chaotic"],
        "error_signal_norm": [1e-4, 0.3, 5.0],
        "rate_L": [-0.01, 0.002, 0.15],
    })  # fmt: skip
    assert verdict(df).startswith("The three regions appear")
    df.loc[2, "rate_L"] = 0.001
    text = verdict(df)
    assert text.startswith("The three regions do not all appear")
    assert "L grows with T where λ1 > 0: no" in text
    assert "all three regions populated: no" in verdict(df.iloc[:2])


def test_regions_preset_runs_at_tiny_sizes_and_the_report_draws_its_figure(tmp_path):
    from flossrun.report import report
    from flossrun.report.claims import summarize

    proc = flossrun(tmp_path, *TINY_REGIONS)
    runs = sorted(tmp_path.glob("outputs/regions/quick/*/regions.csv"))
    assert len(runs) == 2, proc.stdout
    df = pd.read_csv(runs[0])
    assert list(df.columns) == list(rg.REGION_COLUMNS) and len(df) == 4
    assert sorted(df["stage"]) == ["placed", "placed", "trained", "trained"]
    placed, trained = (df[df["stage"] == s].set_index("seed") for s in rg.STAGES)
    assert not placed["lambda_1"].equals(trained["lambda_1"])  # training moved the networks
    assert placed["success"].equals(trained["success"])  # success is after training, both rows
    assert (df["lag"] == 10).all() and df["error_signal_norm"].notna().all()
    assert df[["lambda_1", "rate_L", "rate_L_g"]].notna().all().all()
    assert "memory and smoothness per network" in proc.stdout
    res = report([tmp_path / "outputs"], out=tmp_path / "report")
    assert "regions.png" in {p.name for p in res["figures"]}, res["notes"]
    text = summarize("regions", res["collection"].subset("regions"))
    assert "three regions" in text and "| placed | contracting |" in text
    assert "g=1, target=-0.2" in text and "g=3, target=-0.2" in text
