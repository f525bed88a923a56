"""Jacobian diagnostics (docs/design.md §4): long-term Jacobian singular values and error-signal
norms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from flossrun import seeding
from flossrun.diagnostics import condition_number, error_signal_norms, long_term_jacobian
from flossrun.models import VanillaRNN
from flossrun.tasks import make_task


def _rnn(N=6, R=2, g=1.5):
    return VanillaRNN(N, 1, 1, seeds=list(range(R)), g=g, dtype=torch.float64)


def _inputs(T, R, B, seed=0):
    return torch.randn(T, R, B, 1, generator=torch.Generator().manual_seed(seed))


def assert_sv_close(log_sv, expected_sv, rtol=1e-9):
    """Singular values agree to ``rtol`` relative to σ_1: those far below σ_1 (here down to
    1e-19 σ_1 at lag 7) carry only rounding error, whichever way they are computed."""
    sv = log_sv.exp()
    scale = expected_sv[..., :1]  # σ_1 per trajectory
    torch.testing.assert_close(sv / scale, expected_sv / scale, rtol=0, atol=rtol)


@pytest.mark.parametrize("transient", [0, 5])
def test_lag_one_singular_values_equal_those_of_explicit_jacobian(
    float64, step_jacobian, transient
):
    model, x = _rnn(), _inputs(12, 2, 3)
    h = model.initial_state(3).detach()
    res = long_term_jacobian(model, h, x, [1], transient=transient)
    with torch.no_grad():
        for t in range(transient):
            h = model.step(h, x[t])
    J = step_jacobian(model.step, h, x[transient])  # [R, B, N, N]
    torch.testing.assert_close(res.log_sv[0].exp(), torch.linalg.svdvals(J), rtol=1e-10, atol=0)


def test_lag_tau_singular_values_equal_those_of_the_jacobian_product(float64, step_jacobian):
    model, x = _rnn(g=1.2), _inputs(20, 2, 2)
    h = model.initial_state(2).detach()
    res = long_term_jacobian(model, h, x, [2, 7], transient=3)
    for t in range(3):
        h = model.step(h, x[t]).detach()
    P = torch.eye(6).expand(2, 2, 6, 6)
    for tau in range(1, 8):
        P = step_jacobian(model.step, h, x[2 + tau]) @ P
        h = model.step(h, x[2 + tau]).detach()
        if tau in (2, 7):
            assert_sv_close(res.log_sv[res.lags.index(tau)], torch.linalg.svdvals(P))


def test_linear_map_lag_singular_values_equal_those_of_matrix_power(
    float64, linear_map, random_orthogonal
):
    A = random_orthogonal(4, 0) @ torch.diag(torch.tensor([1.3, 0.9, 0.6, 0.4])) + 0.1
    lags = [1, 2, 5, 12]
    res = long_term_jacobian(linear_map(A), torch.zeros(2, 4), torch.zeros(12, 2, 4), lags)
    for i, tau in enumerate(lags):
        expected = torch.linalg.svdvals(torch.linalg.matrix_power(A, tau)).log()
        torch.testing.assert_close(res.log_sv[i], expected.expand(2, 4), rtol=1e-10, atol=1e-10)
        kappa = (expected[0] - expected[-1]).item() / math.log(10)
        torch.testing.assert_close(condition_number(res.log_sv[i]), torch.full((2,), kappa))
        kappa2 = (expected[0] - expected[1]).item() / math.log(10)
        torch.testing.assert_close(condition_number(res.log_sv[i], k=2), torch.full((2,), kappa2))


def test_long_lags_do_not_underflow(float64, linear_map, random_orthogonal):
    A = 0.1 * random_orthogonal(3, 1)  # every σ(A^τ) = 0.1^τ, below 1e-308 at τ = 400
    res = long_term_jacobian(linear_map(A), torch.zeros(1, 3), torch.zeros(400, 1, 3), [10, 400])
    expected = torch.tensor([10.0, 400.0])[:, None, None] * math.log(0.1)
    torch.testing.assert_close(res.log_sv, expected.expand(2, 1, 3), rtol=1e-10, atol=0)
    torch.testing.assert_close(condition_number(res.log_sv), torch.zeros(2, 1), atol=1e-9, rtol=0)


def test_autograd_fallback_gives_same_singular_values(float64, step_only):
    model, x = _rnn(), _inputs(10, 2, 2)
    h = model.initial_state(2).detach()
    with_tangent = long_term_jacobian(model, h, x, [1, 4, 8], transient=2)
    fallback = long_term_jacobian(step_only(model), h, x, [1, 4, 8], transient=2)
    assert_sv_close(fallback.log_sv, with_tangent.singular_values, rtol=1e-12)
    torch.testing.assert_close(with_tangent.h, fallback.h)


def test_condition_number_rejects_k_out_of_range():
    for k in (0, 5):
        with pytest.raises(ValueError, match=r"^k must be in \[1, 4\]"):
            condition_number(torch.zeros(3, 4), k=k)


@pytest.mark.parametrize(
    ("lags", "transient", "message"),
    [
        ([], 0, r"^lags must"),
        ([0, 2], 0, r"^lags must be integers in \[1, 10\]"),
        ([3, 11], 0, r"^lags must be integers in \[1, 10\]"),
        ([3, 8], 4, r"^lags must be integers in \[1, 6\]"),
        ([4, 2], 0, r"^lags must be strictly increasing"),
        ([2, 2], 0, r"^lags must be strictly increasing"),
        ([1.5], 0, r"^lags must be integers"),
        ([1], 10, r"^transient must be in \[0, 9\]"),
        ([1], -1, r"^transient must be in \[0, 9\]"),
    ],
)
def test_long_term_jacobian_rejects_bad_lags_and_transient(float64, lags, transient, message):
    model = _rnn()
    with pytest.raises(ValueError, match=message):
        long_term_jacobian(model, model.initial_state(1), _inputs(10, 2, 1), lags, transient)


# --- error-signal norms ------------------------------------------------------------------
def _task_batch(T=12, seeds=(0, 1), B=3, channels=1):
    task = make_task("delayed_xor", 4, T=T, channels=channels)
    x, y = task.sample(seeding.generators(list(seeds), "train"), B, dtype=torch.float64)
    return task, x, y


def test_error_signal_norms_equal_brute_force_gradients(float64):
    model = VanillaRNN(6, 2, 2, seeds=[0, 1], g=1.5, dtype=torch.float64)
    task, x, y = _task_batch(channels=2)  # L_T averages over the 2 output channels
    T, lags = x.shape[0], [0, 3, 7, 11]
    norms = error_signal_norms(model, x, y, task, lags)
    assert norms.shape == (4, 2)
    with torch.no_grad():
        hs = model(x)  # hs[t-1] = h_t
    for i, tau in enumerate(lags):
        h = hs[T - tau - 1].clone().requires_grad_(True)  # restart from a detached h_{T−τ}
        hh = h
        for t in range(T - tau, T):
            hh = model.step(hh, x[t])
        z = model.readout(hh)  # [R, B, 2]
        for r in range(2):
            per_b = []
            for b in range(3):  # one trajectory's loss at a time
                loss = F.binary_cross_entropy_with_logits(z[r, b], y[-1, r, b])
                (g,) = torch.autograd.grad(loss, h, retain_graph=True)
                per_b.append(g[r, b].norm())
                g[r, b] = 0
                assert torch.count_nonzero(g) == 0  # no leak into other trajectories
            expected = torch.stack(per_b).mean()
            torch.testing.assert_close(norms[i, r], expected, rtol=1e-10, atol=1e-14)


def test_error_signal_norms_at_lag_zero_equal_readout_gradient(float64):
    model = _rnn(N=5, R=2)
    task, x, y = _task_batch(B=2)
    with torch.no_grad():
        h = model(x)[-1]  # [R, B, N]
        p = torch.sigmoid(model.readout(h))  # [R, B, O], O = 1
        # ∂BCE/∂h = (σ(z) − y) w_out for one output channel
        g = (p - y[-1])[..., None] * model.w_out[:, None, 0:1, :]
        expected = g.squeeze(-2).norm(dim=-1).mean(-1)
    torch.testing.assert_close(error_signal_norms(model, x, y, task, [0])[0], expected)


def test_error_signal_norms_work_with_frozen_parameters(float64):
    model = _rnn(N=5, R=1)
    model.requires_grad_(False)
    task, x, y = _task_batch(seeds=(0,))
    norms = error_signal_norms(model, x, y, task, [1, 5])
    assert torch.isfinite(norms).all() and (norms > 0).all()


@pytest.mark.parametrize("lags", [[12], [-1], [], [2, 20]])
def test_error_signal_norms_reject_lags_outside_range(float64, lags):
    model = _rnn()
    task, x, y = _task_batch(T=12)
    with pytest.raises(ValueError, match=r"^lags must"):
        error_signal_norms(model, x, y, task, lags)
