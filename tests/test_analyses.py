"""Orbit diagrams and loss landscapes (docs/design.md §11): shapes, reproducibility, and the
loss at a point of a path against a network built from θ(s) directly."""

from __future__ import annotations

import math

import pytest
import torch

from flossrun.analyses import OrbitConfig
from flossrun.analyses import landscape as ls
from flossrun.analyses.orbit import OrbitRecorder, distinct_values
from flossrun.models import build_model
from flossrun.tasks import build_task

ORBIT = OrbitConfig(every=5, n_omega=3, inits=2, init_std=100.0, steps=60, burn_in=40)


def _sine(T: int = 30):
    return build_task({"name": "sine_generator", "T": T})


def test_distinct_values_counts_fixed_points_and_cycles():
    t = torch.arange(40, dtype=torch.float64)
    fixed = torch.full((40,), 0.3, dtype=torch.float64) + 1e-6 * torch.sin(t)  # jitter < tol
    cycle = torch.tensor([0.1, -0.4, 0.7], dtype=torch.float64).repeat(14)[:40]
    ramp = 0.01 * t
    n = distinct_values(torch.stack([fixed, cycle, ramp]), 1e-3)
    assert n.tolist() == [1, 3, 40]


@pytest.mark.parametrize("name", ["lstm", "orthogonal"])
def test_orbit_snapshots_have_the_documented_shape_and_repeat_from_the_seed(name):
    model = build_model({"name": name, "N": 5}, 1, 1, [7, 8])
    rec = OrbitRecorder(ORBIT, _sine(), [7, 8], model.state_dim, epochs=10)
    snap = rec.snapshot(model, 0)
    assert snap["outputs"].shape == (2, 3, 2, 20)  # [R, W, I, steps - burn_in]
    assert snap["lambda_1"].shape == (2, 3, 2)
    assert torch.isfinite(snap["outputs"]).all() and torch.isfinite(snap["lambda_1"]).all()
    again = OrbitRecorder(ORBIT, _sine(), [7, 8], model.state_dim, epochs=10).snapshot(model, 0)
    assert torch.equal(snap["outputs"], again["outputs"])
    assert torch.equal(snap["lambda_1"], again["lambda_1"])
    other = OrbitRecorder(ORBIT, _sine(), [9, 8], model.state_dim, epochs=10)
    assert not torch.equal(other.h0[0], rec.h0[0]) and torch.equal(other.h0[1], rec.h0[1])
    assert rec.h0.std().item() == pytest.approx(100.0, rel=0.3)  # N(0, 100²) initial states
    assert [e for e in range(11) if rec.due(e)] == [0, 5, 10]


def test_orbit_files_hold_every_snapshot(tmp_path):
    model = build_model({"name": "lstm", "N": 3}, 1, 1, [0])
    rec = OrbitRecorder(ORBIT, _sine(), [0], model.state_dim, epochs=10)
    snaps = [rec.snapshot(model, e) for e in (0, 5, 10)]
    rec.write(tmp_path, snaps)
    data = torch.load(tmp_path / "orbits.pt", weights_only=True)
    assert data["outputs"].shape == (3, 1, 3, 2, 20) and data["epochs"].tolist() == [0, 5, 10]
    rows = (tmp_path / "orbits.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 3 * 2


def _torch_lstm_loss(W: torch.Tensor, steps: int, burn_in: int, ref: torch.Tensor) -> float:
    """The chaotic LSTM's loss from PyTorch's own LSTM (an independent implementation)."""
    lstm = torch.nn.LSTM(1, 2, bias=False).double()
    with torch.no_grad():
        lstm.weight_hh_l0.copy_(W)
        lstm.weight_ih_l0.zero_()
    h0 = torch.full((1, 1, 2), 0.5, dtype=torch.float64)
    with torch.no_grad():
        out, _ = lstm(torch.zeros(steps, 1, 1, dtype=torch.float64), (h0, h0.clone()))
    return float(((out[burn_in:] - ref) ** 2).mean())


def test_chaotic_path_loss_equals_the_loss_of_the_lstm_built_from_theta_s(float64):
    """Short trajectories: on the chaotic side rounding differences between two LSTM codes grow
    by e^(λ1 t), so the identity is checked where they are still at the 1e-12 level."""
    net = ls.chaotic_lstm(dtype=torch.float64)
    x = torch.zeros(40, 1, 1)
    with torch.no_grad():
        ref_states = net(x, net.initial_state(1))[20:, :, :, :2]  # s = 1
    theta = ls.parameters_of(net, ls.CHAOTIC_PARAMS)
    zero = {k: torch.zeros_like(v) for k, v in theta.items()}
    s = torch.tensor([0.6, 0.9, 1.0, 1.7])
    res = ls.evaluate_points(
        net, ls.path_points(zero, theta, s), ls.state_mse(ref_states, 20, 2), x, 20, chunk=3
    )
    ref = ref_states[:, 0, 0].unsqueeze(1)  # [T_keep, 1, 2]
    W = torch.tensor(ls.CHAOTIC_W, dtype=torch.float64)
    for i, si in enumerate(s.tolist()):
        direct = _torch_lstm_loss(si * W, 40, 20, ref)
        assert res["loss"][i].item() == pytest.approx(direct, rel=1e-9, abs=1e-12)
    assert res["loss"][2].item() == 0.0  # s = 1 is the reference itself
    assert res["outputs"].shape == (4, 20)
    assert res["loss"][0] > 1e-3 and res["loss"][3] > 1e-3  # other s: other trajectories


def test_trained_path_loss_equals_the_loss_of_a_model_built_from_theta_s(float64):
    task = _sine(25)
    a = build_model({"name": "lstm", "N": 4}, 1, 1, [0], dtype=torch.float64)
    b = build_model({"name": "lstm", "N": 4}, 1, 1, [1], dtype=torch.float64)
    ta, tb = ls.parameters_of(a), ls.parameters_of(b)
    omega = torch.linspace(task.omega_min, task.omega_max, 3).reshape(1, -1)
    xs, ys = task.sequences(omega, dtype=torch.float64)
    loss = ls.task_loss(task, xs[:, 0], ys[:, 0])
    x = torch.full((30, 1, 1), 0.3)
    s = torch.tensor([-0.2, 0.35, 1.4])
    res = ls.evaluate_points(a, ls.path_points(ta, tb, s), loss, x, 10, chunk=2)
    for i, si in enumerate(s.tolist()):
        direct = build_model({"name": "lstm", "N": 4}, 1, 1, [0], dtype=torch.float64)
        with torch.no_grad():
            for k, p in direct.named_parameters():
                p.copy_(ta[k] + si * (tb[k] - ta[k]))
        expected = task.loss(direct.predict(xs), ys).item()  # PyTorch's LSTM kernel
        assert res["loss"][i].item() == pytest.approx(expected, rel=1e-10)


def test_landscape_points_do_not_depend_on_their_chunk():
    """A point's loss, outputs and λ1 alone equal those inside any chunk, bit for bit."""
    net = ls.chaotic_lstm(dtype=torch.float32)
    x = torch.zeros(80, 1, 1)
    ref = net(x, net.initial_state(1))[40:, :, :, :2]
    theta = ls.parameters_of(net, ls.CHAOTIC_PARAMS)
    d = ls.random_direction(theta, 3)
    pts = ls.grid_points({k: 0 * v for k, v in theta.items()}, theta, d,
                         torch.linspace(0.5, 2, 7), torch.linspace(-0.5, 0.5, 7))  # fmt: skip
    loss = ls.state_mse(ref, 40, 2)
    whole = ls.evaluate_points(net, pts, loss, x, 40, chunk=7)
    for chunk in (1, 3):
        parts = ls.evaluate_points(net, pts, loss, x, 40, chunk=chunk)
        for k in whole:
            assert torch.equal(whole[k], parts[k]), (chunk, k)


def test_chaotic_lstm_is_chaotic_at_s_1_and_stable_at_small_s():
    net = ls.chaotic_lstm(dtype=torch.float64)
    theta = ls.parameters_of(net, ls.CHAOTIC_PARAMS)
    zero = {k: torch.zeros_like(v) for k, v in theta.items()}
    x = torch.zeros(3000, 1, 1, dtype=torch.float64)
    res = ls.evaluate_points(
        net, ls.path_points(zero, theta, torch.tensor([0.5, 1.0])),
        lambda m, hs: torch.zeros(m.R), x, 500,
    )  # fmt: skip
    lam = res["lambda_1"]
    assert lam[0] < -0.05 and lam[1] > 0.05, lam


def test_path_stats_find_the_crossing_and_the_roughness_on_each_side():
    s = torch.linspace(0, 2, 201, dtype=torch.float64)
    lam = s - 1.005  # crosses 0 between s = 1.00 and 1.01
    loss = torch.where(lam < 0, s, 1 + 0.1 * torch.sin(200 * s))
    st = ls.path_stats(s, loss, lam)
    assert st["crossing"] == pytest.approx(1.005)
    assert st["tv_stable"] == pytest.approx(1.0, rel=1e-9)  # slope 1 where λ1 < 0
    assert st["tv_chaotic"] > 5  # |d/ds 0.1 sin(200 s)| averages 12.7
    assert st["frac_chaotic"] == pytest.approx(100 / 201)  # s = 1.01..2.00
    assert math.isnan(ls.path_stats(s, loss, -1 - s)["crossing"])


def test_landscape_direction_is_seeded_and_scaled_per_tensor(float64):
    like = {"W": torch.zeros(1, 4, 3), "b": torch.zeros(1, 4)}
    norms = {"W": torch.full((1, 4, 3), 2.0), "b": torch.zeros(1, 4)}
    d = ls.random_direction(like, 5, norms=norms)
    assert d["W"].norm().item() == pytest.approx(norms["W"].norm().item())
    assert d["b"].norm().item() == 0.0
    assert torch.equal(d["W"], ls.random_direction(like, 5, norms=norms)["W"])
    assert not torch.equal(d["W"], ls.random_direction(like, 6, norms=norms)["W"])


def test_orthogonal_skew_upper_uses_the_strict_upper_triangle_only():
    a = build_model({"name": "orthogonal", "N": 4, "skew": "upper"}, 1, 1, [3], dtype=torch.float64)
    b = build_model({"name": "orthogonal", "N": 4, "skew": "full"}, 1, 1, [3], dtype=torch.float64)
    assert torch.equal(a.W, b.W)  # the initialisation is upper triangular: the same start
    start = a.W.detach().clone()
    with torch.no_grad():
        a.A[0, 3, 0] += 0.5  # a lower-triangle entry: no effect under skew=upper
        b.A[0, 3, 0] += 0.5
    assert torch.equal(a.W, start) and not torch.allclose(b.W, start)
    W = a.W[0]
    torch.testing.assert_close(W @ W.T, torch.eye(4, dtype=torch.float64))


def test_grid_axis_contains_the_analysed_network_exactly():
    g = ls.grid_axis(0.0, 2.0, 30, (0.0, 1.0))
    assert (g == 1.0).sum() == 1 and (g == 0.0).sum() == 1 and torch.all(g.diff() > 0)
    assert len(ls.grid_axis(-0.5, 0.5, 30, (0.0,))) == 31  # 0 is not on the 30-point grid
    assert len(ls.grid_axis(2.0, 3.0, 5, (0.0, 1.0))) == 5  # outside the range: not added


def test_orbit_lambda_uses_the_long_window_and_classifies_it():
    from flossrun.analyses.orbit import attractor_kinds, open_loop

    model = build_model({"name": "lstm", "N": 3}, 1, 1, [0], dtype=torch.float64)
    h0 = torch.zeros(1, 2, 1, 6, dtype=torch.float64)
    omega = torch.tensor([0.2, 0.3], dtype=torch.float64)
    out, short = open_loop(model, omega, h0, 60, 40, [0])
    out2, long = open_loop(model, omega, h0, 60, 40, [0], lyap_steps=500)
    assert torch.equal(out, out2) and out.shape == (1, 2, 1, 20)
    assert not torch.equal(short, long)  # another window
    fixed, cycle = [0.1] * 5, [0.1, 0.2, 0.3, 0.1, 0.2]
    snap = {"outputs": torch.tensor([[[fixed], [cycle], [cycle]]]),  # [R=1, W=3, I=1, 5]
            "lambda_1": torch.tensor([[[-0.3], [-0.001], [-0.2]]])}  # fmt: skip
    assert attractor_kinds(snap, ORBIT) == ["limit_cycle"]
    snap["outputs"] = torch.tensor([[[fixed], [fixed], [cycle]]])
    assert attractor_kinds(snap, ORBIT) == ["fixed_point"]
    snap["lambda_1"] = torch.tensor([[[0.2], [0.2], [0.2]]])
    snap["outputs"] = torch.tensor([[[cycle], [cycle], [fixed]]])
    assert attractor_kinds(snap, ORBIT) == ["other"]
