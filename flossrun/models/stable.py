"""The stable vanilla RNN: the paper's tanh RNN with ‖W‖₂ ≤ ρ < 1 (docs/design.md §9).

Since tanh' ≤ 1, every step's Jacobian ``W diag(φ'(h))`` has norm ≤ ρ, so the state map is a
contraction and every Lyapunov exponent is ≤ log ρ < 0; flossing can bring λ₁ toward log ρ but
never to λ* = 0. The constraint is kept by projected gradient descent: each realization's ``W``
is drawn as in :class:`VanillaRNN` and projected onto the spectral-norm ball ``{‖W‖₂ ≤ ρ}``
(before ``h0``'s burn-in), and projected again after every optimiser step (training and
flossing). The projection (nearest point in Frobenius norm) clips the singular values,
``W = U diag(min(σ, ρ)) Vᵀ``: it leaves the singular vectors and every singular value ≤ ρ as they
are, where rescaling the whole matrix by ``ρ/‖W‖₂`` would shrink them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flossrun.errors import need
from flossrun.models.base import register
from flossrun.models.vanilla import VanillaConfig, VanillaRNN


@dataclass(frozen=True)
class StableConfig(VanillaConfig):
    """``model=stable``: a vanilla RNN kept contracting, D = N."""

    name: str = "stable"  # architecture
    lr: float = 3.0e-3  # training Adam lr where train.lr is null (pilot: docs/pilots.md)
    rho: float = 0.9  # bound on the spectral norm ‖W‖₂ of every realization, in (0, 1)

    def check(self) -> None:
        super().check()
        need(0 < self.rho < 1, "model.rho", self.rho, "must be in (0, 1)")


def _without_excess(W64: torch.Tensor, rho: float) -> torch.Tensor | None:
    """``W64 − U diag(max(σ − ρ, 0)) Vᵀ`` for float64 ``W64 [..., P, Q]``; ``None`` where no
    singular value exceeds ``ρ`` (nothing to move)."""
    U, s, Vh = torch.linalg.svd(W64, full_matrices=False)
    excess = (s - rho).clamp(min=0.0)  # [..., min(P, Q)]
    if not bool((excess > 0).any()):
        return None
    return W64 - (U * excess.unsqueeze(-2)) @ Vh


def clip_singular_values(W: torch.Tensor, rho: float) -> torch.Tensor:
    """The projection of ``W [..., P, Q]`` onto ``{‖W‖₂ ≤ ρ}``: ``U diag(min(σ, ρ)) Vᵀ`` per
    matrix, in W's dtype and device.

    Computed as ``W − U diag(max(σ − ρ, 0)) Vᵀ`` from a float64 SVD, so a matrix already inside
    the ball comes back bit for bit and only the directions with σ > ρ move. On CPU one matrix
    at a time, each in a fresh buffer: LAPACK's SVD and the product round differently for a
    matrix at another address on some CPUs (AMD EPYC), and a realization's projection must not
    depend on its place in the ensemble. Elsewhere (GPU, where that guarantee is not claimed)
    one batched SVD.
    """
    if W.device.type != "cpu":
        out = _without_excess(W.detach().to(torch.float64), rho)
        return W if out is None else out.to(W.dtype)
    flat = W.detach().reshape(-1, W.shape[-2], W.shape[-1])  # [n, P, Q]
    clipped: torch.Tensor | None = None
    for i in range(flat.shape[0]):
        Wi = _without_excess(flat[i].to(torch.float64, copy=True), rho)  # fresh, aligned
        if Wi is not None:
            clipped = flat.clone() if clipped is None else clipped
            clipped[i] = Wi.to(W.dtype)
    return W if clipped is None else clipped.reshape(W.shape)


@register("stable", StableConfig)
class StableRNN(VanillaRNN):
    """A :class:`VanillaRNN` ensemble whose ``W`` keeps spectral norm ≤ ``rho``."""

    def restrict_W(self, W: torch.Tensor) -> torch.Tensor:
        """``W [..., N, N]`` projected onto ``‖W‖₂ ≤ ρ`` (:func:`clip_singular_values`)."""
        return clip_singular_values(W, self.cfg.rho)

    def constrain(self) -> None:
        """Project each realization's ``W`` back onto ``‖W‖₂ ≤ ρ`` in place."""
        self.W.detach().copy_(self.restrict_W(self.W.detach()))
