"""analysis=smoothness (docs/design.md §11): exact path derivatives against finite differences,
growth rates on a map with a known exponent, the neutral band, the options' one-line errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from flossrun.analyses import analysis_config
from flossrun.analyses import landscape as ls
from flossrun.analyses import smoothness as sm
from flossrun.config import ConfigError
from flossrun.contract import RATE_COLUMNS, RateRow
from flossrun.models import build_model, model_config
from flossrun.tasks import build_task, task_config


def _fd_check(cost, a, b, s, h=5e-5):
    """Exact V′, V″ against fourth-order central differences of V and of the exact V′, and
    the two autograd methods against each other."""
    V, d1, d2 = sm.path_derivatives(cost, a, b, s)
    for x, y in zip((V, d1, d2), sm.path_derivatives(cost, a, b, s, "reverse"), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-14)
    at = {k: sm.path_derivatives(cost, a, b, s + k * h)[:2] for k in (-2, -1, 1, 2)}

    def fd(j):  # (8 (f(h) − f(−h)) − (f(2h) − f(−2h))) / 12h, error O(h⁴)
        return (8 * (at[1][j] - at[-1][j]) - (at[2][j] - at[-2][j])) / (12 * h)

    torch.testing.assert_close(d1, fd(0), rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(d2, fd(1), rtol=1e-6, atol=1e-12)
    assert d2.abs().max() > 1e-3  # the check is not vacuous
    return V, d1, d2


def test_chaotic_lstm_derivatives_match_finite_differences_in_float64():
    net = ls.chaotic_lstm(0)
    H = [5, 10, 20]
    cost = sm.state_cost(net, torch.zeros(max(H), 1, 1, dtype=torch.float64), H)
    zero = {k: torch.zeros_like(v) for k, v in ls.parameters_of(net, ls.CHAOTIC_PARAMS).items()}
    theta = ls.parameters_of(net, ls.CHAOTIC_PARAMS)
    V, _, _ = _fd_check(cost, zero, theta, torch.tensor([0.7, 0.95, 1.2, 1.6]).double())
    assert V.shape == (3, 4)
    V, d1, d2 = sm.path_derivatives(cost, zero, theta, torch.ones(1, dtype=torch.float64))
    assert V.abs().max() == 0 and d1.abs().max() == 0 and (d2 > 0).all()  # s = 1: the reference


def test_trained_sine_cost_derivatives_match_finite_differences_every_parameter_moving():
    init = build_model({"name": "lstm", "N": 3}, 1, 1, [1], dtype=torch.float64)
    other = build_model({"name": "lstm", "N": 3}, 1, 1, [2], dtype=torch.float64)
    a, b = ls.parameters_of(init), ls.parameters_of(other)
    omega = torch.tensor([0.2, 0.35], dtype=torch.float64)
    cost = sm.sine_cost(other, omega, [4, 9], torch.float64)
    _fd_check(cost, a, b, torch.tensor([0.0, 0.4, 1.3], dtype=torch.float64))
    # one point alone gives the numbers it gets among others (points are realizations)
    alone = sm.path_derivatives(cost, a, b, torch.tensor([0.4], dtype=torch.float64))
    among = sm.path_derivatives(cost, a, b, torch.tensor([0.0, 0.4], dtype=torch.float64))
    for x, y in zip(alone, among, strict=True):
        torch.testing.assert_close(x[:, 0], y[:, 1], rtol=1e-12, atol=1e-14)


class Logistic(nn.Module):
    """x_{t+1} = r x_t (1 − x_t) as a one-realization 'network' (λ1 = ln 2 at r = 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.r = nn.Parameter(torch.full((1, 1), 4.0, dtype=torch.float64))
        self.h0 = nn.Parameter(torch.full((1, 1), 0.3, dtype=torch.float64))

    def forward(self, steps: int) -> torch.Tensor:
        h, hs = self.h0, []
        for _ in range(steps):
            h = self.r * h * (1 - h)
            hs.append(h)
        return torch.stack(hs)


def test_growth_rates_recover_the_logistic_maps_exponent_and_twice_it():
    net, H = Logistic(), [10, 15, 20, 25, 30, 35, 40]
    with torch.no_grad():
        ref = net(max(H))

    def cost(points):
        c = (sm.differentiable_points(net, points)(max(H)) - ref).square()[..., 0].cumsum(0)
        return torch.stack([c[T - 1] / T for T in H])

    a = {"r": torch.full((1, 1), 3.99, dtype=torch.float64)}
    b = {"r": torch.full((1, 1), 4.0, dtype=torch.float64)}
    s = torch.linspace(0, 1, 200, dtype=torch.float64)
    _, d1, d2 = sm.path_derivatives(cost, a, b, s)
    lam = torch.full((200,), math.log(2), dtype=torch.float64)
    _, rates = sm.window_table("r", s, H, d1, d2, lam, lam, 4, 0.01, 10)
    for r in rates:
        row = RateRow._make(r)._asdict()
        assert 0.85 < row["ratio_L"] < 1.05 and 0.85 < row["ratio_L_g"] < 1.05
        assert row["regime"] == "chaotic"


def test_growth_rate_is_the_slope_of_ln_L_and_bounded_L_has_none():
    T = [100, 200, 300, 400]
    assert sm.growth_rate(T, [math.exp(0.17 * t + 2) for t in T]) == pytest.approx(0.17)
    assert sm.growth_rate(T, [3.0, 3.0, 3.0, 3.0]) == pytest.approx(0.0, abs=1e-15)
    assert math.isnan(sm.growth_rate(T, [0.0, 0.0, 0.0, 1.0]))


def test_neutral_band_classification():
    assert [sm.classify(v, 0.01) for v in (-0.2, -0.01, -0.005, 0.0, 0.009, 0.01, 0.3)] == [
        "contracting", "contracting", "neutral", "neutral", "neutral", "chaotic", "chaotic",
    ]  # fmt: skip
    assert sm.classify(0.005, 0.0) == "chaotic" and sm.classify(-0.005, 0.0) == "contracting"


def test_minima_count_sign_changes_minus_to_plus():
    d1 = torch.tensor([[-1.0, 1.0, 2.0, -1.0, -0.5, 0.0, 3.0]])
    assert sm.minima_count(d1).sum().item() == 2


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"horizons": [100, 50]}, "analysis.horizons"),
        ({"horizons": [50]}, "analysis.horizons"),
        ({"fit_from": 1000}, "analysis.fit_from"),
        ({"windows": 0}, "analysis.windows"),
        ({"points": 10, "windows": 6}, "analysis.windows"),
        ({"neutral_band": -0.1}, "analysis.neutral_band"),
        ({"lyap_steps": 0}, "analysis.lyap_steps"),
        ({"lyap_transient": -1}, "analysis.lyap_transient"),
        ({"s_max": 0.1}, "analysis.s_max"),
        ({"network": "chaos"}, "analysis.network"),
        ({"bogus": 1}, "analysis.bogus"),
        ({"derivatives": "numeric"}, "analysis.derivatives"),
    ],
)
def test_smoothness_options_fail_in_one_line_naming_the_key(fields, key):
    task = task_config({"name": "sine_generator"})
    model = model_config({"name": "lstm", "N": 2})
    with pytest.raises(ConfigError) as err:
        analysis_config({"name": "smoothness", **fields}, task, model)
    msg = str(err.value)
    assert msg.startswith(key) and "\n" not in msg


@pytest.mark.parametrize("name", ["landscape", "orbit"])
def test_long_window_options_of_landscape_and_orbit_fail_in_one_line(name):
    task = task_config({"name": "sine_generator"})
    model = model_config({"name": "lstm", "N": 2})
    for key, value in (("lyap_steps", 0), ("neutral_band", -1.0)):
        with pytest.raises(ConfigError, match=rf"^analysis\.{key}="):
            analysis_config({"name": name, key: value}, task, model)


def test_chaotic_network_needs_a_two_unit_lstm():
    task = task_config({"name": "sine_generator"})
    with pytest.raises(ConfigError, match=r"^analysis\.network=chaotic_lstm: is a 2-unit LSTM"):
        analysis_config({"name": "smoothness"}, task, model_config({"name": "lstm", "N": 3}))
    assert build_task({"name": "sine_generator"}).S == 1


def test_smoothness_job_through_the_cli_writes_its_tables_and_is_skipped_when_done(tmp_path):
    import pandas as pd
    from test_cli import flossrun, only_run_dir

    args = [
        "analysis=smoothness", "model=lstm", "model.N=2", "task=sine_generator", "floss=none",
        "analysis.points=20", "analysis.windows=2", "analysis.horizons=[5,10,20]",
        "analysis.fit_from=5", "analysis.lyap_steps=50", "analysis.lyap_transient=10",
        "device=cpu",
    ]  # fmt: skip
    proc = flossrun(tmp_path, *args)
    run = only_run_dir(tmp_path)
    rates = pd.read_csv(run / "smoothness_rates.csv")
    assert list(rates.columns) == list(RATE_COLUMNS) and len(rates) == 2
    assert set(rates.regime) <= set(sm.CLASSES)
    points = pd.read_csv(run / "smoothness_points.csv")
    assert len(points) == 20 * 3 and set(points["T"]) == {5, 10, 20}
    assert len(pd.read_csv(run / "smoothness_windows.csv")) == 2 * 3
    assert (run / "plots" / "smoothness.png").exists() and not (run / "metrics.csv").exists()
    assert "rate ln L" in proc.stdout
    assert "already finished" in flossrun(tmp_path, *args).stdout


def test_landscape_loss_scale_and_orthogonal_skew_fail_in_one_line():
    task = task_config({"name": "sine_generator"})
    model = model_config({"name": "lstm", "N": 2})
    with pytest.raises(ConfigError, match=r"^analysis\.loss_scale=sqrt: allowed: log, linear$"):
        analysis_config({"name": "landscape", "loss_scale": "sqrt"}, task, model)
    with pytest.raises(ConfigError, match=r"^model\.skew=lower: allowed: full, upper$"):
        model_config({"name": "orthogonal", "skew": "lower"})


def _window(i: int, lam: tuple[float, float, float], rate_l: float, rate_lg: float) -> RateRow:
    """A window of path ``scale`` with λ1 (mean, min, max) and growth rates of ln L, ln L_g."""
    mean, low, high = lam
    return RateRow("scale", i, i * 0.1, i * 0.1 + 0.1, mean, low, high, "x", mean, high,
                   rate_l, rate_lg, rate_l / mean, rate_lg / (2 * mean), rate_l / high,
                   rate_lg / (2 * high), 100, 400)  # fmt: skip


def test_smoothness_table_tests_fully_chaotic_windows_against_their_mean_lambda():
    """Claim 8's table: a window whose every point is chaotic is tested against its mean λ1 in
    its own column; a mixed window (a periodic point inside) counts only among λ1 > 0.05."""
    from flossrun.report.attractors import smoothness_table

    rows = [
        _window(0, (0.20, 0.10, 0.25), 0.22, 0.50),  # every point chaotic: 1.1 and 1.25 × λ1
        _window(1, (0.20, 0.08, 0.30), 0.30, 0.56),  # every point chaotic: 1.5 × λ1, 1.4 × 2λ1
        _window(2, (0.10, -0.10, 0.30), 0.28, 0.60),  # mixed: 2.8 × λ1, in band of the max
        _window(3, (-0.20, -0.30, -0.10), 0.001, 0.002),  # contracting, bounded
    ]
    data = {"rates": [list(r) for r in rows], "rate_columns": list(RATE_COLUMNS)}
    header, _, line = smoothness_table({"lstm": data}).splitlines()
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert "windows with every point λ1 > 0.05" in header.split("|")[6]
    assert cells[:2] == ["lstm / scale", "3"]  # three windows with mean λ1 > 0.05
    assert cells[2] == "1 [3]"  # L in band: window 0 by its mean λ1; all three by their max
    assert cells[5] == "1, 1 of 2"  # the fully chaotic windows 0 and 1: only 0 in band
    assert cells[6:8] == ["1", "1"] and cells[9] == "1 of 1"  # the contracting one, bounded
