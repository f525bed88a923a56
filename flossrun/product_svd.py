"""Singular values of long products of matrices without a rounding floor (docs/design.md §4).

The product ``P = J_τ ⋯ J_1`` of ``D × D`` step Jacobians has singular values spread over hundreds
of nats at long lags; multiplied out in float64 and handed to an SVD, everything below
``~1e-16 σ_1`` is rounding. Instead the product is kept in QR form,
``J_t Q_{t−1} = Q_t R_t`` and ``P = Q_τ (R_τ ⋯ R_1)``, so ``σ(P) = σ(R_τ ⋯ R_1)``, and the
triangular product is stored *row-scaled*: ``T = diag(e^ℓ) U`` with ``ℓ [..., D]`` in nats and
``U [..., D, D]`` upper triangular with unit rows. Its rows grow at the rates of the Lyapunov
exponents, so every row of ``U`` is accurate relative to its own size however small that is.

Singular values of ``T`` come from the zero-shift QR iteration on the scaled form:
``T^T = U^T diag(e^ℓ) = Q_B (R_B diag(e^ℓ))`` and the next ``T`` is ``R_B diag(e^ℓ)`` (same
singular values, since ``T T^T`` and the next ``T^T T`` are similar). Only the O(1) matrix
``U^T`` is factored; the scales ride along exactly. Coupling between rows of different size shrinks
by their ratio every iteration, so a graded product converges in a few iterations. When
``T = G (I + N)`` with ``G`` diagonal and ``N`` strictly upper triangular, the sorted ``|G_ii|``
bound the singular values (Ostrowski): ``|ln σ_i − ln |G|_(i)| ≤ max(ln σ_max(I+N),
−ln σ_min(I+N))`` — the certified error returned with the values. It covers the last step, not
the float64 rounding of forming ``T``, which is relative to each row (ε per step, ``~τ ε`` in all).
"""

from __future__ import annotations

import torch


def scaled_product(
    A: torch.Tensor, log_scale: torch.Tensor, U: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-scaled form of ``A diag(e^ℓ) U`` for upper-triangular ``A [..., D, D]``.

    ``log_scale [..., D]`` (ℓ, nats) and ``U [..., D, D]`` describe the right factor. Returns
    ``(ℓ', U')`` with ``A diag(e^ℓ) U = diag(e^ℓ') U'`` and unit rows in ``U'`` (a zero row
    gives ``ℓ' = −inf`` and a zero row of ``U'``). Row ``i`` only mixes rows ``k ≥ i``, each
    weighted by ``e^{ℓ_k − c_i}`` with ``c_i = max_{k ≥ i} ℓ_k``, so nothing overflows.
    """
    D = log_scale.shape[-1]
    c = log_scale.flip(-1).cummax(-1).values.flip(-1)  # [..., D]: max over k ≥ i
    upper = torch.ones(D, D, dtype=torch.bool, device=A.device).triu()
    expo = torch.where(upper, log_scale[..., None, :] - c[..., :, None], -torch.inf)
    expo = torch.nan_to_num(expo, nan=-torch.inf)  # −inf − (−inf) for a zero row
    V = (A * expo.exp()) @ U  # [..., D, D]
    norm = torch.linalg.vector_norm(V, dim=-1)  # [..., D]
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    return c + norm.log(), V / safe[..., None]


def graded_log_singular_values(
    log_scale: torch.Tensor, U: torch.Tensor, tol: float = 1e-13, max_iter: int = 2000
) -> tuple[torch.Tensor, torch.Tensor]:
    """``ln σ_i`` of ``T = diag(e^ℓ) U`` (upper triangular, row-scaled, float64) and their bound.

    ``log_scale [..., D]``, ``U [..., D, D]``. Runs the scaled zero-shift QR iteration (module
    docstring) until the off-diagonal part ``‖N‖_F`` of every matrix is below ``tol`` or
    ``max_iter`` iterations are done. Returns ``log_sv [..., D]`` (nats, descending, ``−inf``
    for an exact zero) and ``error [...]``: the certified bound on ``|ln σ_i − log_sv_i|`` for
    every ``i`` (nats; ``inf`` when ``T`` is singular or the bound does not apply).
    """
    D = log_scale.shape[-1]
    eye = torch.eye(D, dtype=U.dtype, device=U.device)
    for _ in range(max_iter):
        N = _off_diagonal(U)
        if not bool((torch.linalg.matrix_norm(N) > tol).any()):
            break
        R = torch.linalg.qr(U.mT.contiguous(), mode="r").R
        log_scale, U = scaled_product(R, log_scale, eye.expand_as(U))
    diag = U.diagonal(dim1=-2, dim2=-1).abs()
    log_sv = (log_scale + diag.log()).sort(-1, descending=True).values
    N = _off_diagonal(U)
    finite = N.isfinite().all(-1).all(-1)  # [...]: False where T is singular
    sv = torch.linalg.svdvals(eye + torch.where(finite[..., None, None], N, 0.0))  # [..., D]
    error = torch.maximum(sv[..., 0].log(), -sv[..., -1].log())
    return log_sv, torch.where(finite, error, torch.inf)


def _off_diagonal(U: torch.Tensor) -> torch.Tensor:
    """``N = diag(U)^{-1} U − I``: strictly upper triangular, rows relative to their diagonal
    (a zero row, an exact zero singular value, gives a zero row; a zero diagonal under a nonzero
    row gives non-finite entries)."""
    diag = U.diagonal(dim1=-2, dim2=-1)
    zero_row = (U == 0).all(-1, keepdim=True)
    return torch.where(zero_row, 0.0, U / diag[..., None]).triu(1)
