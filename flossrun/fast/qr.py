"""Cholesky QR with a Householder fallback and the analytic thin-QR backward.

For a tall ``A [..., D, k]`` (D ≥ k): ``G = AᵀA`` in float64, ``G = RᵀR`` (Cholesky, positive
diagonal), ``Q = A R⁻¹``. The Gram matrix squares the condition number κ of A, so it is always
formed and factorised in float64; the triangular solve then picks its precision from κ (estimated
by ``max_i R_ii / min_i R_ii``, a lower bound):

- float32 ``A`` with ``κ ≤ F32_SOLVE_COND``: solve in float32 (orthogonality ``≈ ε₃₂κ``, the same
  order as LAPACK Householder in float32);
- ``κ ≤ SINGLE_PASS_COND``: solve in float64 (orthogonality ``≈ ε₆₄κ² ≪ ε₃₂``);
- otherwise, and always for float64 ``A``: a second pass (CholQR2: ``Q₁ = A R₁⁻¹``,
  ``Q R₂ = Q₁``, ``R = R₂R₁``), orthogonal to working precision for ``κ ≲ ε₆₄^{-1/2}``
  (Yamamoto et al., 2015);
- a matrix whose Cholesky fails (``cholesky_ex`` info > 0) or with ``κ ≥ FALLBACK_COND`` is
  factorised by LAPACK Householder instead (signs fixed so that ``diag R > 0``).

Backward (Q̄, R̄ given; here R̄ = diag(r̄) because only ``diag R`` is returned):

    Ā = [Q̄ + Q copyltu(M)] R⁻ᵀ,   M = R R̄ᵀ − Q̄ᵀ Q,   copyltu(M) = tril(M) + tril(M, −1)ᵀ

and ``copyltu(R diag(r̄)) = diag(r ⊙ r̄)`` since R is upper triangular, so
``Ā = [Q̄ − Q (copyltu(Q̄ᵀQ) − diag(r ⊙ r̄))] R⁻ᵀ``: two bmm's and one triangular solve.
"""

from __future__ import annotations

import functools

import torch
from torch.autograd.function import once_differentiable

F32_SOLVE_COND = 100.0  # float32 A: solve in float32 while ε₃₂κ ≤ 6e-6
SINGLE_PASS_COND = 4e3  # one pass with a float64 solve while ε₆₄κ² ≤ 4e-9 (≪ ε₃₂ = 6e-8)
FALLBACK_COND = 1e6  # Householder beyond this (CholQR2 needs κ ≪ ε₆₄^{-1/2} ≈ 7e7)


def _gram_cholesky(A64: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``R [n, k, k]`` upper triangular with ``RᵀR = AᵀA`` (float64) and ``ok [n]``."""
    G = torch.matmul(A64.transpose(-2, -1), A64)
    R, info = torch.linalg.cholesky_ex(G, upper=True)
    return R, info == 0


def _right_solve(A: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """``A R⁻¹`` for upper triangular ``R``."""
    return torch.linalg.solve_triangular(R, A, upper=True, left=False)


def _householder_positive(A64: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LAPACK thin QR with the sign convention ``diag R ≥ 0``."""
    Q, R = torch.linalg.qr(A64)
    s = torch.sign(torch.diagonal(R, dim1=-2, dim2=-1))
    s = torch.where(s == 0, torch.ones_like(s), s)
    return Q * s.unsqueeze(-2), R * s.unsqueeze(-1)


def cholesky_qr_factor(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin QR without autograd: ``A [..., D, k]`` -> ``Q [..., D, k]``, ``R [..., k, k]`` (upper
    triangular, positive diagonal) and ``log diag R [..., k]`` (taken in float64), all in the
    dtype of ``A``, with ``A = Q R``."""
    D, k = A.shape[-2:]
    if D < k:
        raise ValueError(f"cholesky_qr needs a tall matrix (D >= k), got D={D}, k={k}")
    lead = A.shape[:-2]
    A = A.detach().reshape(-1, D, k)
    A64 = A.to(torch.float64)
    R64, ok = _gram_cholesky(A64)
    d = torch.diagonal(R64, dim1=-2, dim2=-1)
    lo, hi = torch.aminmax(d, dim=-1)
    cond = torch.where(ok, hi / lo, torch.inf)  # NaN stays NaN
    worst = cond.amax().item()  # one host sync per QR
    single = A.dtype != torch.float64
    if single and worst <= F32_SOLVE_COND:  # the common case in flossing
        R = R64.to(A.dtype)
        Q = _right_solve(A, R)
    elif single and worst <= SINGLE_PASS_COND:
        Q, R = _right_solve(A64, R64).to(A.dtype), R64.to(A.dtype)
    else:
        Q, R64 = _two_pass(A64, R64, cond)
        Q, R = Q.to(A.dtype), R64.to(A.dtype)
    logr = torch.log(torch.diagonal(R64, dim1=-2, dim2=-1)).to(A.dtype)
    return Q.reshape(*lead, D, k), R.reshape(*lead, k, k), logr.reshape(*lead, k)


def _two_pass(A64: torch.Tensor, R: torch.Tensor, cond: torch.Tensor):
    """CholQR2 in float64, with LAPACK Householder for matrices it cannot handle."""
    bad = ~(cond < FALLBACK_COND)  # also NaN and failed Cholesky (inf)
    Q1 = _right_solve(A64, R)
    R2, ok2 = _gram_cholesky(Q1)
    Q, R = _right_solve(Q1, R2), torch.matmul(R2, R)
    bad = bad | ~ok2
    if bad.any():
        idx = bad.nonzero().squeeze(1)
        Qh, Rh = _householder_positive(A64[idx])
        Q, R = Q.index_copy(0, idx, Qh), R.index_copy(0, idx, Rh)
    return Q, R


@functools.lru_cache(maxsize=16)
def _lower_mask(k: int, device: torch.device) -> torch.Tensor:
    return torch.ones(k, k, dtype=torch.bool, device=device).tril()


def qr_backward(
    gQ: torch.Tensor | None, gr: torch.Tensor | None, Q: torch.Tensor, R: torch.Tensor
) -> torch.Tensor:
    """``Ā [..., D, k]`` from ``Q̄ [..., D, k]`` and ``r̄ [..., k]`` (grad of ``diag R``; either
    may be None), given the forward ``Q`` and upper triangular ``R`` (both in Q's dtype)."""
    shape, (D, k) = Q.shape, Q.shape[-2:]
    Q, R = Q.reshape(-1, D, k), R.reshape(-1, k, k)
    if gQ is not None:
        gQ = gQ.reshape(-1, D, k)
        M = torch.bmm(gQ.transpose(1, 2), Q)  # Q̄ᵀQ [n, k, k]
        S = torch.where(_lower_mask(k, Q.device), M, M.transpose(1, 2))  # copyltu(Q̄ᵀQ)
    else:
        S = torch.zeros_like(R)
    if gr is not None:
        S.diagonal(dim1=1, dim2=2).sub_(torch.diagonal(R, dim1=1, dim2=2) * gr.reshape(-1, k))
    Y = torch.bmm(Q, S).neg_() if gQ is None else torch.baddbmm(gQ, Q, S, alpha=-1)
    gA = torch.linalg.solve_triangular(R.transpose(1, 2), Y, upper=False, left=False)
    return gA.reshape(shape)


class _CholeskyQR(torch.autograd.Function):
    @staticmethod
    def forward(ctx, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Q, R, _ = cholesky_qr_factor(A)
        ctx.save_for_backward(Q, R)
        return Q, torch.diagonal(R, dim1=-2, dim2=-1).clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, gQ: torch.Tensor | None, gr: torch.Tensor | None) -> torch.Tensor:
        Q, R = ctx.saved_tensors
        return qr_backward(gQ, gr, Q, R)


def cholesky_qr(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Thin QR ``A = Q R`` by Cholesky QR, differentiable: ``Q [..., D, k]``, ``diag(R) [..., k]``.

    A drop-in for :func:`flossrun.lyapunov.householder_qr` (``diag R`` here is positive; the
    Householder one may carry signs, so compare ``|diag R|`` and ``Q`` up to column signs).
    """
    return _CholeskyQR.apply(A)
