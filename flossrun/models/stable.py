"""The stable vanilla RNN: the paper's tanh RNN with ‖W‖₂ ≤ ρ < 1 (docs/design.md §9).

Since tanh' ≤ 1, every step's Jacobian ``W diag(φ'(h))`` has norm ≤ ρ, so the state map is a
contraction and every Lyapunov exponent is ≤ log ρ < 0; flossing can bring λ₁ toward log ρ but
never to λ* = 0. Each realization's ``W`` is drawn as in :class:`VanillaRNN`, scaled down to
spectral norm ρ where it exceeds it (before ``h0``'s burn-in), and scaled down again after every
optimiser step (training and flossing).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flossrun.errors import need
from flossrun.models.base import register
from flossrun.models.vanilla import VanillaConfig, VanillaRNN


@dataclass
class StableConfig(VanillaConfig):
    """``model=stable``: a vanilla RNN kept contracting, D = N."""

    name: str = "stable"  # architecture
    rho: float = 0.9  # bound on the spectral norm ‖W‖₂ of every realization, in (0, 1)

    def check(self) -> None:
        super().check()
        need(0 < self.rho < 1, "model.rho", self.rho, "must be in (0, 1)")


@register("stable", StableConfig)
class StableRNN(VanillaRNN):
    """A :class:`VanillaRNN` ensemble whose ``W`` keeps spectral norm ≤ ``rho``."""

    def restrict_W(self, W: torch.Tensor) -> torch.Tensor:
        """``W [..., N, N]`` scaled by ``min(1, ρ/‖W‖₂)`` per matrix."""
        norm = torch.linalg.matrix_norm(W, ord=2)
        return W * (self.cfg.rho / norm).clamp(max=1.0)[..., None, None]

    def constrain(self) -> None:
        """Scale each realization's ``W`` back to ‖W‖₂ ≤ ρ in place."""
        self.W.detach().copy_(self.restrict_W(self.W.detach()))
