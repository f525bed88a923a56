"""The GRU ensemble, PyTorch's gate equations (docs/design.md §9).

    r = σ(V_r x + b_r + W_r h),   z = σ(V_z x + b_z + W_z h)
    n = tanh(V_n x + b_n + r ⊙ (W_n h + b_hn)),   h' = (1 − z) ⊙ n + z ⊙ h
    logits = w_out h' + b_out

D = N. Initialisation (PyTorch's defaults, per realization from its own seed): ``W``, ``V`` and
torch.nn.GRU's biases ~ U(−1/√N, 1/√N), where ``b`` folds ``b_ih + b_hh`` for the r and z gates
and is ``b_in`` for n, and ``b_hn`` stays separate (it sits inside ``r ⊙ (·)``); the readout
like torch.nn.Linear, U(−1/√N, 1/√N); ``h0`` = the state after ``H0_BURN_IN`` input-free steps
from zero. Flossing acts on ``W, V, b, b_hn``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from flossrun.fast.ops import dtanh, sigmoid
from flossrun.models import base
from flossrun.models.base import ModelConfig, RecurrentEnsemble, register
from flossrun.models.lstm import dsigmoid


@dataclass(frozen=True)
class GRUConfig(ModelConfig):
    """``model=gru``: PyTorch's GRU, D = N."""

    name: str = "gru"  # architecture
    N: int = 80  # hidden units
    lr: float = 1.0e-2  # training Adam lr where train.lr is null (pilot: docs/pilots.md)
    floss_lr: float = 1.0e-2  # flossing Adam lr where floss.lr is null (pilot: docs/pilots.md)


@register("gru", GRUConfig)
class GRU(RecurrentEnsemble):
    """``R`` GRUs. Parameters: ``W [R, 3N, N]`` (torch's ``weight_hh``), ``V [R, 3N, S]``
    (``weight_ih``), ``b [R, 3N]``, ``b_hn [R, N]``, ``w_out [R, O, N]``, ``b_out [R, O]``,
    ``h0 [R, N]``."""

    def init_one(self, gen: torch.Generator, seed: int) -> dict[str, torch.Tensor]:
        N, S, O = self.N, self.S, self.O
        k = N**-0.5
        W, V = base.uniform(gen, 3 * N, N, bound=k), base.uniform(gen, 3 * N, S, bound=k)
        b_ih, b_hh = base.uniform(gen, 3 * N, bound=k), base.uniform(gen, 3 * N, bound=k)
        b = torch.cat([b_ih[: 2 * N] + b_hh[: 2 * N], b_ih[2 * N :]])
        b_hn = b_hh[2 * N :]
        w_out, b_out = base.uniform(gen, O, N, bound=k), base.uniform(gen, O, bound=k)
        one = [p.unsqueeze(0) for p in (W, V, b, b_hn)]
        x0 = torch.zeros(1, 1, S, dtype=torch.float64)
        zero = torch.zeros(1, 1, N, dtype=torch.float64)
        h0 = base.burn_in(lambda h: self._step(*one, h, x0)[0], zero)
        params = {"W": W, "V": V, "b": b, "b_hn": b_hn, "w_out": w_out, "b_out": b_out}
        return params | {"h0": h0[0, 0]}

    def floss_parameters(self) -> list[nn.Parameter]:
        """``W, V, b, b_hn`` (recurrent, input and bias weights)."""
        return [self.W, self.V, self.b, self.b_hn]

    def _step(self, W, V, b, b_hn, h, x):
        """``(h', (a_r, a_z, a_n, hn, r, z, n))`` with ``hn = W_n h + b_hn``."""
        x = base.with_realization_axis(x, h)
        gi, gh = base.bmv(V, x) + base.per_row(b, h), base.bmv(W, h)
        i_r, i_z, i_n = gi.chunk(3, -1)
        h_r, h_z, h_n = gh.chunk(3, -1)
        a_r, a_z, hn = i_r + h_r, i_z + h_z, h_n + base.per_row(b_hn, h)
        r, z = sigmoid(a_r), sigmoid(a_z)
        a_n = i_n + r * hn
        n = torch.tanh(a_n)
        return n + z * (h - n), (a_r, a_z, a_n, hn, r, z, n)

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One step: ``h [R, *B, N]``, ``x [R, *B, S]`` or ``[*B, S]``."""
        return self._step(self.W, self.V, self.b, self.b_hn, h, x)[0]

    def tangent(self, h: torch.Tensor, x: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        """``J Q`` for ``Q [R, *B, N, k]``: ``δh' = (1−z) δn + z Q + (h−n) δz`` with
        ``δn = tanh'(a_n) (δr ⊙ hn + r ⊙ W_n Q)``."""
        _, parts = self._step(self.W, self.V, self.b, self.b_hn, h, x)
        a_r, a_z, a_n, hn, r, z, n = (p.unsqueeze(-1) for p in parts)
        d_r, d_z, d_n = base.bmm_columns(self.W, Q).chunk(3, -2)  # [R, *B, N, k] each
        dn = dtanh(a_n) * ((dsigmoid(a_r) * hn) * d_r + r * d_n)
        return (1 - z) * dn + z * Q + ((h.unsqueeze(-1) - n) * dsigmoid(a_z)) * d_z

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Logits ``w_out h + b_out``: ``[R, *B, N]`` -> ``[R, *B, O]``."""
        return base.bmv(self.w_out, h) + base.per_row(self.b_out, h)

    def predict(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[T, R, B, O]`` for inputs ``x [T, R, B, S]`` (or ``[T, B, S]``) from ``h``
        (default ``h0``): each realization's sequence in one call of PyTorch's own GRU kernel
        (``torch.gru``, the same equations; C++ loops forward and backward)."""
        x, h = self.sequence_inputs(x, h)  # [T, R, B, S], [R, B, D]
        N, zs = self.N, []
        for r in range(self.R):
            b_hh = torch.cat([torch.zeros_like(self.b[r, : 2 * N]), self.b_hn[r]])
            params = (self.V[r], self.W[r], self.b[r], b_hh)
            hs = torch.gru(x[:, r], h[r][None], params, True, 1, 0.0, False, False, False)[0]
            zs.append(base.sequence_readout(hs, self.w_out[r], self.b_out[r]))  # [T, B, O]
        return torch.stack(zs, 1)
