"""The LSTM ensemble, PyTorch's gate equations, state ``(h, c)`` (docs/design.md §9).

    [a_i, a_f, a_g, a_o] = W h + V x + b                 (gate order i, f, g, o as in torch.nn.LSTM)
    c' = σ(a_f) ⊙ c + σ(a_i) ⊙ tanh(a_g),    h' = σ(a_o) ⊙ tanh(c'),    z = w_out h' + b_out

The state the Lyapunov engine sees is ``[h, c]`` (D = 2N), so the exponents cover both.
Initialisation (PyTorch's defaults, per realization from its own seed): ``W``, ``V``, and the two
biases of torch.nn.LSTM ~ U(−1/√N, 1/√N), here folded into one ``b = b_ih + b_hh`` (same
equations, same distribution of the sum); the readout like torch.nn.Linear: ``w_out, b_out ~
U(−1/√N, 1/√N)``; ``h0`` = the state after ``H0_BURN_IN`` input-free steps from zero.
Flossing acts on ``W, V, b``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from flossrun.fast.lstm_floss import lstm_lyapunov
from flossrun.fast.ops import dtanh, sigmoid
from flossrun.models import base
from flossrun.models.base import Flags, Fused, ModelConfig, RecurrentEnsemble, register


def dsigmoid(a: torch.Tensor) -> torch.Tensor:
    """σ'(a) = σ(a) σ(−a), exact where 1 − σ(a) rounds to 0."""
    return sigmoid(a) * sigmoid(-a)


@dataclass(frozen=True)
class LSTMConfig(ModelConfig):
    """``model=lstm``: PyTorch's LSTM, state (h, c), D = 2N."""

    name: str = "lstm"  # architecture
    N: int = 80  # hidden units (the state (h, c) has D = 2N)
    lr: float = 1.0e-2  # training Adam lr where train.lr is null (pilot: docs/pilots.md)
    floss_lr: float = 1.0e-2  # flossing Adam lr where floss.lr is null (pilot: docs/pilots.md)

    @property
    def state_dim(self) -> int:
        return 2 * self.N


@register("lstm", LSTMConfig)
class LSTM(RecurrentEnsemble):
    """``R`` LSTMs. Parameters: ``W [R, 4N, N]`` (torch's ``weight_hh``), ``V [R, 4N, S]``
    (``weight_ih``), ``b [R, 4N]`` (``b_ih + b_hh``), ``w_out [R, O, N]``, ``b_out [R, O]``,
    ``h0 [R, 2N]`` (``[h, c]``)."""

    GATES = 4

    def init_one(self, gen: torch.Generator, seed: int) -> dict[str, torch.Tensor]:
        N, S, O, G = self.N, self.S, self.O, self.GATES
        k = N**-0.5
        W = base.uniform(gen, G * N, N, bound=k)
        V = base.uniform(gen, G * N, S, bound=k)
        b = base.uniform(gen, G * N, bound=k) + base.uniform(gen, G * N, bound=k)
        w_out, b_out = base.uniform(gen, O, N, bound=k), base.uniform(gen, O, bound=k)
        W, V = self.restrict(W, V)
        x0 = torch.zeros(1, 1, S, dtype=torch.float64)
        one = [p.unsqueeze(0) for p in (W, V, b)]
        zero = torch.zeros(1, 1, 2 * N, dtype=torch.float64)
        h0 = base.burn_in(lambda h: self.step_with(*one, h, x0), zero)
        return {"W": W, "V": V, "b": b, "w_out": w_out, "b_out": b_out, "h0": h0[0, 0]}

    def restrict(self, W: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``W, V`` as the model's constraint leaves them (unconstrained: themselves)."""
        return W, V

    def floss_parameters(self) -> list[nn.Parameter]:
        """``W, V, b`` (recurrent, input and bias weights of every gate)."""
        return [self.W, self.V, self.b]

    # --- dynamics -------------------------------------------------------------------------
    def gates(self, W, V, b, h, x):
        """Pre-activations ``[R, *B, 4N]`` of the four gates at state ``h [R, *B, 2N]``."""
        x = base.with_realization_axis(x, h)
        return base.bmv(W, h[..., : self.N]) + base.bmv(V, x) + base.per_row(b, h)

    def step_with(self, W, V, b, h, x):
        a_i, a_f, a_g, a_o = self.gates(W, V, b, h, x).chunk(4, -1)
        c = sigmoid(a_f) * h[..., self.N :] + sigmoid(a_i) * torch.tanh(a_g)
        return torch.cat([sigmoid(a_o) * torch.tanh(c), c], -1)

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One step of ``[h, c]``: ``h [R, *B, 2N]``, ``x [R, *B, S]`` or ``[*B, S]``."""
        return self.step_with(self.W, self.V, self.b, h, x)

    def tangent(self, h: torch.Tensor, x: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        """``J Q`` for ``Q [R, *B, 2N, k]``: the frame's h rows enter every gate through ``W``,
        its c rows only the cell update; ``[δh', δc']`` stacked like the state.

        The gate derivatives are ``[R, *B, N, 1]`` columns, so each big ``[N, k]`` term is one
        fused multiply-add."""
        N = self.N
        a_i, a_f, a_g, a_o = (a.unsqueeze(-1) for a in self.step_gates(h, x))
        c = h[..., N:].unsqueeze(-1)
        s_i, s_f, s_o, t_g = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o), a_g.tanh()
        c_new = s_f * c + s_i * t_g
        # [R, *B, N, k] each
        da_i, da_f, da_g, da_o = base.bmm_columns(self.W, Q[..., :N, :]).chunk(4, -2)
        dc = torch.addcmul(s_f * Q[..., N:, :], c * dsigmoid(a_f), da_f)
        dc = torch.addcmul(dc, t_g * dsigmoid(a_i), da_i)
        dc = torch.addcmul(dc, s_i * dtanh(a_g), da_g)
        dh = torch.addcmul((s_o * dtanh(c_new)) * dc, torch.tanh(c_new) * dsigmoid(a_o), da_o)
        return torch.cat([dh, dc], -2)

    def step_gates(self, h: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``a_i, a_f, a_g, a_o``, each ``[R, *B, N]``."""
        return self.gates(self.W, self.V, self.b, h, x).chunk(4, -1)

    def drive(self, x: torch.Tensor) -> torch.Tensor:
        """Input drive ``V x_t + b`` of every gate for a whole sequence: ``[T, R, B, S]`` (or
        ``[T, B, S]``) -> ``[T, R, B, 4N]`` (:func:`flossrun.models.base.affine_drive`)."""
        return base.affine_drive(x, self.V, self.b)

    def lyapunov_fused(self, h0: Tensor, u: Tensor, Q0: Tensor, qr_at: Flags, keep: Flags) -> Fused:
        """The whole Benettin pass with Cholesky QR and a hand-written adjoint
        (:mod:`flossrun.fast.lstm_floss`).

        Called by :func:`flossrun.lyapunov.lyapunov_spectrum` with ``orthonormalize="cholesky"``;
        ``h0 [R, B, 2N]``, inputs ``u [T, R, B, S]`` or ``[T, B, S]``, frame ``Q0 [R, B, 2N, k]``.
        Returns ``(block_logs [n_kept, R, B, k], [h_T, c_T] [R, B, 2N])``, or None where it does
        not apply (other state shapes, or a subclass with its own equations: ``step``,
        ``step_with``, ``gates``, ``tangent`` or ``step_gates`` overridden).
        """
        own = all(
            getattr(type(self), name) is getattr(LSTM, name)
            for name in ("step", "step_with", "gates", "tangent", "step_gates", "cell")
        )
        if not own or h0.dim() != 3 or u.dim() not in (3, 4):
            return None
        return lstm_lyapunov(self.W, self.drive(u), h0, Q0, qr_at, keep)

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Logits ``w_out h + b_out`` from the h half of the state ``[R, *B, 2N]``."""
        return base.bmv(self.w_out, h[..., : self.N]) + base.per_row(self.b_out, h)

    def predict(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[T, R, B, O]`` for inputs ``x [T, R, B, S]`` (or ``[T, B, S]``) from ``h``
        (default ``h0``): each realization's sequence in one call of PyTorch's own LSTM kernel
        (``torch.lstm``, the same equations; C++ loops forward and backward)."""
        x, h = self.sequence_inputs(x, h)  # [T, R, B, S], [R, B, D]
        N, zero = self.N, torch.zeros_like(self.b[0])
        zs = []
        for r in range(self.R):
            state = (h[r, :, :N].unsqueeze(0), h[r, :, N:].unsqueeze(0))  # [1, B, N] each
            params = (self.V[r], self.W[r], self.b[r], zero)
            hs = torch.lstm(x[:, r], state, params, True, 1, 0.0, False, False, False)[0]
            zs.append(base.sequence_readout(hs, self.w_out[r], self.b_out[r]))  # [T, B, O]
        return torch.stack(zs, 1)
