"""The orthogonal RNN of expRNN (Lezcano-Casado & Martínez-Rubio, 2019), docs/design.md §9.

    W = exp(A − Aᵀ)   (torch.linalg.matrix_exp: orthogonal for any A)
    model.skew=upper: W = exp(U − Uᵀ), U = the strict upper triangle of A (the reference
    expRNN's parametrization; the lower triangle then gets no gradient)
    h' = modReLU(W h + V x),   modReLU(u) = sign(u) ⊙ relu(|u| + b),   z = w_out h' + b_out

D = N. The Jacobian is ``diag(1[|u| + b > 0]) W``: an orthogonal matrix with some rows cut, so
every exponent is ≤ 0 (a step that cuts a row sends the last exponent of the full spectrum to
−∞). Training and flossing update ``A`` and ``W`` stays orthogonal to rounding. With the full
``A`` (``model.skew=full``, default) an entry (i, j) of the skew generator moves by the steps of
both A[i, j] and A[j, i]: about twice the effective step of ``skew=upper`` under Adam. The
initialisation below is upper triangular, so both start from the same W.
Initialisation (expRNN's "henaff", per realization from its own seed): ``A`` zero but for
``A[2i, 2i+1] = s_i ~ U(−π, π)``, so ``W`` is a block rotation; ``V ~ N(0, 2/S)`` (Kaiming,
ReLU gain); ``b ~ U(−0.01, 0.01)``; readout ``w_out, b_out ~ U(−1/√N, 1/√N)``; ``h0`` = a
N(0, 1) draw after ``H0_BURN_IN`` input-free steps. Flossing acts on ``A, V, b``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from flossrun.models import base
from flossrun.models.base import ModelConfig, RecurrentEnsemble, register


@dataclass(frozen=True)
class OrthogonalConfig(ModelConfig):
    """``model=orthogonal``: expRNN with modReLU, D = N."""

    name: str = "orthogonal"  # architecture
    N: int = 80  # hidden units
    skew: str = "full"  # skew generator: full (A − Aᵀ) | upper (strict upper triangle, reference)

    def check(self) -> None:
        from flossrun.errors import need

        super().check()
        need(self.skew in SKEWS, "model.skew", self.skew, f"allowed: {', '.join(SKEWS)}")


SKEWS = ("full", "upper")


def modrelu(u: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sign(u) ⊙ relu(|u| + b)``."""
    return torch.sign(u) * torch.relu(u.abs() + b)


def skew_exp(A: torch.Tensor, skew: str = "full") -> torch.Tensor:
    """``exp(A − Aᵀ)`` for ``A [..., N, N]`` (``skew="upper"``: of its strict upper triangle
    only): an orthogonal matrix."""
    if skew == "upper":
        A = A.triu(1)
    return torch.linalg.matrix_exp(A - A.transpose(-1, -2))


class OrthogonalCell:
    """The dynamics with ``W = exp(A − Aᵀ)`` computed once (for a pass of many steps)."""

    def __init__(self, model: OrthogonalRNN) -> None:
        self.model, self.W = model, skew_exp(model.A, model.cfg.skew)

    def pre(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return base.bmv(self.W, h) + base.bmv(self.model.V, base.with_realization_axis(x, h))

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return modrelu(self.pre(h, x), base.per_row(self.model.b, h))

    def tangent(self, h: torch.Tensor, x: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        u = self.pre(h, x)
        mask = (u.abs() + base.per_row(self.model.b, h) > 0).to(Q.dtype)
        return mask.unsqueeze(-1) * base.bmm_columns(self.W, Q)

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        return self.model.readout(h)


@register("orthogonal", OrthogonalConfig)
class OrthogonalRNN(RecurrentEnsemble):
    """``R`` expRNNs. Parameters: ``A [R, N, N]``, ``V [R, N, S]``, ``b [R, N]`` (modReLU),
    ``w_out [R, O, N]``, ``b_out [R, O]``, ``h0 [R, N]``; ``W`` (property) = ``exp(A − Aᵀ)``."""

    def init_one(self, gen: torch.Generator, seed: int) -> dict[str, torch.Tensor]:
        N, S, O = self.N, self.S, self.O
        A = torch.zeros(N, N, dtype=torch.float64)
        idx = torch.arange(0, N - 1, 2)
        A[idx, idx + 1] = base.uniform(gen, len(idx), bound=math.pi)
        V = torch.randn(N, S, generator=gen, dtype=torch.float64) * (2 / S) ** 0.5
        b = base.uniform(gen, N, bound=0.01)
        k = N**-0.5
        w_out, b_out = base.uniform(gen, O, N, bound=k), base.uniform(gen, O, bound=k)
        W = skew_exp(A)
        h0 = base.burn_in(lambda h: modrelu(W @ h, b), torch.randn(N, generator=gen, dtype=A.dtype))
        return {"A": A, "V": V, "b": b, "w_out": w_out, "b_out": b_out, "h0": h0}

    @property
    def W(self) -> torch.Tensor:
        """The orthogonal recurrent matrices ``exp(A − Aᵀ)`` ``[R, N, N]``."""
        return skew_exp(self.A, self.cfg.skew)

    def floss_parameters(self) -> list[nn.Parameter]:
        """``A, V, b`` (recurrent, input and modReLU bias weights)."""
        return [self.A, self.V, self.b]

    def cell(self) -> OrthogonalCell:
        return OrthogonalCell(self)

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One step: ``h [R, *B, N]``, ``x [R, *B, S]`` or ``[*B, S]``."""
        return self.cell().step(h, x)

    def tangent(self, h: torch.Tensor, x: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        """``J Q = 1[|u| + b > 0] ⊙ (W Q)`` for ``Q [R, *B, N, k]``."""
        return self.cell().tangent(h, x, Q)

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Logits ``w_out h + b_out``: ``[R, *B, N]`` -> ``[R, *B, O]``."""
        return base.bmv(self.w_out, h) + base.per_row(self.b_out, h)
