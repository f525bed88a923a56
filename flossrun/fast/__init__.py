"""Exact fast paths: hand-written adjoints and a Cholesky QR (same math, fewer, bigger ops).

- :mod:`flossrun.fast.bptt` — the vanilla RNN over a whole sequence, readout included, with a
  hand-written backward (training).
- :mod:`flossrun.fast.qr` — Cholesky QR with a Householder fallback and the analytic thin-QR
  backward (any dynamics, via ``lyapunov_spectrum(..., orthonormalize="cholesky")``).
- :mod:`flossrun.fast.floss` — the whole Benettin pass of the vanilla RNN with a hand-written
  adjoint (flossing).
- :mod:`flossrun.fast.parallel` — slices of the ensemble side by side in threads, one per core
  (CPU).
- :mod:`flossrun.fast.jit` — TorchScript for the kernels' step loops (no GIL), with a Python
  fallback.
- :mod:`flossrun.fast.runtime` — :func:`configure_cpu`, process settings for CPU runs.

Every kernel is checked against the plain autograd computation in ``tests/test_fast_paths.py``.
"""

from flossrun.fast.bptt import vanilla_rnn
from flossrun.fast.floss import vanilla_lyapunov
from flossrun.fast.qr import cholesky_qr, cholesky_qr_factor
from flossrun.fast.runtime import configure_cpu

__all__ = ["cholesky_qr", "cholesky_qr_factor", "configure_cpu", "vanilla_lyapunov", "vanilla_rnn"]
