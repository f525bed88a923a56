"""Ctrl-C that stops a run at the next epoch boundary with a checkpoint and one line.

Inside :func:`deferred_sigint` the first SIGINT only sets a flag; the schedule
(:mod:`flossrun.runner`) looks at :func:`requested` after every training and flossing epoch,
saves a checkpoint there and raises :class:`Interrupted` with the line to print. A second
SIGINT interrupts at once (``KeyboardInterrupt``), resuming from the last checkpoint on disk.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_flag = {"hit": False}


class Interrupted(KeyboardInterrupt):
    """The run stopped on SIGINT after saving a checkpoint; ``str()`` is the line to print."""


def requested() -> bool:
    """True once SIGINT arrived inside :func:`deferred_sigint`."""
    return _flag["hit"]


@contextmanager
def deferred_sigint() -> Iterator[None]:
    """Defer the first SIGINT to the next :func:`requested` check (main thread only; elsewhere,
    e.g. in a launcher's worker thread, SIGINT keeps its default behaviour)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame) -> None:
        if _flag["hit"]:
            signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt
        _flag["hit"] = True

    old = signal.signal(signal.SIGINT, handler)
    _flag["hit"] = False
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        _flag["hit"] = False
