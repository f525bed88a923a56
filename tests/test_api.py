"""The Python API (flossrun/api.py, README "Use it from Python"): the quickstart runs verbatim,
its functions compute what a ``flossrun`` run computes, with the documented shapes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import flossrun
from flossrun.contract import MetricsRow

README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart() -> str:
    """The first python code block of the README's "Use it from Python" section."""
    section = README.read_text().split("## Use it from Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_quickstart_runs_verbatim(tmp_path, monkeypatch, capsys):
    code = quickstart()
    assert len(code.strip().splitlines()) <= 15
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    before, after = re.search(
        r"median λ1 (\S+) -> (\S+) nats/step", capsys.readouterr().out
    ).groups()
    assert abs(float(after)) < abs(float(before))  # flossing moved λ1 toward its target 0
    assert (tmp_path / "spectrum.png").stat().st_size > 10_000


def test_top_level_names():
    for name in ("lyapunov_spectrum", "build_model", "VanillaRNN", "LSTM", "GRU", "build",
                 "vanilla", "spectrum", "floss"):  # fmt: skip
        assert hasattr(flossrun, name), name
    assert callable(flossrun.plots.spectrum_figure)


def tiny_run(tmp_path):
    """A flossrun job's Run (in process) at tiny sizes, and its config."""
    from hydra import compose, initialize_config_dir

    from flossrun.cli import CONFIG_DIR
    from flossrun.config import validate
    from flossrun.runner import Run

    overrides = [
        "model.N=10", "model.g=2.5", "realizations=3", "seed=4", "task.delay=4", "task.T=30",
        "floss.k=3", "floss.steps=20", "floss.transient=4", "floss.pre_epochs=6",
        "diag.steps=40", "diag.transient=8", "train.test_size=8", "device=cpu",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return Run(validate(cfg), tmp_path), cfg


def test_spectrum_and_floss_equal_what_a_run_computes(tmp_path):
    """``flossrun.spectrum`` of a model built with the run's seed is its ``initial`` spectrum;
    ``flossrun.floss`` logs the λ1 of its preflossing, epoch by epoch."""
    run, cfg = tiny_run(tmp_path)
    net = flossrun.vanilla(N=10, g=2.5, realizations=3, seed=4)
    want = run.record_spectrum("initial", 0, 10)  # [R, k]
    got = flossrun.spectrum(net, steps=cfg.diag.steps, transient=cfg.diag.transient)
    assert got.shape == (3, 10)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    run.floss_phase(cfg.floss.pre_epochs, "preflossing")
    hist = flossrun.floss(net, k=3, epochs=6, steps=20, transient=4)
    logged = torch.tensor(
        [r.value for r in map(MetricsRow._make, run.logs["metrics"]) if r.name == "lambda_1_floss"]
    ).reshape(6, 3)  # rows per epoch, then realization
    assert hist["lambda_1"].shape == (6, 3) and hist["alive"].all()
    torch.testing.assert_close(hist["lambda_1"], logged.to(hist["lambda_1"].dtype))
    for p, q in zip(net.parameters(), run.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_a_realization_alone_has_the_spectrum_it_has_in_an_ensemble():
    ensemble = flossrun.spectrum(flossrun.vanilla(N=12, g=2.0, realizations=3, seed=0), k=4)
    alone = flossrun.spectrum(flossrun.vanilla(N=12, g=2.0, realizations=1, seed=1), k=4)
    torch.testing.assert_close(alone[0], ensemble[1])


def test_spectrum_inputs_and_errors(float64):
    net = flossrun.build("lstm", N=5, realizations=2, seed=0, dtype=torch.float64)
    assert flossrun.spectrum(net, k=3, steps=30, transient=5, inputs="zeros").shape == (2, 3)
    x = torch.zeros(30, 2, 4, 1, dtype=torch.float64)  # 4 trajectories per realization
    assert flossrun.spectrum(net, k=3, steps=30, transient=5, inputs=x).shape == (2, 3)
    with pytest.raises(ValueError, match=r"inputs must be \[steps, R=2, B, S=1\]"):
        flossrun.spectrum(net, k=3, inputs=torch.zeros(30, 4, 1))
    lam = flossrun.spectrum(net, k=2, steps=30, transient=5, grad=True)
    lam.sum().backward()
    assert all(p.grad is not None for p in net.floss_parameters())


def test_plot_helpers_take_tensors_and_return_figures():
    from matplotlib.figure import Figure

    lam = torch.linspace(0.1, -2.0, 8).repeat(3, 1)  # [R, k]
    fig = flossrun.plots.spectrum_figure({"before": lam, "after": lam - 0.1}, k=4, title="t")
    assert isinstance(fig, Figure)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "k = 4 (flossed exponents)" in labels and "25–75 % of the 3 realizations" in labels
    assert fig.axes[0].get_ylabel() == r"$\lambda_i$ (nats/step)"
    fig = flossrun.plots.flossing_figure(torch.randn(20, 3), target=0.0)
    assert isinstance(fig, Figure) and fig.axes[0].get_xlabel() == "flossing epoch"
