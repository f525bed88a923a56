"""Per-realization random streams.

Realization ``r`` of a run with base seed ``s`` uses seed ``s + r`` for everything random
(weights, data, Lyapunov frames). Each purpose ("init", "train", "test", "floss", ...) gets
its own independent stream derived from ``(seed, purpose)``, so adding a new random draw in one
place never shifts the numbers drawn in another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit integer seed derived deterministically from ``(seed, stream)``."""
    digest = hashlib.sha256(f"{int(seed)}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, stream: str) -> torch.Generator:
    """A CPU ``torch.Generator`` for one realization's stream (CPU so CPU and GPU runs agree)."""
    return torch.Generator(device="cpu").manual_seed(stream_seed(seed, stream))


def generators(seeds: Sequence[int], stream: str) -> list[torch.Generator]:
    """One generator per realization seed."""
    return [generator(s, stream) for s in seeds]


def realization_seeds(seed: int, realizations: int) -> list[int]:
    """Seeds ``seed, seed + 1, …, seed + R − 1`` of an ensemble of ``R`` realizations."""
    if realizations < 1:
        raise ValueError(f"realizations must be >= 1, got {realizations}")
    return [int(seed) + r for r in range(realizations)]
