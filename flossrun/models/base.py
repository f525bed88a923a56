"""The model seam: the dynamics protocol of the Lyapunov engine and the ensemble base class every
architecture builds on (docs/design.md §4, §9).

A model is an ensemble of ``R`` networks (leading realization axis) with state ``h [R, B, D]``:

    step(h, x) -> h_next              one time step; x [R, B, S] or shared [B, S]
    tangent(h, x, Q) -> J Q           J = ∂step/∂h at (h, x), Q [R, B, D, k] (analytic)
    initial_state(B) -> [R, B, D]     the learned h0 [R, D] repeated over a batch
    readout(h) -> logits [R, B, O]    from the full state
    predict(x) -> logits [T, R, B, O] a whole sequence from h0
    floss_parameters()                what flossing updates (recurrent, input, bias weights)
    constrain()                       called after every optimiser step (training and flossing)

Each architecture is one file in this package that defines a config dataclass (its fields
documented, :meth:`ModelConfig.check` validating them) and registers it with the model class
via :func:`register`; ``configs/model/<name>.yaml`` sets the values (docs/design.md §9).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from flossrun import seeding
from flossrun.fast import blas
from flossrun.fast.ops import repeat_along
from flossrun.registry import Registry

Flags = Sequence[bool]  # one flag per step: a QR is due / its log is kept (lyapunov_fused)
Fused = tuple[torch.Tensor, torch.Tensor] | None  # (block logs, final state), None: not taken

H0_BURN_IN = 100  # input-free steps used to place h0 near the autonomous attractor


@runtime_checkable
class Dynamics(Protocol):
    """A discrete-time system ``h_t = step(h_{t-1}, x_t)``.

    ``h`` is ``[..., D]`` and ``x`` is ``[..., S]`` (leading dims broadcast). A dynamics may
    also define ``tangent(h, x, Q) -> J Q`` with ``J = ∂step/∂h`` at ``(h, x)`` and
    ``Q [..., D, k]`` (without it the Lyapunov engine uses autograd), and ``cell()``, the same
    dynamics with derived weights computed once for a pass of many steps.
    """

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...


def affine_drive(x: torch.Tensor, V: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Input drive ``V x_t + b`` for a whole sequence: ``x [T, R, B, S]`` (or shared
    ``[T, B, S]``), ``V [R, M, S]``, ``b [R, M]`` -> ``[T, R, B, M]``.

    One ``bmm`` of ``[x, 1]`` against ``[V, b]`` over all ``T·B`` rows of each realization, so
    that the gradients of ``V`` and ``b`` are one ``bmm`` too (a broadcast bias would be reduced
    by ``torch.sum``, whose rounding depends on the ensemble's size).
    """
    R, M = V.shape[0], V.shape[1]
    if x.dim() == 3:  # shared input [T, B, S]
        x = x.unsqueeze(1).expand(x.shape[0], R, *x.shape[1:])
    T, _, B, S = x.shape
    rows = torch.cat([x, torch.ones_like(x[..., :1])], -1).transpose(0, 1)  # [R, T, B, S+1]
    Vb = torch.cat([V, b.unsqueeze(-1)], -1)  # [R, M, S+1]
    u = blas.bmm(rows.reshape(R, T * B, S + 1), Vb.transpose(1, 2))  # [R, T·B, M]
    return u.reshape(R, T, B, M).transpose(0, 1)


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


def sequence_readout(hs: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``w hs_t + b`` for one realization's sequence ``hs [T, B, N]`` (``w [O, N]``, ``b [O]``):
    ``[T, B, O]``. The bias is repeated with :func:`flossrun.fast.ops.repeat_along`, so its
    gradient (a sum over T and B) is the same for a realization alone or in an ensemble —
    autograd's own broadcast backward sums a strided slice of the ensemble's gradient with a
    reduction whose rounding depends on the ensemble's size."""
    from flossrun.fast.ops import repeat_along

    bias = repeat_along(repeat_along(b, 0, hs.shape[1]), 0, hs.shape[0])
    return torch.nn.functional.linear(hs, w) + bias


def per_row(v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """A per-realization vector ``v [R, P]`` shaped to broadcast against ``h [R, *B, ·]``."""
    return v.reshape(v.shape[0], *([1] * (h.dim() - 2)), v.shape[-1])


# --- configs and the registry ----------------------------------------------------------------
@dataclass(frozen=True)
class ModelConfig:
    """Fields every architecture has; each model's dataclass adds its own."""

    name: str = "vanilla"  # architecture: a key of flossrun.models.MODELS
    N: int = 80  # hidden units
    lr: float = 1.0e-3  # training Adam learning rate of this architecture, where train.lr is null
    floss_lr: float = 1.0e-3  # flossing Adam learning rate, where floss.lr is null

    @property
    def state_dim(self) -> int:
        """D, the dimension of the state the Lyapunov engine sees (N unless a model says)."""
        return self.N

    def check(self) -> None:
        """Raise :class:`flossrun.config.ConfigError` on the first impossible value."""
        from flossrun.errors import need

        need(self.N >= 1, "model.N", self.N, "must be >= 1")
        need(self.lr > 0, "model.lr", self.lr, "must be > 0")
        need(self.floss_lr > 0, "model.floss_lr", self.floss_lr, "must be > 0")


MODELS: Registry[type[RecurrentEnsemble]] = Registry("model", default="vanilla")


def register(name: str, config: type[ModelConfig]) -> Callable[[type], type]:
    """Class decorator: make ``model=<name>`` build this class from ``config``."""

    def add(cls: type) -> type:
        MODELS.register(name, config)(cls)
        cls.name, cls.config_class = name, config
        return cls

    return add


# --- the ensemble base class ------------------------------------------------------------------
class RecurrentEnsemble(nn.Module):
    """``R`` networks with their own seeds; subclasses define the parameters and the maths.

    A subclass implements :meth:`init_one` (float64 CPU draws of one realization, from its
    ``"init"`` stream), :meth:`step`, :meth:`tangent`, :meth:`readout` and
    :meth:`floss_parameters`, and may override :meth:`constrain`. Every parameter has a leading
    ``R`` axis and ``h0 [R, D]`` is the learned initial state.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    # Its passes are loops of small per-step ops: on CPU, run them on one intra-op thread (an
    # OpenMP team gains little there, and on a busy machine waits at every step for a peer
    # the scheduler has put aside: measured 9.5 ms vs 6 s per LSTM training epoch).
    one_thread: ClassVar[bool] = True

    def __init__(
        self,
        N: int,
        S: int,
        O: int,
        seeds: Sequence[int],
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        **options: Any,
    ) -> None:
        """``N`` hidden units, ``S`` inputs, ``O`` outputs, one seed per realization;
        ``options``: the other fields of the model's config (validated here)."""
        super().__init__()
        for key, value in (("S", S), ("O", O)):
            if value < 1:
                raise ValueError(f"{key} must be >= 1, got {value}")
        if len(seeds) < 1:
            raise ValueError("seeds must name at least one realization")
        cfg = self.config_class(name=self.name, N=N, **options)
        cfg.check()
        self.cfg, self.N, self.S, self.O = cfg, N, S, O
        self.seeds = [int(s) for s in seeds]
        tensors = [self.init_one(seeding.generator(s, "init"), s) for s in self.seeds]
        for key in tensors[0]:
            value = torch.stack([t[key] for t in tensors]).to(device=device, dtype=dtype)
            self.register_parameter(key, nn.Parameter(value))
        with torch.no_grad():
            self.constrain()

    # --- what a subclass provides -----------------------------------------------------------
    def init_one(self, gen: torch.Generator, seed: int) -> dict[str, torch.Tensor]:
        """Float64 CPU tensors of the realization with this seed (no ``R`` axis), ``h0``
        included; ``gen`` is its ``"init"`` stream."""
        raise NotImplementedError

    def floss_parameters(self) -> list[nn.Parameter]:
        """The parameters flossing updates: recurrent, input and bias weights (never the
        readout or ``h0``)."""
        raise NotImplementedError

    def constrain(self) -> None:
        """Restore the model's constraint in place (after every optimiser step); none here."""

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def tangent(self, h: torch.Tensor, x: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Logits ``[R, *B, O]`` from the state ``[R, *B, D]``."""
        raise NotImplementedError

    def cell(self) -> RecurrentEnsemble:
        """The dynamics with derived weights computed once (e.g. a matrix exponential), for a
        pass of many steps: same ``step``/``tangent``/``readout``. The model itself by default."""
        return self

    # --- shared ---------------------------------------------------------------------------
    @property
    def R(self) -> int:
        """Number of realizations."""
        return self.h0.shape[0]

    @property
    def state_dim(self) -> int:
        """D, the dimension of the state (and of the Lyapunov spectrum)."""
        return self.h0.shape[-1]

    def initial_state(self, batch: int) -> torch.Tensor:
        """``h0`` repeated over a batch: ``[R, B, D]``."""
        return repeat_along(self.h0, 1, batch)  # its backward sums in pairs (fast.ops)

    def sequence_inputs(
        self, x: torch.Tensor, h: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [T, R, B, S]`` (a ``[T, B, S]`` input broadcast over the realizations) and the
        initial state ``h`` (default ``h0`` for x's batch, ``[R, B, D]``)."""
        if h is None:
            h = self.initial_state(x.shape[-2])
        if x.dim() == 3:
            x = x.unsqueeze(1).expand(x.shape[0], self.R, *x.shape[1:])
        return x, h

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """States ``h_1..h_T`` ``[T, R, B, D]`` for inputs ``x [T, R, B, S]`` (or ``[T, B, S]``)
        from ``h`` (default ``h0``)."""
        if h is None:
            h = self.initial_state(x.shape[-2])
        cell, hs = self.cell(), []
        for t in range(x.shape[0]):
            h = cell.step(h, x[t])
            hs.append(h)
        return torch.stack(hs)

    def logits(self, hs: torch.Tensor) -> torch.Tensor:
        """Logits of a whole sequence: ``[T, R, *B, D]`` -> ``[T, R, *B, O]``."""
        T, R = hs.shape[:2]
        flat = hs.transpose(0, 1).reshape(R, T, -1, hs.shape[-1])  # [R, T, n, D]
        z = self.readout(flat)  # [R, T, n, O]
        return z.reshape(R, *hs.shape[:1], *hs.shape[2:-1], self.O).transpose(0, 1)

    def predict(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[T, R, B, O]`` for inputs ``x`` (as :meth:`forward`)."""
        return self.logits(self(x, h))

    def extra_repr(self) -> str:
        return f"name={self.name}, R={self.R}, N={self.N}, D={self.state_dim}, S={self.S}"


def uniform(gen: torch.Generator, *shape: int, bound: float) -> torch.Tensor:
    """Float64 draws from U(−bound, bound) (PyTorch's default RNN and Linear init)."""
    return (torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound


def burn_in(step: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor) -> torch.Tensor:
    """``H0_BURN_IN`` input-free steps from ``h`` (places h0 near the autonomous attractor)."""
    for _ in range(H0_BURN_IN):
        h = step(h)
    return h


def model_config(fields: Any) -> ModelConfig:
    """The config dataclass of ``fields`` (a mapping or DictConfig with ``name``), checked.

    Raises :class:`flossrun.errors.ConfigError` naming the key: an unknown ``model.name``, a
    key the model does not have, or an impossible value.
    """
    cfg = MODELS.config(fields)
    cfg.check()
    return cfg


def build_model(
    model: ModelConfig | Any, S: int, O: int, seeds: Sequence[int], **placement: Any
) -> RecurrentEnsemble:
    """The ensemble that ``model=`` names: from its validated config (a :class:`ModelConfig`,
    e.g. ``Settings.model`` of :func:`flossrun.config.validate`, used as it is), or from config
    fields (a mapping, checked first: see :func:`model_config`). ``placement``: ``dtype``
    [float32] and ``device`` ["cpu"], as :class:`RecurrentEnsemble` takes them."""
    cfg = model if isinstance(model, ModelConfig) else model_config(model)
    options = {k: v for k, v in vars(cfg).items() if k not in ("name", "N")}
    return MODELS[cfg.name].build(cfg.N, S, O, seeds, **placement, **options)
