"""Spectrum rows of ``make bench``: time and peak memory of a full Lyapunov spectrum (k = N).

One lone vanilla network (g = 3, float64, zero input, ``h0 [1, 1, N]``) per row, each row in a
fresh subprocess so its peak resident memory (``VmHWM``, else ``ru_maxrss``) is its own. Without
grad (``torch.no_grad()``): ``lyapunov_spectrum`` over ``T_NOGRAD`` steps after a transient of
``TRANSIENT``; with grad (parameters requiring grad): ``T_GRAD`` steps after the same transient,
then the backward pass of ``Σ λ_i`` — forward and backward are timed together. The default path
(``orthonormalize="auto"``: the fused vanilla kernel) unless ``--orthonormalize`` says otherwise.
The process runs as a script of the user's would: without :func:`flossrun.fast.configure_cpu`
unless ``--configure-cpu`` (the CLI's heap setting, which keeps freed blocks in the process;
docs/performance.md).

    .venv/bin/python scripts/bench_spectrum.py                    # N = 256, 512, 1024
    .venv/bin/python scripts/bench.py --spectrum                 # the same, from make's bench
    .venv/bin/python scripts/bench_spectrum.py --N 1000 --no-grad-only --T 2000 --transient 100
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import torch

from flossrun.fast import configure_cpu
from flossrun.lyapunov import lyapunov_spectrum
from flossrun.models import VanillaRNN

SIZES = (256, 512, 1024)
TRANSIENT, T_NOGRAD, T_GRAD, GAIN = 20, 100, 10, 3.0  # make bench sizes (steps); g


def _peak_rss_mib() -> float:
    """Peak resident memory of this process (MiB): ``VmHWM`` on Linux, else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, else KiB


@dataclass(frozen=True)
class Row:
    """One measurement: a full spectrum of an ``N``-unit network over ``transient + T`` steps,
    with or without ``grad``; ``threads > 0`` sets torch's threads, ``orth`` the
    orthonormalisation, ``heap`` calls :func:`configure_cpu` first, as the CLI does."""

    N: int
    T: int
    grad: bool
    threads: int = 0
    transient: int = TRANSIENT
    orth: str = "auto"
    heap: bool = False


def spectrum_child(row: Row) -> dict[str, float]:
    """``row`` measured in this process: seconds, peak MiB before (model built) and after, and
    λ_1 (nats/step)."""
    if row.heap:
        configure_cpu()
    if row.threads > 0:
        torch.set_num_threads(row.threads)
    N, T, transient = row.N, row.T, row.transient
    model = VanillaRNN(N, 1, 1, seeds=[0], g=GAIN, dtype=torch.float64)
    model.requires_grad_(row.grad)
    h0 = model.initial_state(1).detach()  # [1, 1, N]
    x = torch.zeros(transient + T, 1, 1, 1, dtype=torch.float64)
    base = _peak_rss_mib()
    t0 = time.perf_counter()
    with torch.set_grad_enabled(row.grad):
        lam = lyapunov_spectrum(model, h0, x, N, transient=transient, orthonormalize=row.orth)
        lam = lam.exponents
        if row.grad:
            lam.sum().backward()
    seconds = time.perf_counter() - t0
    top = lam.detach().flatten().sort(descending=True).values
    return {"s": seconds, "base_mib": base, "peak_mib": _peak_rss_mib(), "lambda_1": top[0].item()}


def run_row(row: Row) -> dict[str, float]:
    """``spectrum_child`` in a fresh interpreter (its own peak memory)."""
    cmd = [sys.executable, __file__, "--_child", json.dumps(asdict(row))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def spectrum_rows(
    sizes=SIZES,
    T_nograd: int = T_NOGRAD,
    T_grad: int = T_GRAD,
    grad: bool = True,
    threads: int = 0,
    transient: int = TRANSIENT,
    orth: str = "auto",
    heap: bool = False,
) -> list[str]:
    """The table: one row per (N, grad) with T, seconds, ms per step and peak memory."""
    lines = [
        f"full spectrum k = N, vanilla g = {GAIN:g}, float64, one network, transient {transient}, "
        f"orthonormalize={orth}, one intra-op thread (a lone network's slice), "
        f"configure_cpu {'on' if heap else 'off'}",
        f"{'N':>5} {'grad':>5} {'T':>5} {'seconds':>8} {'ms/step':>8} {'peak MiB':>9} "
        f"{'Δ MiB':>8} {'λ_1':>8}",
    ]
    print("\n".join(lines), flush=True)
    for N in sizes:
        for g in (False, True) if grad else (False,):
            T = T_grad if g else T_nograd
            r = run_row(Row(N, T, g, threads, transient, orth, heap))
            ms = 1e3 * r["s"] / (transient + T)
            lines.append(
                f"{N:>5} {'yes' if g else 'no':>5} {T:>5} {r['s']:8.1f} {ms:8.2f} "
                f"{r['peak_mib']:9.0f} {r['peak_mib'] - r['base_mib']:8.0f} {r['lambda_1']:8.4f}"
            )
            print(lines[-1], flush=True)
    return lines


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of the spectrum rows (shared with ``scripts/bench.py --spectrum``)."""
    ap.add_argument("--N", default=",".join(map(str, SIZES)), help="comma-separated sizes")
    ap.add_argument("--T", type=int, default=T_NOGRAD, help="steps after the transient, no grad")
    ap.add_argument("--T-grad", type=int, default=T_GRAD, help="steps after the transient, grad")
    ap.add_argument("--transient", type=int, default=TRANSIENT, help="steps before exponents")
    ap.add_argument("--no-grad-only", action="store_true", help="skip the with-grad rows")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: the default)")
    ap.add_argument("--orthonormalize", default="auto", help="auto | householder | cholesky")
    ap.add_argument(
        "--configure-cpu", action="store_true", help="the CLI's heap setting (configure_cpu)"
    )


def rows_from(args: argparse.Namespace) -> list[str]:
    sizes = [int(n) for n in args.N.split(",")]
    return spectrum_rows(
        sizes, args.T, args.T_grad, not args.no_grad_only, args.threads, args.transient,
        args.orthonormalize, args.configure_cpu,
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        print(json.dumps(spectrum_child(Row(**json.loads(args._child)))))
        return
    rows_from(args)  # prints each row as it comes


if __name__ == "__main__":
    main()
