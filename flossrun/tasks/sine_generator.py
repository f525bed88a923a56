"""``task=sine_generator`` (docs/design.md §10): generate sin(ω t) from a constant input ω.

Each sequence has one frequency ω from a fixed grid of ``n_omega`` values evenly spaced in
``[omega_min, omega_max]`` (rad/step; π/16..π/8, 100 values, as Ribeiro et al.), fed as the
constant input ``x_t = ω`` for t = 1..T; the target is ``y_t = sin(ω t)``. Loss: mean squared
error over steps, sequences and the one output, per realization. Success: final test MSE ≤
``task.success_mse``. ``task.h0``: the network's initial state is learned (default) or fixed at
zero (the reference, :func:`fix_h0_at_zero`). The test set is the whole grid (every ω once, the
same for every realization); training batches draw ω uniformly from the grid, one CPU generator
per realization. :func:`extrapolation_mse`: the test MSE past the training horizon.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from flossrun.fast.ops import realization_mean
from flossrun.tasks.base import TaskConfig, register_task

H0_MODES = ("learned", "zero")


def fix_h0_at_zero(model: torch.nn.Module) -> None:
    """``task.h0=zero``: set the model's initial state to 0 and zero its gradient, so that
    Adam (whose step is 0 for a gradient that is always 0) never moves it — the reference
    trains from a fixed zero state. ``grad_h0_norm`` then reads 0."""
    with torch.no_grad():
        model.h0.zero_()
    model.h0.register_hook(torch.zeros_like)


@dataclass(frozen=True)
class SineConfig(TaskConfig):
    """``task=sine_generator``."""

    name: str = "sine_generator"  # task
    T: int = 400  # sequence length (steps)
    omega_min: float = math.pi / 16  # lowest frequency of the grid (rad/step)
    omega_max: float = math.pi / 8  # highest frequency of the grid (rad/step)
    n_omega: int = 100  # frequencies in the grid (evenly spaced, ends included)
    success_mse: float = 0.01  # final test MSE counted as success (0.5 = outputting zero)
    h0: str = "learned"  # initial state: learned (flossrun) | zero (fixed, as the reference)

    def check(self) -> None:
        from flossrun.errors import need

        super().check()
        need(self.h0 in H0_MODES, "task.h0", self.h0, f"allowed: {', '.join(H0_MODES)}")
        need(self.omega_min > 0, "task.omega_min", self.omega_min, "must be > 0")
        need(
            self.omega_max >= self.omega_min,
            "task.omega_max",
            self.omega_max,
            f"must be >= task.omega_min={self.omega_min}",
        )
        need(self.n_omega >= 1, "task.n_omega", self.n_omega, "must be >= 1")
        need(self.success_mse > 0, "task.success_mse", self.success_mse, "must be > 0")


@dataclass(frozen=True)
class SineGenerator:
    """The sine-generation task; ``grid`` holds the ω values (rad/step)."""

    T: int = 400
    omega_min: float = math.pi / 16
    omega_max: float = math.pi / 8
    n_omega: int = 100
    success_mse: float = 0.01
    h0: str = "learned"

    S = 1  # one input: ω
    O = 1  # one output: the generated sample
    success_text = "test MSE <= task.success_mse"

    def prepare(self, model: torch.nn.Module) -> None:
        """``task.h0=zero``: the model starts from a fixed zero state (:func:`fix_h0_at_zero`)."""
        if self.h0 == "zero":
            fix_h0_at_zero(model)

    @property
    def grid(self) -> torch.Tensor:
        """The ω grid ``[n_omega]`` in float64 (``torch.linspace``, both ends included)."""
        return torch.linspace(self.omega_min, self.omega_max, self.n_omega, dtype=torch.float64)

    def sequences(
        self,
        omega: torch.Tensor,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs ``x_t = ω`` and targets ``sin(ω t)``, t = 1..T, for ``omega [R, B]`` (float64):
        both ``[T, R, B, 1]`` (computed in float64, then cast)."""
        t = torch.arange(1, self.T + 1, dtype=torch.float64).reshape(-1, 1, 1)
        x = omega.unsqueeze(0).expand(self.T, *omega.shape)
        y = torch.sin(omega.unsqueeze(0) * t)
        return x[..., None].to(device, dtype), y[..., None].to(device, dtype)

    def draw(self, gens: Sequence[torch.Generator], batch: int) -> torch.Tensor:
        """``[R, batch]`` frequencies drawn uniformly from the grid, one generator per row."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        grid = self.grid
        return torch.stack(
            [grid[torch.randint(0, self.n_omega, (batch,), generator=g)] for g in gens]
        )

    def sample(
        self, gens: Sequence[torch.Generator], batch: int, **kw: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch: ``batch`` grid frequencies per realization, ``[T, R, B, 1]`` each."""
        return self.sequences(self.draw(gens, batch), **kw)

    def test_set(
        self, gens: Sequence[torch.Generator], size: int, **kw: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole grid for every realization (``size`` is ignored): ``[T, R, n_omega, 1]``."""
        return self.sequences(self.grid.expand(len(gens), self.n_omega), **kw)

    def drive(
        self, gens: Sequence[torch.Generator], steps: int, batch: int, **kw: Any
    ) -> torch.Tensor:
        """Constant grid frequencies for ``steps`` steps: ``[steps, R, batch, 1]``."""
        omega = self.draw(gens, batch)
        x = omega.unsqueeze(0).expand(steps, *omega.shape)[..., None]
        return x.to(kw.get("device", "cpu"), kw.get("dtype", torch.float32))

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean squared error over steps, sequences and outputs, per realization: ``[R]``."""
        return realization_mean((z - y).square(), dim=1)

    def loss_terms(self, y: torch.Tensor) -> int:
        """Terms :meth:`loss` averages per realization: T·B·O for ``y [T, R, B, O]`` (the
        reference code sums them: ``train.loss_reduction=sum``)."""
        return y.numel() // y.shape[1]

    def metrics(self, z: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Nothing besides the loss (which is the MSE)."""
        return {}

    def succeeded(self, test: dict[str, torch.Tensor], cfg: Any) -> torch.Tensor:
        """``[R]`` bool: final test MSE ≤ ``task.success_mse``."""
        return test["test_loss"] <= self.success_mse


@register_task("sine_generator", SineConfig)
def build_sine(cfg: SineConfig) -> SineGenerator:
    """The task from its checked config."""
    return SineGenerator(
        T=cfg.T,
        omega_min=cfg.omega_min,
        omega_max=cfg.omega_max,
        n_omega=cfg.n_omega,
        success_mse=cfg.success_mse,
        h0=cfg.h0,
    )


EXTRAPOLATION_WINDOWS = (("train", 0, 1), ("next_1x", 1, 2), ("next_4x", 1, 5))  # × task.T


@torch.no_grad()
def extrapolation_mse(model: torch.nn.Module, task: SineGenerator) -> torch.Tensor:
    """Test MSE of the generator run on past its training horizon: every grid ω as a constant
    input for 5 T steps from the network's own h0 (the run the training loss sees, continued),
    against sin(ω t). Returns ``[R, 3]`` float64: MSE over steps 1..T (the training horizon),
    T+1..2T (the next 1×) and T+1..5T (the next 4×), averaged over the grid."""
    T = task.T
    long = SineGenerator(T=5 * T, omega_min=task.omega_min, omega_max=task.omega_max,
                         n_omega=task.n_omega)  # fmt: skip
    x, y = long.sequences(task.grid.expand(model.R, task.n_omega), dtype=model.h0.dtype,
                          device=model.h0.device)  # fmt: skip
    err = (model.predict(x) - y).double().square().mean((2, 3))  # [5T, R]
    cols = [err[a * T : b * T].mean(0) for _, a, b in EXTRAPOLATION_WINDOWS]
    return torch.stack(cols, 1).cpu()
