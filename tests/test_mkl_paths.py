"""The alone == ensemble guarantee under each instruction set MKL may choose.

MKL picks its code paths by CPU: AVX-512 on the development machine (Intel Xeon), AVX2 on AMD
EPYC, where some routines round differently with more than one thread (triangular solves in
particular). ``MKL_ENABLE_INSTRUCTIONS`` makes MKL take the paths of a lesser instruction set,
so these tests rerun the alone == ensemble tests of the vanilla and LSTM kernels in
subprocesses under ``AVX2`` and ``AVX512`` (where the CPU has it). The kernel-level tests here
run in this process too, under whatever MKL picks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flossrun.fast.floss import vanilla_lyapunov
from flossrun.fast.lstm_floss import lstm_lyapunov

TESTS = Path(__file__).parent
CHILD = "FLOSSRUN_MKL_PATHS_CHILD"  # set in the subprocesses: they do not start their own


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _inputs(kernel: str, R: int, N: int, k: int, T: int = 12, seed: int = 3):
    """float32 inputs of a kernel with ``R`` realizations, QRs at most steps."""
    gen = torch.Generator().manual_seed(seed)
    rows, D = (4 * N, 2 * N) if kernel == "lstm" else (N, N)
    W = torch.randn(R, rows, N, generator=gen) * (1.5 / N**0.5)
    u = torch.randn(T, R, 1, rows, generator=gen)
    h0 = 0.5 * torch.randn(R, 1, D, generator=gen)
    Q0 = torch.linalg.qr(torch.randn(R, 1, D, k, generator=gen, dtype=torch.float64))[0].float()
    qr_at = [t % 3 != 1 or t == T - 1 for t in range(T)]
    keep = [q and t >= 2 for t, q in enumerate(qr_at)]
    return W, u, h0, Q0, qr_at, keep


def _with_grads(fn, W, u, h0, Q0, qr_at, keep):
    W, u, h0 = (a.detach().clone().requires_grad_(True) for a in (W, u, h0))
    logs, h = fn(W, u, h0, Q0, qr_at, keep)
    (logs.square().sum() + h.sum()).backward()
    return logs.detach(), h.detach(), W.grad, u.grad, h0.grad


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    ("kernel", "N", "k"), [("vanilla", 16, 13), ("vanilla", 12, 11), ("lstm", 12, 21)]
)
def test_kernel_alone_equals_itself_inside_an_ensemble(kernel, N, k, threads):
    """float32: logs, final state and every gradient of realization 1 bit for bit, with one or
    two intra-op threads (N = 16: the aligned batched route; N = 12: one GEMM per matrix)."""
    fn = lstm_lyapunov if kernel == "lstm" else vanilla_lyapunov
    W, u, h0, Q0, qr_at, keep = _inputs(kernel, 4, N, k)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        together = _with_grads(fn, W, u, h0, Q0, qr_at, keep)
        alone = _with_grads(fn, W[1:2], u[:, 1:2], h0[1:2], Q0[1:2], qr_at, keep)
    finally:
        torch.set_num_threads(old)
    logs, h, gW, gu, gh = together
    picked = (logs[:, 1:2], h[1:2], gW[1:2], gu[:, 1:2], gh[1:2])
    for name, a, b in zip(("logs", "h", "gW", "gu", "gh0"), picked, alone, strict=True):
        assert torch.equal(a, b), (name, (a - b).abs().max().item())


ALONE_TESTS = [
    f"{TESTS / 'test_mkl_paths.py'}::test_kernel_alone_equals_itself_inside_an_ensemble",
    f"{TESTS / 'test_lstm_floss.py'}::test_a_realization_alone_equals_itself_inside_an_ensemble",
    f"{TESTS / 'test_determinism.py'}::test_every_model_alone_equals_itself_inside_an_ensemble"
    "[vanilla]",
    f"{TESTS / 'test_determinism.py'}::test_every_model_alone_equals_itself_inside_an_ensemble"
    "[lstm]",
]


@pytest.mark.skipif(bool(os.environ.get(CHILD)), reason="already inside a subprocess")
@pytest.mark.parametrize("isa", ["AVX2", "AVX512"])
def test_alone_equals_ensemble_under_each_mkl_instruction_set(isa):
    if isa == "AVX512" and "avx512f" not in _cpu_flags():
        pytest.skip("this CPU has no AVX-512")
    env = {**os.environ, "MKL_ENABLE_INSTRUCTIONS": isa, CHILD: "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ALONE_TESTS]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
