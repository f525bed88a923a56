"""Memory of a Lyapunov pass without autograd does not grow with the number of steps beyond the
input drive: no trace is kept, the logs go into one buffer, and a lone realization's weights
are paired once per pass (not per product, whose temporaries left glibc's heap growing with
every step). Peak resident memory in a fresh process (not a timed test)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

CODE = textwrap.dedent(
    """
    import resource, sys, torch
    from flossrun.lyapunov import lyapunov_spectrum
    from flossrun.models import build_model
    torch.set_num_threads(1)
    name, N = sys.argv[1], int(sys.argv[2])
    model = build_model({"name": name, "N": N}, 1, 1, [0], dtype=torch.float64)
    def peak_after(T):
        x = torch.zeros(T, 1, dtype=torch.float64)
        with torch.no_grad():
            lyapunov_spectrum(model, model.h0.detach(), x, 4, seed=0)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_after(50)  # warm-up: libraries, TorchScript compilation
    short = peak_after(300)
    long = peak_after(3000)
    print(short, long)
    """
)


@pytest.mark.parametrize(("name", "drive"), [("vanilla", 1), ("lstm", 4), ("gru", 0)])
def test_no_grad_memory_does_not_grow_with_the_number_of_steps(name, drive):
    """N = 32: from 300 to 3000 steps the peak grows by less than the input drive ``V x_t + b``
    (``drive``·N numbers a step, computed up front by the fused kernels; the generic path has
    none) plus 6 MB (glibc heap slack). A trace would add 14 MB (vanilla, k = 4) to 90 MB
    (LSTM), a copy of the GRU's weights per step 130 MB."""
    proc = subprocess.run(
        [sys.executable, "-c", CODE, name, "32"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    short, long = (float(v) for v in proc.stdout.split())
    drive_mb = 2700 * drive * 32 * 8 / 2**20
    assert long - short < drive_mb + 6.0, (name, short, long, drive_mb)
