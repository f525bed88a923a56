"""The vanilla tanh RNN ensemble of the paper (docs/design.md §2).

    h_t = W φ(h_{t-1}) + V x_t + b,     z_t = w_out h_t + b_out,     φ = tanh

Every parameter carries a leading realization axis ``R``; realization ``r`` is initialised from
its own seed, so it computes the same numbers alone or inside an ensemble.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from flossrun import seeding
from flossrun.errors import is_number, need
from flossrun.fast import blas
from flossrun.fast.bptt import small_matmul, vanilla_rnn
from flossrun.fast.floss import vanilla_lyapunov
from flossrun.fast.ops import dtanh
from flossrun.models.base import (
    Flags,
    Fused,
    ModelConfig,
    RecurrentEnsemble,
    affine_drive,
    bmm_columns,
    bmv,
    burn_in,
    register,
    with_realization_axis,
)

__all__ = ["VanillaConfig", "VanillaRNN", "draw_gains", "dtanh", "haar_orthogonal"]

INITS = ("gaussian", "orthogonal")


def draw_gains(g: float | Sequence[float], seeds: Sequence[int]) -> list[float]:
    """One gain per realization: ``g`` itself, or a uniform draw from ``[low, high]``."""
    if isinstance(g, int | float):
        if g < 0:
            raise ValueError(f"g must be >= 0, got {g}")
        return [float(g)] * len(seeds)
    if len(g) != 2:
        raise ValueError(f"g must be a number >= 0 or a pair [low, high], got {list(g)}")
    low, high = (float(v) for v in g)
    if not 0 <= low <= high:
        raise ValueError(
            f"g must be a number >= 0 or a pair [low, high] with 0 <= low <= high, got {list(g)}"
        )
    return [
        low
        + (high - low)
        * torch.rand(1, generator=seeding.generator(s, "g"), dtype=torch.float64).item()
        for s in seeds
    ]


def haar_orthogonal(n: int, gen: torch.Generator) -> torch.Tensor:
    """A Haar-distributed orthogonal ``[n, n]`` matrix (QR of a Gaussian with sign fix)."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


@dataclass(frozen=True)
class VanillaConfig(ModelConfig):
    """``model=vanilla``: the paper's tanh RNN."""

    name: str = "vanilla"  # architecture
    N: int = 80  # hidden units
    g: Any = 1.0  # gain: a number, or [low, high] for one uniform draw per realization
    init: str = "gaussian"  # W ~ N(0, g²/N) (gaussian) or g·Haar-orthogonal (orthogonal)
    input_std: float = 1.0  # std of V entries
    readout_std: float = 1.0  # std of w_out entries

    def check(self) -> None:
        super().check()
        g = self.g
        g_ok = (is_number(g) and g >= 0) or (
            isinstance(g, list | tuple)
            and len(g) == 2
            and all(is_number(v) for v in g)
            and 0 <= g[0] <= g[1]
        )
        need(g_ok, "model.g", g, "must be a number >= 0 or [low, high] with 0 <= low <= high")
        need(
            self.init in INITS, "model.init", self.init, f"allowed: {', '.join(INITS)}"
        )  # fmt: skip
        need(self.input_std >= 0, "model.input_std", self.input_std, "must be >= 0")
        need(self.readout_std >= 0, "model.readout_std", self.readout_std, "must be >= 0")


@register("vanilla", VanillaConfig)
class VanillaRNN(RecurrentEnsemble):
    """An ensemble of ``R`` vanilla RNNs with hidden size ``N``, ``S`` inputs, ``O`` outputs.

    Parameters (public): ``W [R, N, N]``, ``V [R, N, S]``, ``b [R, N]``, ``w_out [R, O, N]``,
    ``b_out [R, O]``, ``h0 [R, N]``; options as in :class:`VanillaConfig`. ``fast`` (attribute,
    default True): run :meth:`forward` and :meth:`predict` through the hand-written BPTT kernel
    (:mod:`flossrun.fast.bptt`); False runs the plain autograd loop (the reference the kernel is
    tested against). ``gains``: the gain of each realization.
    """

    one_thread = False  # its kernels (flossrun.fast) manage their own threads

    def __init__(
        self, N: int, S: int, O: int, seeds: Sequence[int], *, fast: bool = True, **options: Any
    ) -> None:
        self.gains: list[float] = []
        super().__init__(N, S, O, seeds, **options)
        self.fast = fast

    def init_one(self, gen: torch.Generator, seed: int) -> dict[str, torch.Tensor]:
        """Float64 CPU draws for one realization, so every device and dtype starts equal:
        ``W``, ``V``, ``b``, ``w_out`` in that order, then ``h0`` (a Gaussian draw run through
        ``H0_BURN_IN`` input-free steps, with ``W`` as :meth:`restrict_W` leaves it)."""
        c, N, S, O = self.cfg, self.N, self.S, self.O
        gain = draw_gains(c.g, [seed])[0]
        self.gains.append(gain)
        f64 = torch.float64
        if c.init == "orthogonal":
            W = gain * haar_orthogonal(N, gen)
        else:
            W = torch.randn(N, N, generator=gen, dtype=f64) * (gain / N**0.5)
        W = self.restrict_W(W)
        V = torch.randn(N, S, generator=gen, dtype=f64) * c.input_std
        b = torch.rand(N, generator=gen, dtype=f64) * 0.1
        w_out = torch.randn(O, N, generator=gen, dtype=f64) * c.readout_std
        b_out = torch.full((O,), 0.001, dtype=f64)
        h = burn_in(lambda h: W @ torch.tanh(h) + b, torch.randn(N, generator=gen, dtype=f64))
        return {"W": W, "V": V, "b": b, "w_out": w_out, "b_out": b_out, "h0": h}

    def restrict_W(self, W: torch.Tensor) -> torch.Tensor:
        """``W [..., N, N]`` as the model's constraint leaves it (unconstrained: itself)."""
        return W

    # --- protocol -------------------------------------------------------------------------
    def floss_parameters(self) -> list[nn.Parameter]:
        """The parameters flossing updates: ``W, V, b``."""
        return [self.W, self.V, self.b]

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One step ``W φ(h) + V x + b``; ``h [R, *B, N]``, ``x [R, *B, S]`` or ``[*B, S]``."""
        x = with_realization_axis(x, h)
        bias = self.b.reshape(self.R, *([1] * (h.dim() - 2)), self.N)
        return bmv(self.W, torch.tanh(h)) + bmv(self.V, x) + bias

    def tangent(self, h: torch.Tensor, x: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        """``D Q = W (φ'(h) ⊙ Q)`` at the pre-step state; ``Q [R, *B, N, k]`` -> same shape."""
        return bmm_columns(self.W, dtanh(h).unsqueeze(-1) * Q)

    def lyapunov_fused(self, h0: Tensor, u: Tensor, Q0: Tensor, qr_at: Flags, keep: Flags) -> Fused:
        """The whole Benettin pass with Cholesky QR and a hand-written adjoint.

        Called by :func:`flossrun.lyapunov.lyapunov_spectrum` with ``orthonormalize="cholesky"``;
        ``h0 [R, B, N]``, inputs ``u [T, R, B, S]`` or ``[T, B, S]``, frame ``Q0 [R, B, N, k]``.
        Returns ``(block_logs [n_kept, R, B, k], h_T [R, B, N])``, or None where it does not
        apply (other state shapes, or a subclass with its own ``step``/``tangent``).
        """
        own = type(self).step is VanillaRNN.step and type(self).tangent is VanillaRNN.tangent
        if not own or h0.dim() != 3 or u.dim() not in (3, 4):
            return None
        return vanilla_lyapunov(self.W, self.drive(u), h0, Q0, qr_at, keep)

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Logits ``z = w_out h + b_out``: ``[R, *B, N]`` -> ``[R, *B, O]``."""
        bias = self.b_out.reshape(self.R, *([1] * (h.dim() - 2)), self.O)
        return bmv(self.w_out, h) + bias

    def logits(self, hs: torch.Tensor) -> torch.Tensor:
        """Logits of a whole sequence: ``[T, R, *B, N]`` -> ``[T, R, *B, O]``.

        One batched product over time and realizations (:func:`flossrun.fast.bptt.small_matmul`).
        """
        T, R = hs.shape[:2]
        rows = hs.reshape(T, R, -1, self.N)  # [T, R, n, N]
        z = small_matmul(rows, self.w_out.transpose(1, 2), self.b_out)
        return z.reshape(*hs.shape[:-1], self.O)

    def drive(self, x: torch.Tensor) -> torch.Tensor:
        """Input drive ``V x_t + b`` for a whole sequence: ``[T, R, B, S]`` (or ``[T, B, S]``)
        -> ``[T, R, B, N]`` (:func:`flossrun.models.base.affine_drive`)."""
        return affine_drive(x, self.V, self.b)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states ``h_1..h_T`` for inputs ``x [T, R, B, S]`` (or ``[T, B, S]``).

        Starts from ``h`` ``[R, B, N]`` (default: ``h0``); returns ``[T, R, B, N]``.
        """
        return self._run(x, h)[0]

    def predict(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[T, R, B, O]`` for inputs ``x`` (as :meth:`forward`): ``logits(forward(x))``,
        in one pass of the fast kernel when ``fast``."""
        return self._run(x, h)[1]

    def _run(self, x: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """States ``[T, R, B, N]`` and logits ``[T, R, B, O]``."""
        x, h = self.sequence_inputs(x, h)  # [T, R, B, S], [R, B, D]
        if self.fast:
            return vanilla_rnn(x, self.W, self.V, self.b, h, self.w_out, self.b_out)
        u = self.drive(x)  # [T, R, B, N]
        WT = self.W.transpose(1, 2)
        hs = []
        for t in range(u.shape[0]):
            h = blas.baddbmm(u[t], torch.tanh(h), WT)
            hs.append(h)
        hs = torch.stack(hs)
        return hs, self.logits(hs)
