"""Singular values of long matrix products without a rounding floor (flossrun.product_svd) and
the long-term Jacobian built on them (float64)."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

from flossrun.diagnostics import condition_number, long_term_jacobian
from flossrun.models import VanillaRNN
from flossrun.product_svd import graded_log_singular_values, scaled_product


class RotatedDiagonals:
    """Linear maps ``h ↦ J_t h`` with ``J_t = O_t diag(a_t) O_{t−1}^T`` (``O_t`` random orthogonal):
    the product ``J_τ ⋯ J_1 = O_τ diag(∏ a_t) O_0^T`` has the exact singular values ``∏_t a_t``.
    The input ``x [..., 1]`` carries the step index ``t − 1``."""

    def __init__(self, D: int, T: int, spread: float, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.O = [torch.linalg.qr(torch.randn(D, D, generator=gen))[0] for _ in range(T + 1)]
        rates = torch.linspace(spread / 2, -spread / 2, D)  # nats per step, then jittered
        self.log_a = rates + 0.5 * torch.randn(T, D, generator=gen)  # [T, D], order varies by step
        self.J = [self.O[t + 1] @ torch.diag(self.log_a[t].exp()) @ self.O[t].T for t in range(T)]

    def exact_log_sv(self, tau: int) -> torch.Tensor:
        return self.log_a[:tau].sum(0).sort(descending=True).values

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return h @ self.J[int(x.flatten()[0])].T

    def tangent(self, h: torch.Tensor, x: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        return self.J[int(x.flatten()[0])] @ Q


def test_singular_values_spanning_over_100_decades_are_recovered(float64):
    D, T = 8, 400
    maps = RotatedDiagonals(D, T, spread=1.0, seed=0)
    x = torch.arange(T, dtype=torch.float64)[:, None, None]  # [T, 1, 1]: the step index
    lags = [1, 10, 100, 400]
    res = long_term_jacobian(maps, torch.zeros(1, D), x, lags)
    naive = torch.eye(D)
    for i, tau in enumerate(lags):
        exact = maps.exact_log_sv(tau)
        got = res.log_sv[i, 0]
        err = (got - exact).abs().max().item()
        assert err <= 0.01 * exact.abs().max().item()  # 1 % in log, the bar
        assert err <= 1e-8 * max(1.0, exact.abs().max().item())  # what the method actually gives
        assert res.log_sv_error[i, 0] <= 1e-6
        kappa = (exact[0] - exact[-1]).item() / math.log(10)
        torch.testing.assert_close(condition_number(got), torch.tensor(kappa), rtol=1e-9, atol=0)
    assert (maps.exact_log_sv(T)[0] - maps.exact_log_sv(T)[-1]) / math.log(10) > 150  # decades
    for t in range(T):
        naive = maps.J[t] @ naive
    naive_log_sv = torch.linalg.svdvals(naive).log()  # the multiplied-out product: a floor
    assert (naive_log_sv[-1] - maps.exact_log_sv(T)[-1]).abs() > 100


def test_graded_values_equal_plain_svd_where_the_spread_is_small(float64):
    gen = torch.Generator().manual_seed(1)
    A = torch.randn(5, 7, 7, generator=gen).triu()  # a batch of triangular matrices
    A = A * torch.linspace(0, -6, 7).exp()[:, None]  # graded rows, spread ~1e-3 (plain SVD exact)
    ell, U = scaled_product(A, torch.zeros(5, 7), torch.eye(7).expand(5, 7, 7))
    log_sv, error = graded_log_singular_values(ell, U)
    expected = torch.linalg.svdvals(A).log()
    torch.testing.assert_close(log_sv, expected, rtol=0, atol=1e-10)
    assert (error < 1e-11).all()


def test_error_bound_covers_an_unconverged_iteration(float64):
    gen = torch.Generator().manual_seed(2)
    A = torch.randn(6, 6, generator=gen).triu()
    ell, U = scaled_product(A, torch.zeros(6), torch.eye(6))
    expected = torch.linalg.svdvals(A).log()
    for iterations in (0, 1, 3):
        log_sv, error = graded_log_singular_values(ell, U, max_iter=iterations)
        actual = (log_sv - expected).abs().max()
        assert actual <= error + 1e-12
    assert actual > 1e-6  # still far from converged: the bound did some work


def test_long_lag_rnn_singular_values_equal_a_300_digit_reference(float64, step_jacobian):
    N, T = 5, 150
    model = VanillaRNN(N, 1, 1, seeds=[3], g=2.0, dtype=torch.float64)
    x = torch.randn(T, 1, 1, 1, generator=torch.Generator().manual_seed(0))
    h = model.initial_state(1).detach()
    res = long_term_jacobian(model, h, x, [T])
    mpmath.mp.dps = 300
    P = mpmath.eye(N)
    for t in range(T):
        J = step_jacobian(model.step, h, x[t])[0, 0]  # [N, N]
        P = mpmath.matrix(J.tolist()) * P
        h = model.step(h, x[t]).detach()
    sv = mpmath.svd_r(P, compute_uv=False)
    exact = torch.tensor(sorted((float(mpmath.log(s)) for s in sv), reverse=True))
    assert exact[0] - exact[-1] > 2 * 37  # far past the float64 floor of a plain SVD
    torch.testing.assert_close(res.log_sv[0, 0, 0], exact, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("diagonal", [(2.0, 0.5, 0.0), (2.0, 0.0, 0.5)])
def test_exact_zero_singular_value_is_minus_inf_not_nan(dtype, diagonal, linear_map):
    A = torch.diag(torch.tensor(diagonal, dtype=dtype))
    h0, x = torch.zeros(1, 3, dtype=dtype), torch.zeros(3, 1, 3, dtype=dtype)
    res = long_term_jacobian(linear_map(A), h0, x, [1, 3])
    assert torch.isneginf(res.log_sv[:, 0, 2]).all()
    expected = torch.tensor([3 * math.log(2.0), -3 * math.log(2.0)], dtype=torch.float64)
    torch.testing.assert_close(res.log_sv[1, 0, :2], expected)
