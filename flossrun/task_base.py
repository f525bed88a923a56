"""The task registry: the fields every task config has and ``register_task``.

Below :mod:`flossrun.tasks` (which registers the delayed-parity tasks and builds a task from
``task=``) so that task modules such as :mod:`flossrun.sine_generator` can register themselves
without importing the module that imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flossrun.errors import need


@dataclass
class TaskConfig:
    """Fields every task has; each task's dataclass adds its own."""

    name: str = "delayed_xor"  # task: a key of flossrun.tasks.TASKS
    T: int = 300  # sequence length (steps)

    def check(self) -> None:
        """Raise :class:`flossrun.errors.ConfigError` on the first impossible value."""
        need(self.T >= 2, "task.T", self.T, "must be >= 2")


@dataclass(frozen=True)
class TaskSpec:
    """A registry entry: the config dataclass and the function that builds the task from it."""

    name: str
    config: type[TaskConfig]
    build: Callable[[Any], Any]


TASKS: dict[str, TaskSpec] = {}


def register_task(name: str, config: type[TaskConfig]) -> Callable[[Callable], Callable]:
    """Decorator of a builder ``cfg -> task``: make ``task=<name>`` use it."""

    def add(build: Callable) -> Callable:
        TASKS[name] = TaskSpec(name, config, build)
        return build

    return add
