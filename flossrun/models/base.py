"""The dynamics protocol shared by every model and the Lyapunov engine (docs/design.md §4)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from flossrun.fast import blas


@runtime_checkable
class Dynamics(Protocol):
    """A discrete-time system ``h_t = step(h_{t-1}, x_t)``.

    ``h`` is ``[..., D]`` and ``x`` is ``[..., S]`` (leading dims broadcast). A dynamics may
    also define ``tangent(h, x, Q) -> J Q`` with ``J = ∂step/∂h`` at ``(h, x)`` and
    ``Q [..., D, k]``; without it the Lyapunov engine uses autograd.
    """

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...


def bmv(M: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Apply one matrix per realization to a batch of vectors.

    ``M [R, P, Q]``, ``v [R, *B, Q]`` -> ``[R, *B, P]`` as a single ``bmm``.
    """
    R = M.shape[0]
    flat = v.reshape(R, -1, v.shape[-1])  # [R, n, Q]
    return blas.bmm(flat, M.transpose(1, 2)).reshape(*v.shape[:-1], M.shape[1])


def bmm_columns(M: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """``M @ Q`` for ``M [R, P, D]`` and ``Q [R, *B, D, k]`` -> ``[R, *B, P, k]`` in one ``bmm``."""
    R, D, k = Q.shape[0], Q.shape[-2], Q.shape[-1]
    batch = Q.shape[1:-2]
    cols = Q.movedim(-2, 1).reshape(R, D, -1)  # [R, D, n*k]
    out = blas.bmm(M, cols)  # [R, P, n*k]
    return out.reshape(R, M.shape[1], *batch, k).movedim(1, -2)


def with_realization_axis(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Broadcast an input without the ``R`` axis (``x.dim() == h.dim() - 1``) over realizations."""
    if x.dim() == h.dim() - 1:
        return x.unsqueeze(0).expand(h.shape[0], *x.shape)
    return x
