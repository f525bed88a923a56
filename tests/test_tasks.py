"""Delayed-parity tasks (docs/design.md §3): targets, counted steps, seeding, validation."""

from __future__ import annotations

import math

import pytest
import torch

from flossrun import seeding
from flossrun.tasks import DelayedParity, make_task

# Hand-made bit strings (one per channel), 16 steps each.
STRINGS = ["1011001110001011", "0110111000101101", "1110000101101001"]


def parity_by_definition(bits: list[list[int]], delay: int, taps: int) -> list[list[int]]:
    """y_t = x_{t−d/m} ⊕ … ⊕ x_{t−d} for t > d (1-based t), written out step by step.

    ``bits[t-1][s]`` is x_t of channel s; returns the same layout, ``None`` for t ≤ d.
    """
    T, S = len(bits), len(bits[0])
    out = [[None] * S for _ in range(T)]
    for t in range(1, T + 1):
        if t <= delay:
            continue
        for s in range(S):
            acc = 0
            for j in range(1, taps + 1):
                acc ^= bits[t - j * delay // taps - 1][s]
            out[t - 1][s] = acc
    return out


@pytest.mark.parametrize("taps", [1, 2, 4])
@pytest.mark.parametrize("channels", [1, 3])
def test_targets_match_definition_on_hand_made_bits(taps, channels):
    delay = 8
    rows = [[int(STRINGS[s][t]) for s in range(channels)] for t in range(16)]
    task = DelayedParity(delay=delay, taps=taps, channels=channels, T=16)
    bits = torch.tensor(rows, dtype=torch.float32)[:, None, None, :]  # [T, R=1, B=1, S]
    y = task.targets(bits)[:, 0, 0, :]
    expected = parity_by_definition(rows, delay, taps)
    for t in range(delay, 16):  # 0-based indices of t = d+1..T
        assert y[t].tolist() == expected[t], f"t={t + 1}"


@pytest.mark.parametrize(
    ("name", "taps"), [("delayed_copy", None), ("delayed_xor", None), ("temporal_xor", 4)]
)
def test_sampled_targets_match_definition(name, taps):
    task = make_task(name, 8, T=40, channels=3, amplitude=0.5, taps=taps)
    x, y = task.sample(seeding.generators([3, 4], "train"), batch=5)
    assert x.shape == y.shape == (40, 2, 5, 3)
    assert set(x.unique().tolist()) <= {0.0, 0.5}
    bits = (x / 0.5).round().long()
    for r in range(2):
        for b in range(5):
            rows = bits[:, r, b, :].tolist()
            expected = parity_by_definition(rows, 8, task.taps)
            assert y[8:, r, b, :].long().tolist() == expected[8:]


def test_named_tasks_have_their_tap_counts():
    assert make_task("delayed_copy", 6).taps == 1
    assert make_task("delayed_xor", 6).taps == 2
    assert make_task("temporal_xor", 8, taps=8).taps == 8


def test_loss_and_accuracy_ignore_steps_up_to_delay():
    task = DelayedParity(delay=5, taps=1, T=20, channels=2)
    _, y = task.sample(seeding.generators([0, 1], "train"), batch=3)
    z = torch.randn(y.shape, generator=torch.Generator().manual_seed(0))
    loss, acc = task.loss(z, y), task.accuracy(z, y)
    z2, y2 = z.clone(), y.clone()
    z2[:5] = -3 * z2[:5] + 7.0  # t ≤ d
    y2[:5] = 1 - y2[:5]
    torch.testing.assert_close(task.loss(z2, y2), loss, rtol=0, atol=0)
    torch.testing.assert_close(task.accuracy(z2, y2), acc, rtol=0, atol=0)
    z3 = z.clone()
    z3[5] = -z3[5]  # t = d + 1 is counted
    assert (task.loss(z3, y) != loss).all()
    assert (task.accuracy(z3, y) != acc).all()


def test_loss_and_accuracy_equal_direct_formulas_over_counted_steps():
    task = DelayedParity(delay=4, taps=2, T=15, channels=2)
    _, y = task.sample(seeding.generators([7], "train"), batch=4)
    z = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = y.double()
    bce, hits, n = 0.0, 0, 0
    for t in range(4, 15):
        for b in range(4):
            for s in range(2):
                zz, yy = z[t, 0, b, s].item(), y[t, 0, b, s].item()
                p = 1 / (1 + math.exp(-zz))
                bce += -(yy * math.log(p) + (1 - yy) * math.log(1 - p))
                hits += int((zz > 0) == (yy == 1))
                n += 1
    assert task.loss(z, y).item() == pytest.approx(bce / n, rel=1e-12)
    assert task.accuracy(z, y).item() == pytest.approx(hits / n, rel=1e-12)


def test_sampling_is_reproducible_and_per_realization():
    task = make_task("delayed_xor", 6, T=30, channels=2)
    x1, y1 = task.sample(seeding.generators([10, 11, 12], "train"), batch=4)
    x2, y2 = task.sample(seeding.generators([10, 11, 12], "train"), batch=4)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    for r in range(3):
        xr, yr = task.sample([seeding.generator(10 + r, "train")], batch=4)
        assert torch.equal(xr[:, 0], x1[:, r]) and torch.equal(yr[:, 0], y1[:, r])
    assert not torch.equal(x1[:, 0], x1[:, 1])  # different seeds, different bits
    x3, _ = task.sample(seeding.generators([10], "test"), batch=4)
    assert not torch.equal(x3[:, 0], x1[:, 0])  # streams are independent


def test_sampled_bits_are_roughly_fair():
    task = DelayedParity(delay=2, T=500, channels=2)
    x, _ = task.sample(seeding.generators([0], "train"), batch=20)
    assert abs(x.mean().item() - 0.5) < 0.02  # 20000 bits: sd 0.0035


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"delay": 6, "taps": 4}, "delay"),
        ({"delay": 10, "taps": 3}, "delay"),
        ({"delay": 10, "T": 10}, "T"),
        ({"delay": 10, "T": 5}, "T"),
        ({"delay": 0}, "delay"),
        ({"delay": -4}, "delay"),
        ({"delay": 4, "channels": 0}, "channels"),
        ({"delay": 4, "taps": 0}, "taps"),
    ],
)
def test_invalid_task_sizes_raise_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=rf"^{argument} must"):
        DelayedParity(**kwargs)


def test_invalid_batch_raises_naming_batch():
    task = DelayedParity(delay=2, T=10)
    with pytest.raises(ValueError, match="batch"):
        task.sample(seeding.generators([0], "train"), batch=0)


def test_unknown_task_name_raises_naming_task():
    with pytest.raises(ValueError, match=r"^task must be one of"):
        make_task("delayed_sum", 4)


def test_make_task_validates_like_the_task():
    with pytest.raises(ValueError, match="delay"):
        make_task("delayed_xor", 5)  # 5 % 2 != 0
    with pytest.raises(ValueError, match="T"):
        make_task("delayed_copy", 40, T=40)
    with pytest.raises(ValueError, match="taps"):
        make_task("temporal_xor", 8)
