"""Ensemble parallelism on CPU: slices of the ensemble in threads, one core each.

The realizations of an ensemble never interact, so a kernel can run contiguous slices of them
side by side. On CPU that beats one intra-op-parallel pass when the work per op is small:
LAPACK factorises a batch of small matrices one at a time on one core (batched ``cholesky_ex``
and ``solve_triangular`` use no threads), and ops of a few tens of microseconds barely gain from
an OpenMP team. :func:`map_slices` runs one slice per core in a pool of threads that each use
one intra-op thread; the slice functions are compiled by TorchScript (:mod:`flossrun.fast.jit`)
so that they run without the GIL (a Python loop of small ops would keep handing it back and
forth). On GPUs, with a single intra-op thread, or for one realization it calls the function
once, on the whole ensemble, in the calling thread set to one intra-op thread meanwhile (so
that every realization's numbers come from single-threaded routines, alone or in an ensemble).

Results are the same as one pass up to float rounding: every realization sees the same ops.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

T_ = TypeVar("T_")

_lock = threading.Lock()
_caller = threading.local()  # .workers: slices per call while the caller runs on one thread
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist: start a new pool there."""
    global _lock, _pool, _pool_size
    _lock, _pool, _pool_size = threading.Lock(), None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _one_thread() -> None:
    """Pool-thread initializer: one intra-op thread (OpenMP and MKL settings are per thread).

    ``get_num_threads`` first: a thread's first parallel op otherwise re-applies the
    process-wide default over the setting made here.
    """
    torch.get_num_threads()
    torch.set_num_threads(1)


def _get_pool(workers: int) -> ThreadPoolExecutor:
    """The shared pool, (re)built with ``workers`` threads; the caller keeps its own threads."""
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != workers:
            if _pool is not None:
                _pool.shutdown(wait=True)
            caller = torch.get_num_threads()
            _pool = ThreadPoolExecutor(workers, "flossrun-ensemble", initializer=_one_thread)
            _pool_size = workers
            # Start every thread now, then restore the process-wide default that
            # torch.set_num_threads(1) in the initializer also overwrote (threads created later
            # by torch itself would otherwise start with one intra-op thread).
            barrier = threading.Barrier(workers)
            for f in [_pool.submit(barrier.wait) for _ in range(workers)]:
                f.result()
            torch.set_num_threads(caller)
        return _pool


@contextmanager
def one_intra_op_thread() -> Iterator[None]:
    """The calling thread's intra-op threads set to one, and restored afterwards."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def ensemble_slices(R: int, device: torch.device) -> list[slice]:
    """Contiguous slices of ``R`` realizations: one per intra-op thread on CPU, else one."""
    cores = getattr(_caller, "workers", None) or torch.get_num_threads()
    workers = min(cores, R) if device.type == "cpu" else 1
    if workers <= 1:
        return [slice(0, R)]
    bounds = [round(i * R / workers) for i in range(workers + 1)]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def map_slices(fn: Callable[..., T_], calls: Sequence[tuple]) -> list[T_]:
    """``[fn(*args) for args in calls]``, the calls side by side when there are several.

    Each call runs without autograd on one intra-op thread: in a pool thread, or a single call
    in the calling thread with its intra-op threads set to one meanwhile. LAPACK's triangular
    solves (and possibly other MKL routines) round differently with more threads on some
    instruction sets (MKL's AVX2 paths), so a lone realization, which is a single call, must
    run on one thread as every ensemble member does. An exception in any call is raised here
    after all calls have ended.
    """
    if len(calls) == 1:
        with torch.no_grad(), one_intra_op_thread():
            return [fn(*calls[0])]

    def run(args: tuple) -> T_:
        with torch.no_grad():
            return fn(*args)

    pool = _get_pool(len(calls))
    futures = [pool.submit(run, args) for args in calls]
    errors = [f.exception() for f in futures]
    for e in errors:
        if e is not None:
            raise e
    return [f.result() for f in futures]


@contextmanager
def caller_on_one_thread(R: int, device: torch.device) -> Iterator[None]:
    """Run the calling thread's own ops on one intra-op thread while sliced kernels use every core.

    After each parallel op, the caller's idle OpenMP threads spin-wait for the next one (several
    milliseconds with GNU OpenMP), on the very cores the slices need; an epoch whose heavy work
    runs in slices (flossing) is faster with the caller's few small ops on one thread (about 7 %
    at R = 16 on the 2-core development machine). A no-op on GPUs, for one realization, or with
    one intra-op thread.
    """
    cores = torch.get_num_threads()
    if device.type != "cpu" or R < 2 or cores < 2 or getattr(_caller, "workers", None):
        yield
        return
    _caller.workers = cores
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(cores)
        _caller.workers = None
