"""The Lyapunov engine (docs/design.md §4) against exact identities and known values."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from flossrun.lyapunov import autograd_tangent, lyapunov_spectrum, qr_times
from flossrun.models import VanillaRNN

LN_03 = math.log(0.3)


def _rnn(N=8, R=2, g=1.5, seeds=None):
    return VanillaRNN(N, 1, 1, seeds=seeds or list(range(R)), g=g, dtype=torch.float64)


def _inputs(T, R, B, S=1, seed=0):
    return torch.randn(T, R, B, S, generator=torch.Generator().manual_seed(seed))


# With qr_every = 3 the QR sees products of three Jacobians whose φ' reach ~1e-6 at g = 1.5:
# rounding then costs ~1e-8 in the smallest exponent, so that case uses g = 1.
@pytest.mark.parametrize(("qr_every", "g"), [(1, 1.5), (3, 1.0)])
def test_full_spectrum_sum_equals_mean_log_det(float64, qr_every, g):
    N, R, B, T, transient = 8, 2, 3, 60, 10
    model = _rnn(N, R, g=g)
    x = _inputs(T, R, B)
    with torch.no_grad():
        res = lyapunov_spectrum(
            model, model.initial_state(B), x, N, transient=transient, qr_every=qr_every
        )
        h, log_dets = model.initial_state(B), []
        for t in range(T):
            if t >= transient:  # J_t at the pre-step state h_{t-1}, t = transient+1..T
                J = model.W[:, None] * torch.cosh(h).pow(-2)[..., None, :]  # W diag(φ'(h))
                log_dets.append(torch.linalg.slogdet(J).logabsdet)
            h = model.step(h, x[t])
    expected = torch.stack(log_dets).mean(0)  # [R, B]
    torch.testing.assert_close(res.exponents.sum(-1), expected, rtol=0, atol=1e-9)
    assert sum(res.block_steps) == T - transient


def test_constant_linear_map_gives_log_abs_eigenvalues(float64, linear_map, random_orthogonal):
    eig = torch.tensor([1.5, -0.8, 0.5, 0.2])
    P = random_orthogonal(4, 0) + 0.3 * torch.eye(4)  # well-conditioned, not orthogonal
    A = P @ torch.diag(eig) @ torch.linalg.inv(P)
    x = torch.randn(250, 3, 4, generator=torch.Generator().manual_seed(1))
    expected = eig.abs().log().sort(descending=True).values
    with torch.no_grad():
        for k in (4, 2):
            res = lyapunov_spectrum(linear_map(A), torch.zeros(3, 4), x, k, transient=50)
            torch.testing.assert_close(res.exponents, expected[:k].expand(3, k), rtol=0, atol=1e-8)


def test_henon_map_exponents_match_known_values(float64, henon):
    Henon, _ = henon
    B = 16  # per-trajectory sd ≈ 0.006 at T = 4000, so the mean is good to ≈ 0.002
    h0 = torch.tensor([0.1, 0.0]) + 0.05 * torch.randn(
        B, 2, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        res = lyapunov_spectrum(Henon(), h0, torch.zeros(4000, B, 1), 2, transient=100)
    lam1, lam2 = res.exponents.mean(0).tolist()
    assert 0.41 < lam1 < 0.43
    assert -1.64 < lam2 < -1.61
    torch.testing.assert_close(res.exponents.sum(-1), torch.full((B,), LN_03), rtol=0, atol=1e-6)


def test_henon_autograd_fallback_matches_analytic_tangent(float64, henon):
    Henon, HenonNoTangent = henon
    h0 = torch.tensor([[0.1, 0.0], [-0.2, 0.1]])
    x = torch.zeros(150, 2, 1)
    with torch.no_grad():
        fallback = lyapunov_spectrum(HenonNoTangent(), h0, x, 2, transient=20, seed=3)
        analytic = lyapunov_spectrum(Henon(), h0, x, 2, transient=20, seed=3)
    torch.testing.assert_close(fallback.exponents.sum(-1), torch.full((2,), LN_03))
    torch.testing.assert_close(fallback.exponents, analytic.exponents, rtol=1e-10, atol=1e-12)


def test_autograd_tangent_equals_model_tangent(float64, step_only):
    model = _rnn(6, 2)
    h = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 3, 1, generator=torch.Generator().manual_seed(1))
    Q = torch.randn(2, 3, 6, 4, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(
        autograd_tangent(step_only(model), h, x, Q), model.tangent(h, x, Q), rtol=1e-12, atol=0
    )


def test_autograd_fallback_gives_same_exponents_and_gradients(float64, step_only):
    model = _rnn(6, 2)
    x, h0 = _inputs(30, 2, 2), model.initial_state(2).detach()
    grads = []
    for dyn in (model, step_only(model)):
        res = lyapunov_spectrum(dyn, h0, x, 3, transient=5, seed=model.seeds)
        model.zero_grad()
        res.exponents.sum().backward()
        grads.append((res.exponents.detach(), model.W.grad.clone(), model.V.grad.clone()))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


# "cholesky" takes the model's fused Benettin pass (hand-written adjoint); gradcheck also runs
# backward repeatedly on one graph, as torch.autograd.grad(..., retain_graph=True) would.
@pytest.mark.parametrize("orthonormalize", ["householder", "cholesky"])
def test_exponents_gradcheck_wrt_W(float64, orthonormalize):
    model = _rnn(4, 1, g=1.2)
    x, h0 = _inputs(10, 1, 1), model.initial_state(1).detach()
    W0 = model.W.detach().clone()
    del model.W  # replace the parameter by the gradcheck input

    def exponents(W):
        model.W = W
        return lyapunov_spectrum(
            model, h0, x, 2, transient=3, qr_every=2, seed=[0], orthonormalize=orthonormalize
        ).exponents

    assert torch.autograd.gradcheck(exponents, (W0.requires_grad_(True),))


def test_qr_every_1_and_3_agree_when_well_conditioned(float64):
    model = _rnn(8, 2, g=1.0)
    x, h0 = _inputs(80, 2, 2), model.initial_state(2)
    with torch.no_grad():
        one = lyapunov_spectrum(model, h0, x, 4, transient=10, qr_every=1, seed=model.seeds)
        three = lyapunov_spectrum(model, h0, x, 4, transient=10, qr_every=3, seed=model.seeds)
    torch.testing.assert_close(one.exponents, three.exponents, rtol=1e-9, atol=1e-11)
    assert three.block_steps == [3] * 23 + [1]  # steps 11..79 in threes, then 80


SCHEDULES = [
    (T, transient, qr_every)
    for T in (1, 2, 7, 12, 30)
    for transient in (0, 1, 3, 6)
    for qr_every in (1, 2, 3, 5)
    if transient < T
]


@pytest.mark.parametrize(("T", "transient", "qr_every"), SCHEDULES)
def test_qr_schedule_covers_exactly_the_steps_after_transient(T, transient, qr_every):
    times = qr_times(T, transient, qr_every)
    assert times == sorted(set(times)) and 1 <= times[0] and times[-1] == T
    if transient > 0:
        assert transient in times
    edges = [transient] + [t for t in times if t > transient]
    blocks = [b - a for a, b in itertools.pairwise(edges)]
    assert sum(blocks) == T - transient  # exactly steps transient+1..T
    assert all(1 <= n <= qr_every for n in blocks)
    assert all(b - a == qr_every for a, b in itertools.pairwise(times) if b < transient)


def test_block_steps_reported_by_the_engine_cover_the_steps_after_transient(float64):
    model = _rnn(4, 1)
    with torch.no_grad():
        res = lyapunov_spectrum(model, model.initial_state(1), _inputs(23, 1, 1), 2, 7, 4)
    assert res.block_steps == [4, 4, 4, 4]
    assert res.block_logs.shape == (4, 1, 1, 2)
    torch.testing.assert_close(res.exponents, res.block_logs.sum(0) / 16)


def test_ensemble_seeds_give_per_realization_frames(float64):
    model = _rnn(5, 3)
    x, h0 = _inputs(4, 3, 1), model.initial_state(1)
    with torch.no_grad():
        a = lyapunov_spectrum(model, h0, x, 5, transient=0, seed=[1, 2, 3]).block_logs[0]
        b = lyapunov_spectrum(model, h0, x, 5, transient=0, seed=[1, 9, 3]).block_logs[0]
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2]) and not torch.equal(a[1], b[1])


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"k": 7}, "k"),
        ({"k": 0}, "k"),
        ({"transient": 10}, "transient"),
        ({"transient": -1}, "transient"),
        ({"qr_every": 0}, "qr_every"),
        ({"seed": [0, 1]}, "seed"),
    ],
)
def test_invalid_engine_arguments_raise_naming_the_argument(float64, kwargs, argument):
    model = _rnn(6, 1)
    args = {"k": 2, "transient": 0, "qr_every": 1, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=rf"^{argument} must"):
        lyapunov_spectrum(model, model.initial_state(1), _inputs(10, 1, 1), **args)
