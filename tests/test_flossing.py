"""Gradient flossing (docs/design.md §5, claim 1): the loss, and that flossing moves λ_1 to a
target."""

from __future__ import annotations

import pytest
import torch

from flossrun import seeding
from flossrun.flossing import floss_exponents, flossing_loss
from flossrun.lyapunov import lyapunov_spectrum
from flossrun.models import VanillaRNN
from flossrun.tasks import make_task


def _exponents(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("target", [0.0, -0.5, 2])
def test_flossing_loss_with_scalar_target_is_mean_squared_distance(target):
    lam = _exponents((3, 4, 5))  # [R, B, k]
    expected = [
        sum((lam[r, b, i].item() - target) ** 2 for b in range(4) for i in range(5)) / 20
        for r in range(3)
    ]
    torch.testing.assert_close(flossing_loss(lam, target), torch.tensor(expected, dtype=lam.dtype))


def test_flossing_loss_with_per_exponent_targets():
    lam = _exponents((2, 3, 4))
    target = [0.0, -0.25, -1.0, 0.5]
    expected = [
        sum((lam[r, b, i].item() - target[i]) ** 2 for b in range(3) for i in range(4)) / 12
        for r in range(2)
    ]
    torch.testing.assert_close(flossing_loss(lam, target), torch.tensor(expected, dtype=lam.dtype))


def test_flossing_loss_of_a_single_spectrum_is_a_scalar():
    lam = torch.tensor([0.3, -0.1, -0.7], dtype=torch.float64)
    loss = flossing_loss(lam, [0.0, 0.0, -1.0])
    assert loss.dim() == 0
    assert loss.item() == pytest.approx((0.09 + 0.01 + 0.09) / 3, rel=1e-12)


@pytest.mark.parametrize("target", [[0.0, 0.0], [0.0] * 4, []])
def test_flossing_loss_rejects_target_of_wrong_length(target):
    with pytest.raises(ValueError, match=r"^target must"):
        flossing_loss(_exponents((2, 1, 3)), target)


def test_floss_exponents_match_engine_and_leave_h0_out_of_the_graph(float64):
    model = VanillaRNN(8, 1, 1, seeds=[0, 1], dtype=torch.float64)
    task = make_task("delayed_xor", 6, T=20)
    x, _ = task.sample(seeding.generators(model.seeds, "floss"), 2, dtype=torch.float64)
    lam = floss_exponents(model, x, 3, transient=4, seed=model.seeds)
    ref = lyapunov_spectrum(model, model.initial_state(2), x, 3, 4, seed=model.seeds)
    torch.testing.assert_close(lam, ref.exponents)
    flossing_loss(lam).sum().backward()
    assert model.h0.grad is None and model.w_out.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.floss_parameters())


# --- claim 1: flossing drives λ_1 to a target within ~100 steps -----------------------------
TARGETS = (-1.0, -0.5, 0.0)
N_SEEDS, FLOSS_STEPS = 10, 100


def _lambda1(model: VanillaRNN, batch: int = 8) -> torch.Tensor:
    """λ_1 per realization on fresh inputs, T = 300 with a 50-step transient (nats/step)."""
    task = make_task("delayed_xor", 10, T=300)
    x, _ = task.sample(seeding.generators(model.seeds, "measure"), batch, dtype=torch.float64)
    with torch.no_grad():
        res = lyapunov_spectrum(
            model, model.initial_state(batch), x, 1, transient=50, seed=model.seeds
        )
    return res.exponents[..., 0].mean(-1)  # [R]


def test_flossing_drives_lambda1_to_target_for_most_seeds():
    """N = 32, g ~ U(0, 1) per realization, k = 1, batch 1, 55 steps, transient 16, Adam 1e-3.

    The ten seeds for each target run as one ensemble (seeds repeated once per target); the
    summed per-realization loss keeps every realization's Adam update independent.
    """
    seeds = list(range(N_SEEDS)) * len(TARGETS)  # realization r floss to TARGETS[r // 10]
    model = VanillaRNN(32, 1, 1, seeds=seeds, g=[0.0, 1.0], dtype=torch.float64)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    target = torch.tensor(TARGETS, dtype=torch.float64).repeat_interleave(N_SEEDS)  # [R]
    before = _lambda1(model)
    task = make_task("delayed_xor", 10, T=55)
    gens = seeding.generators(model.seeds, "floss")
    opt = torch.optim.Adam(model.floss_parameters(), lr=1e-3, betas=(0.9, 0.999))
    for _ in range(FLOSS_STEPS):
        x, _ = task.sample(gens, 1, dtype=torch.float64)  # fresh inputs, [55, R, 1, 1]
        lam = floss_exponents(model, x, 1, transient=16, seed=model.seeds)  # [R, 1, 1]
        groups = lam.split(N_SEEDS)
        loss = sum(flossing_loss(g, t).sum() for g, t in zip(groups, TARGETS, strict=True))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _lambda1(model)
    hit = ((after - target).abs() < 0.1).reshape(len(TARGETS), N_SEEDS)
    fractions = hit.double().mean(1).tolist()
    for t, f, b, a in zip(TARGETS, fractions, before.split(10), after.split(10), strict=True):
        print(f"target {t:+.1f}: fraction within 0.1 = {f:.1f}")
        print(f"  λ_1 before {b.numpy().round(3)}\n  λ_1 after  {a.numpy().round(3)}")
    assert (before - target).abs().gt(0.1).sum() >= 15  # most did not start at the target
    for name in ("w_out", "b_out", "h0"):  # flossing touches W, V, b only
        assert torch.equal(getattr(model, name).detach(), frozen[name])
    assert all(f > 0.5 for f in fractions), fractions  # "most of 10 seeds"
