"""``task=delayed_copy | delayed_xor | temporal_xor`` (docs/design.md §3): delayed parity.

Inputs are ``S`` independent streams of i.i.d. fair bits times ``amplitude``. Channel ``s`` has
its own target: the parity of ``m`` taps of its own stream spread evenly over the delay ``d``,

    y_t = x_{t − d/m} ⊕ x_{t − 2d/m} ⊕ … ⊕ x_{t − d},     defined for t > d.

Loss and accuracy count only ``t = d+1..T`` (0-based indices ``d..T−1``). Data are drawn on the
CPU from one seeded generator per realization and then moved, so CPU and GPU runs see the same
bits and a realization sees the same bits alone or inside an ensemble.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from flossrun.errors import need
from flossrun.fast.ops import realization_mean, softplus
from flossrun.tasks.base import TaskConfig, register_task

TASK_TAPS = {"delayed_copy": 1, "delayed_xor": 2}
TASK_NAMES = ("delayed_copy", "delayed_xor", "temporal_xor")


def bce_with_logits(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Elementwise binary cross-entropy of logits ``z`` against bits ``y`` (nats):
    ``softplus(z) − y z``, with :func:`flossrun.fast.ops.softplus` (whose value and gradient
    ``σ(z) − y`` do not depend on where an element sits in its tensor, unlike PyTorch's own)."""
    return softplus(z) - y * z


@dataclass(frozen=True)
class DelayedParity:
    """Delayed parity with ``taps`` taps over the longest lag ``delay``.

    Attributes: ``delay`` d (steps), ``taps`` m, ``channels`` S, ``T`` sequence length (steps),
    ``amplitude`` input scale.
    """

    delay: int
    taps: int = 1
    channels: int = 1
    T: int = 300
    amplitude: float = 1.0

    def __post_init__(self) -> None:
        if self.taps < 1:
            raise ValueError(f"taps must be >= 1, got {self.taps}")
        if self.delay < 1:
            raise ValueError(f"delay must be >= 1, got {self.delay}")
        if self.delay % self.taps != 0:
            raise ValueError(
                f"delay must be a multiple of taps={self.taps} (delay % taps == 0), "
                f"got delay={self.delay}"
            )
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {self.channels}")
        if self.T <= self.delay:
            raise ValueError(f"T must be > delay={self.delay}, got T={self.T}")

    @property
    def lags(self) -> list[int]:
        """The tap lags ``d/m, 2d/m, …, d`` in steps."""
        step = self.delay // self.taps
        return [step * j for j in range(1, self.taps + 1)]

    def targets(self, bits: torch.Tensor) -> torch.Tensor:
        """Parity targets for ``bits [T, ..., S]`` (0/1); entries with t ≤ d are 0 (unused)."""
        y = torch.zeros_like(bits)
        d, T = self.delay, bits.shape[0]
        for lag in self.lags:  # y[i] ^= bits[i - lag] for i >= d
            y[d:] = torch.logical_xor(y[d:], bits[d - lag : T - lag]).to(bits.dtype)
        return y

    def sample(
        self,
        gens: Sequence[torch.Generator],
        batch: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch per realization generator: inputs and targets, both ``[T, R, B, S]``."""
        bits = random_bits(gens, self.T, batch, self.channels, dtype=dtype)  # [T, R, B, S]
        y = self.targets(bits)
        return (bits * self.amplitude).to(device), y.to(device)

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean BCE-with-logits over counted steps, per realization: ``[R]`` (nats per bit).

        ``z``, ``y``: ``[T, R, B, O]``.
        """
        return realization_mean(bce_with_logits(z[self.delay :], y[self.delay :]), dim=1)

    def loss_terms(self, y: torch.Tensor) -> int:
        """Terms :meth:`loss` averages per realization: (T − delay)·B·O for ``y [T, R, B, O]``."""
        return y[self.delay :].numel() // y.shape[1]

    def accuracy(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Fraction of counted bits with ``(z > 0) == y``, per realization: ``[R]``."""
        d = self.delay
        hit = ((z[d:] > 0).to(y.dtype) == y[d:]).to(z.dtype)
        return realization_mean(hit, dim=1)

    # --- the task seam ---------------------------------------------------------------------
    @property
    def S(self) -> int:
        """Input channels."""
        return self.channels

    @property
    def O(self) -> int:  # noqa: E743 (the paper's name for the output size)
        """Output channels (one per stream)."""
        return self.channels

    success_text = "test accuracy >= train.success_threshold"

    def test_set(
        self, gens: Sequence[torch.Generator], size: int, **kw: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` held-out sequences per realization (``[T, R, size, S]``)."""
        return self.sample(gens, size, **kw)

    def drive(
        self,
        gens: Sequence[torch.Generator],
        steps: int,
        batch: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """Random bits times ``amplitude``: ``[steps, R, batch, S]`` (flossing, diagnostics)."""
        bits = random_bits(gens, steps, batch, self.channels, dtype=dtype)
        return (bits * self.amplitude).to(device)

    def metrics(self, z: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """``accuracy [R]`` (the loss is logged on its own)."""
        return {"accuracy": self.accuracy(z, y)}

    def succeeded(self, test: dict[str, torch.Tensor], cfg: Any) -> torch.Tensor:
        """``[R]`` bool: final ``test_accuracy`` ≥ ``train.success_threshold``."""
        return test["test_accuracy"] >= cfg.train.success_threshold


def random_bits(
    gens: Sequence[torch.Generator],
    T: int,
    batch: int,
    channels: int,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Fair 0/1 bits ``[T, R, B, S]``, one CPU generator per realization."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    draws = [torch.randint(0, 2, (T, batch, channels), generator=g) for g in gens]
    return torch.stack(draws, dim=1).to(dtype)


def make_task(
    name: str,
    delay: int,
    *,
    T: int = 300,
    channels: int = 1,
    amplitude: float = 1.0,
    taps: int | None = None,
) -> DelayedParity:
    """Build a task by name: ``delayed_copy`` (m=1), ``delayed_xor`` (m=2), ``temporal_xor``."""
    if name not in TASK_NAMES:
        raise ValueError(f"task must be one of {', '.join(TASK_NAMES)}, got {name!r}")
    if name in TASK_TAPS:
        if taps is not None and taps != TASK_TAPS[name]:
            raise ValueError(f"taps must be {TASK_TAPS[name]} for {name}, got {taps}")
        taps = TASK_TAPS[name]
    elif taps is None:
        raise ValueError("taps must be given (an integer >= 1) for temporal_xor")
    return DelayedParity(delay=delay, taps=taps, channels=channels, T=T, amplitude=amplitude)


# --- the seam: the config and the registry (flossrun.tasks.base) ---------------------------
@dataclass(frozen=True)
class ParityConfig(TaskConfig):
    """``task=delayed_copy | delayed_xor | temporal_xor`` (docs/design.md §3)."""

    delay: int = 20  # longest lag d (steps); loss counts t > d
    channels: int = 1  # S independent input/output streams
    taps: int = TASK_TAPS["delayed_xor"]  # m taps of the parity (1 for copy, 2 for XOR)
    amplitude: float = 1.0  # input scale: x_t ∈ {0, amplitude}

    def check(self) -> None:
        t = self
        need(t.delay >= 1, "task.delay", t.delay, f"must be in [1, {t.T - 1}] (< task.T)")
        need(t.T > t.delay, "task.delay", t.delay, f"must be in [1, {t.T - 1}] (< task.T={t.T})")
        need(t.taps >= 1, "task.taps", t.taps, "must be >= 1")
        if t.name in TASK_TAPS:
            tap = TASK_TAPS[t.name]
            need(t.taps == tap, "task.taps", t.taps, f"must be {tap} for {t.name}")
        need(
            t.delay % t.taps == 0,
            "task.delay",
            t.delay,
            f"must be a multiple of task.taps={t.taps}",
        )
        need(t.channels >= 1, "task.channels", t.channels, "must be >= 1")


@dataclass(frozen=True)
class CopyConfig(ParityConfig):
    """``task=delayed_copy``: the parity of one tap, y_t = x_{t-d}."""

    taps: int = TASK_TAPS["delayed_copy"]  # m = 1: the copy (fixed)


@dataclass(frozen=True)
class TemporalXorConfig(ParityConfig):
    """``task=temporal_xor``: the parity of ``taps`` taps spread evenly over ``delay``."""

    taps: int = 4  # m (2, 4, 8: tasks of growing temporal complexity; delay % taps == 0)


CONFIGS: dict[str, type[ParityConfig]] = {
    "delayed_copy": CopyConfig,
    "delayed_xor": ParityConfig,
    "temporal_xor": TemporalXorConfig,
}

for _name in TASK_NAMES:
    register_task(_name, CONFIGS[_name])(
        lambda c: make_task(
            c.name, c.delay, T=c.T, channels=c.channels, amplitude=c.amplitude, taps=c.taps
        )
    )
