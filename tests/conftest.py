"""Shared fixtures: float64 default dtype, small reference dynamics, a brute-force Jacobian, and
runs of the real command made once per test module.

The reference dynamics (a constant linear map, the Hénon map) are written here, independently
of the library, so the Lyapunov engine and the diagnostics are checked against known answers.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from cli_support import flossrun


@pytest.fixture(scope="session", autouse=True)
def single_thread():
    """Run torch on one thread: the tests' tensors are tiny, and with two or more intra-op
    threads on a busy machine every small bmm/QR waits on a spinning peer (measured 6x slower)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def float64():
    """Make float64 the default dtype for one test (numerical identities need it)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch.float64
    torch.set_default_dtype(old)


class LinearMap:
    """``h ↦ A h + x`` with a constant ``A [D, D]``; the Jacobian is ``A`` everywhere."""

    def __init__(self, A: torch.Tensor) -> None:
        self.A = A

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return h @ self.A.T + x

    def tangent(self, h: torch.Tensor, x: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        return self.A @ Q


class HenonNoTangent:
    """The Hénon map ``(u, v) ↦ (1 − a u² + v, b u)`` on ``h [..., 2]``; input ignored.

    No ``tangent``: the Lyapunov engine must fall back to autograd.
    """

    def __init__(self, a: float = 1.4, b: float = 0.3) -> None:
        self.a, self.b = a, b

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        u, v = h[..., 0], h[..., 1]
        return torch.stack([1 - self.a * u**2 + v, self.b * u], dim=-1)


class Henon(HenonNoTangent):
    """The Hénon map with its analytic Jacobian ``[[−2 a u, 1], [b, 0]]``."""

    def tangent(self, h: torch.Tensor, x: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        u = h[..., 0, None]  # [..., 1]
        top = -2 * self.a * u * Q[..., 0, :] + Q[..., 1, :]
        return torch.stack([top, self.b * Q[..., 0, :]], dim=-2)


class StepOnly:
    """Expose only ``step`` of another dynamics (forces the autograd-tangent fallback)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.inner.step(h, x)


@pytest.fixture
def linear_map():
    """The :class:`LinearMap` class."""
    return LinearMap


@pytest.fixture
def henon():
    """The Hénon classes: ``(with analytic tangent, without tangent)``."""
    return Henon, HenonNoTangent


@pytest.fixture
def step_only():
    """The :class:`StepOnly` wrapper class."""
    return StepOnly


def _rnn_step_jacobian(step, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Brute-force per-trajectory Jacobians ``∂step(h, x)/∂h``: ``h [R, B, D]`` -> ``[R, B, D, D]``.

    Also asserts that different trajectories do not interact (off-diagonal blocks are zero).
    """
    full = torch.autograd.functional.jacobian(lambda u: step(u, x), h)  # [R, B, D, R, B, D]
    R, B, D = h.shape
    blocks = torch.zeros(R, B, D, D, dtype=h.dtype)
    for r in range(R):
        for b in range(B):
            blocks[r, b] = full[r, b, :, r, b, :]
            full[r, b, :, r, b, :] = 0
    assert torch.count_nonzero(full) == 0, "trajectories interact through step"
    return blocks


@pytest.fixture
def step_jacobian():
    """``f(step, h [R, B, D], x) -> J [R, B, D, D]`` by autograd (one block per trajectory)."""
    return _rnn_step_jacobian


def _random_orthogonal(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


@pytest.fixture
def random_orthogonal():
    """``f(n, seed) -> [n, n]`` float64 orthogonal matrix, for building test maps."""
    return _random_orthogonal


@pytest.fixture(scope="module")
def shared_run(
    tmp_path_factory,
) -> Callable[..., tuple[Path, subprocess.CompletedProcess]]:
    """``shared_run(*args) -> (root, proc)``: ``flossrun <args>`` run once per test module in a
    folder of its own (``root``; its run under ``root/outputs``). Tests read it, or change a
    copy of it (``cli_support.copy_tree``), never the folder itself."""
    made: dict[tuple[str, ...], tuple[Path, subprocess.CompletedProcess]] = {}

    def get(*args: str) -> tuple[Path, subprocess.CompletedProcess]:
        if args not in made:
            root = tmp_path_factory.mktemp("shared_run")
            made[args] = (root, flossrun(root, *args))
        return made[args]

    return get
