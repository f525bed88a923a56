"""Tasks behind one seam (docs/design.md §3, §10).

A task provides, for an ensemble of ``R`` realizations with one CPU generator each:

    S, O                                   input and output channels
    sample(gens, batch) -> x, y            a training batch, both ``[T, R, B, ·]``
    test_set(gens, size) -> x, y           the fixed held-out set
    drive(gens, steps, batch) -> x         inputs for flossing and diagnostics ``[steps, R, B, S]``
    loss(z, y) -> [R]                      the training loss of outputs ``z [T, R, B, O]``
    metrics(z, y) -> {name: [R]}           what is logged besides the loss (``accuracy``)
    succeeded(test) -> [R] bool            what "success" means, from ``evaluate``'s numbers
    success_text                           that rule in words (terminal summary)

Each module of this package defines a task's config dataclass (its fields documented,
:meth:`TaskConfig.check` validating them) and registers it with a builder via
:func:`register_task`; importing the package imports them all, so a new task is one new file
here plus ``configs/task/<name>.yaml``. What an analysis needs of a task beyond the seam is a
capability (:class:`ConstantInputs`, :class:`Delayed`, :class:`PreparesModel`), checked with
``isinstance``.
"""

from flossrun.registry import import_modules
from flossrun.tasks.base import (
    TASKS,
    ConstantInputs,
    Delayed,
    PreparesModel,
    TaskConfig,
    build_task,
    register_task,
    task_config,
)
from flossrun.tasks.parity import (
    TASK_NAMES,
    TASK_TAPS,
    CopyConfig,
    DelayedParity,
    ParityConfig,
    TemporalXorConfig,
    bce_with_logits,
    make_task,
    random_bits,
)

import_modules(__name__, __path__)

__all__ = [
    "TASKS",
    "TASK_NAMES",
    "TASK_TAPS",
    "ConstantInputs",
    "CopyConfig",
    "Delayed",
    "DelayedParity",
    "ParityConfig",
    "PreparesModel",
    "TaskConfig",
    "TemporalXorConfig",
    "bce_with_logits",
    "build_task",
    "make_task",
    "random_bits",
    "register_task",
    "task_config",
]
