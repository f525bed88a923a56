"""Elementwise pieces shared by the models and the fast kernels.

They are written with ops whose result for an element never depends on where that element sits
in its tensor. On CPU, PyTorch computes some transcendental ops (``cosh``, ``sigmoid``) with
vector code for most of a tensor and scalar code for its last few elements, and the two round
differently: a realization's numbers would then depend on its batch-mates in the ensemble.
``exp``, ``log``, ``tanh`` and the arithmetic operators give the same result wherever the element
sits (``tests/test_determinism.py`` checks every op used here). Reductions have the same problem
and more (their work is split by the whole tensor's shape and the thread count), hence
:func:`pairwise_sum` and the ``realization_*`` reductions built on it.
"""

from __future__ import annotations

import torch


def dtanh(u: torch.Tensor) -> torch.Tensor:
    """φ'(u) = 1/cosh(u)² = 4e/(1 + e)² with e = exp(−2|u|), which stays exact where
    1 − tanh(u)² rounds to 0 (and never overflows: e ≤ 1).

    Without autograd the arithmetic runs in place (fresh temporaries cost several times more on
    large ``[T, R, B, N]`` inputs).
    """
    e = torch.exp(u.abs().mul(-2.0))
    if e.requires_grad:
        return 4.0 * e / (1.0 + e).square()
    return e.mul(4.0).div_((e + 1.0).square_())


def sigmoid(u: torch.Tensor) -> torch.Tensor:
    """σ(u) = 1/(1 + e^{−u}), placement-independent (see above): with e = e^{−|u|}, 1/(1 + e)
    for u ≥ 0 and e/(1 + e) for u < 0, so small values keep their relative precision."""
    pos = u >= 0
    e = torch.exp(torch.where(pos, -u, u))  # (not -|u|: its gradient at u = 0 would be 0)
    return torch.where(pos, 1.0, e) / (e + 1.0)


def softplus(u: torch.Tensor) -> torch.Tensor:
    """log(1 + eᵘ) = max(u, 0) + log(1 + e^{−|u|}), placement-independent (``log1p`` and
    ``softplus`` are not); absolute error ≤ ε/2 where ``1 + e^{−|u|}`` rounds to 1."""
    return u.clamp(min=0) + torch.log(torch.exp(-u.abs()) + 1.0)


def pairwise_sum(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Sum over ``dim`` by pairwise halving with elementwise adds (differentiable).

    Every output element gets the same sequence of roundings, which depends only on the length
    of ``dim``: unlike ``torch.sum``, whose vectorised and multi-threaded reductions split the
    work by the tensor's whole shape and the thread count, so that a realization's sum would
    depend on its batch-mates and on ``threads``. ⌈log₂ n⌉ adds, and pairwise summation is more
    accurate than a running sum.
    """
    x = x.movedim(dim, 0)
    while x.shape[0] > 1:
        half = x.shape[0] // 2
        pairs = x[:half] + x[half : 2 * half]
        x = torch.cat([pairs, x[2 * half :]]) if x.shape[0] % 2 else pairs
    return x[0]


def realization_sum(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Sum of everything but the realization axis ``dim``: ``[..., R, ...]`` -> ``[R]``, the same
    for a realization alone or inside an ensemble, with any number of threads."""
    rows = x.movedim(dim, -1).reshape(-1, x.shape[dim])  # [n, R]
    return pairwise_sum(rows, 0)


def realization_mean(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Mean over everything but the realization axis ``dim`` (see :func:`realization_sum`)."""
    return realization_sum(x, dim) / (x.numel() // x.shape[dim])


def realization_norm(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Euclidean norm of each realization's entries: ``[..., R, ...]`` -> ``[R]``."""
    return realization_sum(x.square(), dim).sqrt()


class _Repeat(torch.autograd.Function):
    """``x.unsqueeze(dim).expand(...)`` whose backward sums with :func:`pairwise_sum`
    (autograd's own backward of a broadcast is ``torch.sum``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
        ctx.dim = dim
        shape = list(x.shape)
        shape.insert(dim, size)
        return x.unsqueeze(dim).expand(shape)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return pairwise_sum(g, ctx.dim), None, None


def repeat_along(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """``x`` repeated ``size`` times along a new axis ``dim`` (a view), differentiable with a
    gradient summed the same way for a realization alone or in an ensemble."""
    return _Repeat.apply(x, dim, size)
