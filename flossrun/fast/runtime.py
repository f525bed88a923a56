"""Process settings that let the CPU kernels run at full speed.

A training epoch allocates a few [T, R, B, N] buffers (25 MB each at R = 16) and frees them again.
glibc's default malloc hands such blocks back to the kernel (``mmap``/heap trimming), so every
epoch page-faults and zero-fills them anew: at R = 16 about a third of an epoch was spent in the
kernel. :func:`configure_cpu` keeps freed memory in the process instead (the peak resident memory
is unchanged; up to 1 GiB of freed heap is just not returned between epochs). Call it once at
start-up, before the first large allocation matters; it does nothing where glibc is absent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameter ids (glibc malloc.h)
KEEP_BYTES = 2**30  # free heap kept before trimming (mallopt takes a C int: at most 2**31 - 1)
_configured = False


def configure_cpu(threads: int | None = None) -> dict[str, object]:
    """Keep freed heap memory (glibc ``mallopt``) and optionally set the intra-op threads.

    ``threads``: intra-op threads (default: leave torch's choice, one per physical core).
    Returns what was applied, e.g. ``{"mallopt": True, "threads": 2}``.
    """
    global _configured
    applied: dict[str, object] = {"mallopt": _configured}
    if not _configured and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = libc.mallopt(M_MMAP_MAX, ctypes.c_int(0)) == 1  # big blocks from the heap ...
            ok &= libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(KEEP_BYTES)) == 1  # ... kept
            _configured = applied["mallopt"] = bool(ok)
        except (OSError, AttributeError):
            pass
    if threads is not None:
        torch.set_num_threads(threads)
    applied["threads"] = torch.get_num_threads()
    return applied
