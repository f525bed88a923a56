"""TorchScript for the kernels' step loops: no GIL and less overhead per op.

A loop of small tensor ops in Python holds the GIL between ops, so two threads running slices of
an ensemble (:mod:`flossrun.fast.parallel`) keep handing it back and forth (on a 2-core VM that
made them slower than one thread). Compiled by TorchScript the same loop runs in C++ without
the GIL. :func:`script` compiles a function on its first call (and runs it without TorchScript's
optimising executor, so that it computes exactly the ops written) and falls back to the Python
function where TorchScript is missing or fails (it is deprecated in recent PyTorch, and a
missing TorchScript must not break a run): both compute the same ops in the same order, and
``tests/test_fast_paths.py`` checks that they agree. ``FLOSSRUN_JIT=0`` turns it off.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from typing import Any

import torch


def jit_enabled() -> bool:
    """False when the environment sets ``FLOSSRUN_JIT=0``."""
    return os.environ.get("FLOSSRUN_JIT", "1") != "0"


class script:
    """``fn`` compiled by TorchScript on first call (thread-safe), or ``fn`` itself."""

    def __init__(self, fn: Callable[..., Any]):
        self.python = fn
        self._compiled: Callable[..., Any] | None = None
        self._lock = threading.Lock()
        self.__doc__, self.__name__ = fn.__doc__, fn.__name__

    def compiled(self) -> Callable[..., Any]:
        """The TorchScript function, or the Python one where compiling is off or fails."""
        if self._compiled is None:
            with self._lock:
                if self._compiled is None:
                    self._compiled = self._compile()
        return self._compiled

    def _compile(self) -> Callable[..., Any]:
        if not jit_enabled():
            return self.python
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TorchScript's deprecation notice
                return torch.jit.script(self.python)
        except Exception as e:  # any failure: run the same ops in Python
            warnings.warn(
                f"flossrun: TorchScript unavailable for {self.__name__} ({type(e).__name__}); "
                "running it in Python (slower on CPU)",
                RuntimeWarning,
                stacklevel=3,
            )
            return self.python

    def __call__(self, *args: Any) -> Any:
        fn = self.compiled()
        if fn is self.python:
            return fn(*args)
        # The graph as written, without the optimising executor: it re-specialises the graph
        # for the shapes it has seen, so the ops run (and their rounding) would depend on the
        # ensemble's slicing and on how often the function ran before in this process.
        with torch.jit.optimized_execution(False):
            return fn(*args)
