"""The task seam: the fields every task config has, the registry ``TASKS``, the capabilities
an analysis or a diagnostic may ask of a task, and building a task from ``task=``.

Every module of :mod:`flossrun.tasks` registers its task(s) with :func:`register_task` when
imported (importing the package imports them all), so a new task is one new file there plus
``configs/task/<name>.yaml`` (docs/design.md §10).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from flossrun.errors import need
from flossrun.registry import Registry


@dataclass(frozen=True)
class TaskConfig:
    """Fields every task has; each task's dataclass adds its own."""

    name: str = "delayed_xor"  # task: a key of flossrun.tasks.TASKS
    T: int = 300  # sequence length (steps)

    def check(self) -> None:
        """Raise :class:`flossrun.errors.ConfigError` on the first impossible value."""
        need(self.T >= 2, "task.T", self.T, "must be >= 2")


TASKS: Registry[Callable[[Any], Any]] = Registry("task", default="delayed_xor")


def register_task(name: str, config: type[TaskConfig]) -> Callable[[Callable], Callable]:
    """Decorator of a builder ``cfg -> task``: make ``task=<name>`` use it."""
    return TASKS.register(name, config)


# --- capabilities: what an analysis or a diagnostic may need of a task (config or task) -------
@runtime_checkable
class ConstantInputs(Protocol):
    """A task driven by a constant input ω from a grid of ``n_omega`` values in
    ``[omega_min, omega_max]`` (rad/step): orbit diagrams and the trained landscapes use it."""

    omega_min: float
    omega_max: float
    n_omega: int


@runtime_checkable
class Delayed(Protocol):
    """A task whose target at step t depends on the input ``delay`` steps back: it has an
    error signal per lag (``diag.jacobian``)."""

    delay: int


@runtime_checkable
class PreparesModel(Protocol):
    """A task that sets up the model it trains once it is built (the sine generator's
    ``task.h0=zero`` fixes the initial state at zero)."""

    def prepare(self, model: Any) -> None: ...


def task_config(fields: Any) -> TaskConfig:
    """The config dataclass of ``fields`` (a mapping or DictConfig with ``name``), checked.

    Raises :class:`flossrun.errors.ConfigError` naming the key: an unknown ``task.name``, a key
    the task does not have, or an impossible value.
    """
    cfg = TASKS.config(fields)
    cfg.check()
    return cfg


def build_task(task: TaskConfig | Any) -> Any:
    """The task that ``task=`` names: from its validated config (a :class:`TaskConfig`, e.g.
    ``Settings.task`` of :func:`flossrun.config.validate`, used as it is), or from config
    fields (a mapping, checked first: see :func:`task_config`)."""
    cfg = task if isinstance(task, TaskConfig) else task_config(task)
    return TASKS[cfg.name].build(cfg)
