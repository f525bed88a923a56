"""Speed, memory and exactness of flossrun's training and flossing epochs (``make bench``).

At the paper's sizes (N = 80, B = 16, T = 300, delayed XOR d = 20; flossing k = 75 over 55 steps
after a transient of 16, a QR every step, one sequence) it times, interleaved in one process,

- a straightforward reference: one network as plain tensors, a Python loop over time under
  autograd, ``torch.linalg.qr`` at every flossing step, Adam (training: each tensor's gradient
  clipped to norm 0.03);
- flossrun's own epochs (:func:`flossrun.training.train_epoch` / ``floss_epoch``) for
  ensembles of R networks,

and prints ms per network-epoch, the speed-up over the reference, the achieved GFLOP/s
(analytic count) as a fraction of this machine's measured matmul rate, the peak memory (one
subprocess per configuration), an exactness check (reference and flossrun R = 1 from the same
initial tensors, inputs and frame give the same loss and exponents) and an estimate of the
wall time of ``make figures SCALE=paper``.

    .venv/bin/python scripts/bench.py                       # CPU, R = 1, 16, 64
    .venv/bin/python scripts/bench.py --device cuda --R 1,16,64,256,1024
    .venv/bin/python scripts/bench.py --quick               # smoke test
    .venv/bin/python scripts/bench.py --spectrum            # only the full-spectrum rows

Then the LSTM rows (:mod:`bench_lstm`, ``model=lstm``, N = 80, D = 160, k = 75): flossrun's
generic model path against a per-network LSTM loop, timed the same way (``--no-lstm`` skips).

``--spectrum`` prints instead the full-spectrum rows (:mod:`bench_spectrum`): time and peak
memory of k = N at N = 256, 512, 1024, with and without grad, float64, one subprocess per row
(options ``--N``, ``--T``, ``--T-grad``, ``--transient``, ``--threads``, ``--orthonormalize``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import bench_spectrum
import torch
import torch.nn.functional as F

from flossrun import seeding, training
from flossrun.fast import configure_cpu
from flossrun.flossing import floss_exponents, flossing_loss
from flossrun.lyapunov import initial_frame
from flossrun.models import VanillaRNN, dtanh
from flossrun.tasks import make_task

# --- the paper's sizes ----------------------------------------------------------------------
N, S, O = 80, 1, 1  # hidden units, input channels, outputs
B, T, DELAY = 16, 300, 20  # training batch, sequence length (steps), delayed-XOR delay
K, FLOSS_STEPS, TRANSIENT, FLOSS_BATCH = 75, 55, 16, 1  # flossed exponents, steps, transient
CLIP, LR = 0.03, 1e-3  # per-tensor gradient clip (training), Adam learning rate

# --- estimate of `make figures SCALE=paper`, in network-epochs ------------------------------
# Assumed paper-scale grids (docs/design.md §8; the paper does not publish every grid):
# 10 realizations per setting, 10^4 training epochs, 500 preflossing epochs, pre_during adds
# 2 phases of 500; 6 delays per task; flossing counted at k = 75 (smaller k is cheaper);
# LSTM/GRU counted at vanilla cost (they are ~3-4x dearer); evaluation (512 test sequences every
# 100 epochs, forward only) adds ~10 % to training. Orbit-diagram and loss-landscape presets are
# small.
REALIZ, EPOCHS, PRE, PHASES = 10, 10_000, 500, 2 * 500
PAPER_NETWORK_EPOCHS = {  # preset: (training network-epochs, flossing network-epochs)
    "lyapunov_control": (0, 3 * REALIZ * 100),  # 3 targets, ~100 flossing epochs
    "spectrum_k": (0, 4 * REALIZ * PRE),  # k in {1, 16, 32, 75}
    "jacobian": (2 * REALIZ * EPOCHS, REALIZ * PRE),  # flossed vs unflossed
    "preflossing": (2 * 6 * 2 * REALIZ * EPOCHS, 2 * 6 * REALIZ * PRE),  # 2 tasks, none/pre
    "during_training": (6 * 3 * REALIZ * EPOCHS, 6 * REALIZ * (2 * PRE + PHASES)),
    "k_sweep": (2 * 8 * REALIZ * EPOCHS, 2 * 7 * REALIZ * PRE),  # k in {0, 1, ..., 75}
    "temporal_complexity": (3 * 6 * 2 * REALIZ * EPOCHS, 3 * 6 * REALIZ * PRE),
    "architectures": (4 * 6 * 2 * REALIZ * EPOCHS, 4 * 6 * REALIZ * PRE),
}
EVAL_OVERHEAD = 1.1


# --- analytic flop counts (multiply-add = 2 flops; backward = 2 x forward) ------------------
def train_flops() -> float:
    """Flops of one training epoch of one network: recurrence, input drive and readout."""
    forward = T * B * (2 * N * N + 2 * N * S + 2 * N * O)
    return 3.0 * forward


def floss_flops() -> float:
    """Flops of one flossing epoch of one network (QR counted as Householder, 2Nk² − 2k³/3)."""
    qr = 2 * N * K * K - 2 * K**3 / 3
    forward = FLOSS_STEPS * FLOSS_BATCH * (2 * N * N * K + qr + 2 * N * N + 2 * N * S)
    return 3.0 * forward


# --- the straightforward reference -----------------------------------------------------------
def reference_params(model: VanillaRNN) -> dict[str, torch.Tensor]:
    """Realization 0 of ``model`` as plain leaf tensors (``W [N, N]``, ..., ``h0 [N]``)."""
    return {n: p.detach()[0].clone().requires_grad_(True) for n, p in model.named_parameters()}


def reference_train_epoch(p, x, y, opt) -> float:
    """One training epoch of one network: ``x, y [T, B, S]``; returns the loss."""
    h = p["h0"].expand(x.shape[1], N)
    hs = []
    for t in range(x.shape[0]):
        h = torch.tanh(h) @ p["W"].T + x[t] @ p["V"].T + p["b"]
        hs.append(h)
    z = torch.stack(hs) @ p["w_out"].T + p["b_out"]
    loss = F.binary_cross_entropy_with_logits(z[DELAY:], y[DELAY:])
    opt.zero_grad()
    loss.backward()
    for q in p.values():
        torch.nn.utils.clip_grad_norm_([q], CLIP)
    opt.step()
    return loss.item()


def reference_floss_epoch(p, x, Q, opt) -> tuple[float, torch.Tensor]:
    """One flossing epoch of one network: ``x [T, 1, S]``, frame ``Q [N, K]``."""
    h = p["h0"].detach()[None]  # [1, N]
    logs = 0.0
    for t in range(x.shape[0]):
        A = p["W"] @ (dtanh(h)[0][:, None] * Q)
        h = torch.tanh(h) @ p["W"].T + x[t] @ p["V"].T + p["b"]
        Q, R = torch.linalg.qr(A)
        if t + 1 > TRANSIENT:
            logs = logs + torch.log(torch.abs(torch.diagonal(R)))
    lam = logs / (x.shape[0] - TRANSIENT)
    loss = (lam**2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item(), lam.detach()


# --- flossrun's epochs ------------------------------------------------------------------------
def flossrun_train_epoch(model, task, x, y, opt, alive):
    """:func:`flossrun.training.train_epoch` (or the same steps inline if it is missing)."""
    if hasattr(training, "train_epoch"):
        return training.train_epoch(model, task, x, y, opt, CLIP, alive)
    opt.zero_grad()
    loss = task.loss(model.logits(model(x)), y)
    loss.sum().backward()
    for q in model.parameters():
        norms = q.grad.reshape(q.shape[0], -1).norm(dim=1)
        q.grad.mul_((CLIP / (norms + 1e-6)).clamp(max=1.0).reshape(-1, *[1] * (q.dim() - 1)))
    opt.step()
    return {"loss": loss.detach()}


def flossrun_floss_epoch(model, x, opt, alive, frames):
    """:func:`flossrun.training.floss_epoch` (or the same steps inline if it is missing)."""
    if hasattr(training, "floss_epoch"):
        return training.floss_epoch(model, x, K, TRANSIENT, 0.0, opt, alive, frames=frames)
    opt.zero_grad()
    lam = floss_exponents(model, x, K, TRANSIENT, frames)
    loss = flossing_loss(lam, 0.0)
    loss.sum().backward()
    opt.step()
    return {"loss": loss.detach(), "exponents": lam.detach()}


# --- set-ups shared by timing and memory runs -------------------------------------------------
class Setup:
    """Model, optimisers and one batch of data for ``R`` networks (``R = 0``: the reference)."""

    def __init__(self, R: int, device: str, seed: int = 0):
        self.R, self.device = R, torch.device(device)
        seeds = seeding.realization_seeds(seed, max(R, 1))
        self.task = make_task("delayed_xor", DELAY, T=T)
        self.model = VanillaRNN(N, S, O, seeds, device=device)
        self.x, self.y = self.task.sample(seeding.generators(seeds, "train"), B, device=device)
        xf, _ = self.task.sample(seeding.generators(seeds, "floss"), FLOSS_BATCH, device=device)
        self.xf = xf[:FLOSS_STEPS]
        self.seeds = seeds
        if R == 0:  # the reference: realization 0 as plain tensors
            self.p = reference_params(self.model)
            self.opt = torch.optim.Adam(self.p.values(), lr=LR)
            self.fopt = torch.optim.Adam([self.p[n] for n in ("W", "V", "b")], lr=LR)
            frame = initial_frame((1, FLOSS_BATCH, N, K), [seed], torch.float32, self.device)
            self.Q0 = frame[0, 0]
        else:
            self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
            self.fopt = torch.optim.Adam(self.model.floss_parameters(), lr=LR)
            self.alive = torch.ones(R, dtype=torch.bool, device=device)

    def train(self):
        if self.R == 0:
            return reference_train_epoch(self.p, self.x[:, 0], self.y[:, 0], self.opt)
        return flossrun_train_epoch(self.model, self.task, self.x, self.y, self.opt, self.alive)

    def floss(self):
        if self.R == 0:
            return reference_floss_epoch(self.p, self.xf[:, 0], self.Q0, self.fopt)
        frames = seeding.generators(self.seeds, "frame")
        return flossrun_floss_epoch(self.model, self.xf, self.fopt, self.alive, frames)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_epochs(setup: Setup, kind: str, budget_s: float) -> float:
    """Seconds per epoch (all R networks), over as many epochs as fit in ``budget_s``."""
    fn = setup.train if kind == "train" else setup.floss
    sync(setup.device)
    start, n = time.perf_counter(), 0
    while True:
        fn()
        n += 1
        sync(setup.device)
        elapsed = time.perf_counter() - start
        if elapsed >= budget_s:
            return elapsed / n


def matmul_rate(device: str, n: int = 2048, repeats: int = 5) -> float:
    """Measured float32 GEMM rate of the device, GFLOP/s (best of ``repeats``)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        sync(torch.device(device))
        t0 = time.perf_counter()
        a @ b
        sync(torch.device(device))
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


# --- memory: one subprocess per configuration -----------------------------------------------
def _rss_kib(field: str) -> float:
    """``VmRSS``/``VmHWM`` of this process in KiB (Linux), else ru_maxrss.

    Not ``ru_maxrss`` alone: on Linux it survives fork + exec, so a child started by a big
    parent would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _reset_high_water_mark() -> None:
    """Reset VmHWM to the current resident size (Linux ``clear_refs``; no-op elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def memory_child(kind: str, R: int, device: str) -> None:
    """Print the peak memory (MiB) one epoch adds over the set-up, as JSON."""
    configure_cpu()
    setup = Setup(R, device)
    fn = setup.train if kind == "train" else setup.floss
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        base = _rss_kib("VmRSS")
        _reset_high_water_mark()
        fn()
        fn()
        peak = (_rss_kib("VmHWM") - base) / 1024
    print(json.dumps({"peak_mib": peak}))


def peak_memory(kind: str, R: int, device: str) -> float:
    cmd = [sys.executable, __file__, "--_memory", f"{kind}:{R}", "--device", device]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


# --- checks and report ------------------------------------------------------------------------
def exactness(device: str) -> list[str]:
    """Reference and flossrun R = 1 (same tensors, inputs, frame): loss and exponents agree."""
    lines = []
    ref, fr = Setup(0, device), Setup(1, device)
    l_ref, l_fr = ref.train(), fr.train()["loss"][0].item()
    lines.append(
        f"training loss      reference {l_ref:.9f}  flossrun {l_fr:.9f}  "
        f"rel. diff {abs(l_ref - l_fr) / abs(l_ref):.1e}"
    )
    ref, fr = Setup(0, device), Setup(1, device)
    (fl_ref, lam_ref), out = ref.floss(), fr.floss()
    lam_fr = out["exponents"][0, 0].cpu()
    err = ((lam_ref.cpu() - lam_fr).abs().max() / lam_ref.abs().max()).item()
    lines.append(f"flossing loss      reference {fl_ref:.9f}  flossrun {out['loss'][0].item():.9f}")
    lines.append(f"exponents (k={K})  max |Δλ| / max |λ| = {err:.1e}  (λ_1 = {lam_ref[0]:.5f})")
    ok = abs(l_ref - l_fr) <= 1e-5 * abs(l_ref) and err <= 1e-4
    lines.append("exactness: OK" if ok else "exactness: MISMATCH")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--R", default=None, help="comma-separated ensemble sizes [cpu 1,16,64]")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds")
    ap.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    ap.add_argument("--no-lstm", action="store_true", help="skip the LSTM rows")
    ap.add_argument("--_memory", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--spectrum", action="store_true", help="only the full-spectrum rows")
    bench_spectrum.add_arguments(ap)
    args = ap.parse_args()
    if args.spectrum:
        bench_spectrum.rows_from(args)  # prints each row as it comes
        return
    if args._memory:
        kind, R = args._memory.split(":")
        memory_child(kind, int(R), args.device)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device")
    default_R = "1,16,64,256,1024" if args.device == "cuda" else "1,16,64"
    Rs = [int(r) for r in (args.R or default_R).split(",")]
    repeats = 1 if args.quick else args.repeats
    budget = 0.05 if args.quick else 0.4  # seconds of epochs per timing

    applied = configure_cpu()
    print(
        f"flossrun bench on {args.device}: torch {torch.__version__}, "
        f"{torch.get_num_threads()} intra-op / {torch.get_num_interop_threads()} inter-op threads, "
        f"allocator kept warm: {applied['mallopt']}, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"N={N} B={B} T={T} delayed XOR d={DELAY}; flossing k={K}, {FLOSS_STEPS} steps, "
        f"transient {TRANSIENT}, qr_every 1, batch {FLOSS_BATCH}\n"
    )
    for line in exactness(args.device):
        print(line)
    rate = matmul_rate(args.device)
    print(f"\nmachine: float32 GEMM 2048^3 at {rate:.0f} GFLOP/s\n")

    setups = {R: Setup(R, args.device) for R in [0, *Rs]}
    times = {(kind, R): [] for kind in ("train", "floss") for R in setups}
    for s in setups.values():  # warm-up
        s.train(), s.floss()
    for _ in range(repeats):
        for kind in ("train", "floss"):
            for R, s in setups.items():
                times[(kind, R)].append(time_epochs(s, kind, budget) / max(R, 1))
    per_net = {key: statistics.median(v) for key, v in times.items()}

    flops = {"train": train_flops(), "floss": floss_flops()}
    print(
        f"{'epoch':<6} {'R':>5} {'ms/net-epoch':>13} {'speed-up':>9} {'GFLOP/s':>8} "
        f"{'of peak':>8} {'peak MiB':>9}"
    )
    for kind in ("train", "floss"):
        for R in setups:
            t = per_net[(kind, R)]
            gf = flops[kind] / t / 1e9
            mem = 0.0 if args.quick else peak_memory(kind, R, args.device)
            name = "ref" if R == 0 else str(R)
            print(
                f"{kind:<6} {name:>5} {t * 1e3:13.3f} {per_net[(kind, 0)] / t:8.1f}x "
                f"{gf:8.1f} {gf / rate:8.1%} {mem:9.1f}"
            )

    R_est = min(Rs, key=lambda r: abs(r - REALIZ))  # presets batch their 10 realizations
    train_ne = sum(v[0] for v in PAPER_NETWORK_EPOCHS.values()) * EVAL_OVERHEAD
    floss_ne = sum(v[1] for v in PAPER_NETWORK_EPOCHS.values())

    def hours(R: int) -> float:
        return (train_ne * per_net[("train", R)] + floss_ne * per_net[("floss", R)]) / 3600

    print(
        f"\nmake figures SCALE=paper, estimated ({train_ne:.3g} training + {floss_ne:.3g} "
        f"flossing network-epochs): ~{hours(R_est):.0f} h with flossrun at R={R_est}, "
        f"~{hours(0):.0f} h with the reference loop, on this device"
    )
    if not args.no_lstm and args.device == "cpu":
        import bench_lstm

        lstm_Rs = [r for r in Rs if r <= 16] or Rs[:1]
        print(f"\nLSTM N={bench_lstm.N} (D={bench_lstm.D}), k={bench_lstm.K}, same sizes:")
        print("\n".join(bench_lstm.exactness()))
        print("\n".join(bench_lstm.lstm_rows(lstm_Rs, repeats, 2 * budget)))


if __name__ == "__main__":
    main()
