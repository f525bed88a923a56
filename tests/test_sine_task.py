"""The sine-generator task through the task seam (docs/design.md §10)."""

from __future__ import annotations

import math

import pytest
import torch

from flossrun import seeding
from flossrun.config import ConfigError
from flossrun.tasks import build_task, task_config


def test_test_set_targets_are_sin_omega_t_on_the_documented_grid(float64):
    task = build_task({"name": "sine_generator", "T": 37})
    x, y = task.test_set(seeding.generators([0, 1], "test"), 5, dtype=torch.float64)
    assert x.shape == y.shape == (37, 2, 100, 1)
    grid = [math.pi / 16 + i * (math.pi / 8 - math.pi / 16) / 99 for i in range(100)]
    for r in range(2):
        for i in (0, 1, 50, 99):
            assert torch.all(x[:, r, i, 0] == x[0, r, i, 0])  # constant input
            assert x[0, r, i, 0].item() == pytest.approx(grid[i], rel=1e-15)
            for t in (1, 2, 17, 37):
                assert y[t - 1, r, i, 0].item() == pytest.approx(math.sin(grid[i] * t), abs=1e-14)


def test_training_batches_are_grid_frequencies_drawn_per_realization(float64):
    task = build_task({"name": "sine_generator", "T": 20, "n_omega": 7})
    x, y = task.sample(seeding.generators([3, 4], "train"), 6, dtype=torch.float64)
    grid = task.grid
    for r in range(2):
        for b in range(6):
            w = x[0, r, b, 0]
            assert torch.isclose(grid, w, rtol=0, atol=0).any()
            t = torch.arange(1, 21, dtype=torch.float64)
            torch.testing.assert_close(y[:, r, b, 0], torch.sin(w * t), rtol=0, atol=1e-15)
    alone, _ = task.sample([seeding.generator(4, "train")], 6, dtype=torch.float64)
    assert torch.equal(alone[:, 0], x[:, 1])  # a realization's batch is its own


def test_loss_is_the_mean_squared_error_and_success_its_threshold(float64):
    task = build_task({"name": "sine_generator", "T": 10, "success_mse": 0.2})
    _, y = task.test_set(seeding.generators([0], "test"), 1, dtype=torch.float64)
    z = y + 0.5
    assert task.loss(z, y).item() == pytest.approx(0.25, rel=1e-14)
    assert task.loss(torch.zeros_like(y), y).item() == pytest.approx(y.square().mean().item())
    ok = task.succeeded({"test_loss": torch.tensor([0.1, 0.3])}, None)
    assert ok.tolist() == [True, False]


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"omega_min": -1.0}, "task.omega_min"),
        ({"omega_max": 0.01}, "task.omega_max"),
        ({"n_omega": 0}, "task.n_omega"),
        ({"delay": 4}, "task.delay"),  # a parity key: not an option of the sine task
    ],
)
def test_bad_sine_options_name_the_key(fields, key):
    with pytest.raises(ConfigError, match=rf"^{key}"):
        task_config({"name": "sine_generator", **fields})


def test_h0_zero_stays_exactly_zero_under_adam_while_the_weights_train():
    from flossrun.models import build_model
    from flossrun.tasks import PreparesModel

    task = build_task({"name": "sine_generator", "T": 12, "h0": "zero"})
    assert task.h0 == "zero" and isinstance(task, PreparesModel)
    model = build_model({"name": "lstm", "N": 4}, 1, 1, [0, 1], dtype=torch.float64)
    h0 = model.h0.detach().clone()
    assert h0.abs().max() > 0  # learned default: the burnt-in state
    build_task({"name": "sine_generator", "T": 12}).prepare(model)  # h0=learned: left alone
    assert torch.equal(model.h0, h0)
    task.prepare(model)  # what the run does once the model is built
    W0 = model.W.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        x, y = task.sample(seeding.generators([0, 1], "train"), 3, dtype=torch.float64)
        opt.zero_grad()
        task.loss(model.predict(x), y).sum().backward()
        opt.step()
    assert torch.equal(model.h0, torch.zeros_like(model.h0))
    assert not torch.equal(model.W, W0)


def test_h0_mode_fails_in_one_line():
    with pytest.raises(ConfigError, match=r"^task\.h0=fixed: allowed: learned, zero$"):
        task_config({"name": "sine_generator", "h0": "fixed"})


def test_extrapolation_mse_windows_match_a_direct_computation():
    from flossrun.models import build_model
    from flossrun.tasks.sine_generator import extrapolation_mse

    task = build_task({"name": "sine_generator", "T": 6, "n_omega": 3})
    model = build_model({"name": "gru", "N": 3}, 1, 1, [4, 5], dtype=torch.float64)
    got = extrapolation_mse(model, task)  # [R, 3]
    assert got.shape == (2, 3)
    t = torch.arange(1, 31, dtype=torch.float64)
    x = task.grid.reshape(1, 1, 3, 1).expand(30, 2, 3, 1)
    z = model.predict(x.contiguous()).detach()[..., 0]  # [30, R, 3]
    err = (z - torch.sin(task.grid.reshape(1, 1, 3) * t.reshape(-1, 1, 1))).square()
    for r in range(2):
        want = [err[:6, r].mean(), err[6:12, r].mean(), err[6:30, r].mean()]
        torch.testing.assert_close(got[r], torch.stack(want), rtol=1e-12, atol=1e-15)
