"""LSTM rows of ``make bench``: flossrun's generic model path against a per-network loop.

At N = 80 (state D = 2N = 160), B = 16, T = 300, delayed XOR d = 20; flossing k = 75 over 55
steps after a transient of 16. The reference is one LSTM as plain tensors, a Python loop over
time under autograd (training: each tensor's gradient clipped to norm 0.03; flossing: the
analytic tangent of one network and ``torch.linalg.qr`` every step), Adam. flossrun's epochs
are :func:`flossrun.training.train_epoch` / ``floss_epoch`` on ``model=lstm`` ensembles.

    .venv/bin/python scripts/bench_lstm.py --R 1,16        # alone; scripts/bench.py calls it too
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from flossrun import seeding, training
from flossrun.fast import configure_cpu
from flossrun.lyapunov import initial_frame
from flossrun.models import build_model
from flossrun.tasks import make_task

N, D, S, O = 80, 160, 1, 1  # hidden units, state size (h, c), input channels, outputs
B, T, DELAY = 16, 300, 20  # training batch, sequence length (steps), delayed-XOR delay
K, FLOSS_STEPS, TRANSIENT = 75, 55, 16  # flossed exponents, steps, transient
CLIP, LR = 0.03, 1e-3


def dsig(a: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(a) * torch.sigmoid(-a)


def ref_gates(p, h, c, x):
    """One network's gate pre-activations and its next state, ``h, c [n, N]``."""
    a = x @ p["V"].T + h @ p["W"].T + p["b"]
    i, f, g, o = a.chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return (i, f, g, o), torch.sigmoid(o) * torch.tanh(c), c


def reference_train_epoch(p, x, y, opt) -> float:
    """One training epoch of one LSTM: ``x, y [T, B, S]``; returns the loss."""
    h, c = p["h0"][:N].expand(x.shape[1], N), p["h0"][N:].expand(x.shape[1], N)
    hs = []
    for t in range(x.shape[0]):
        _, h, c = ref_gates(p, h, c, x[t])
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
    """One flossing epoch of one LSTM: ``x [T, 1, S]``, frame ``Q [D, K]``."""
    h, c = p["h0"].detach()[None, :N], p["h0"].detach()[None, N:]  # [1, N]
    logs = 0.0
    for t in range(x.shape[0]):
        (i, f, g, o), h_new, c_new = ref_gates(p, h, c, x[t])
        i, f, g, o, c_, cn = (v[0, :, None] for v in (i, f, g, o, c, c_new))
        da = p["W"] @ Q[:N]  # [4N, K]
        di, df, dg, do = da.chunk(4, 0)
        dc = torch.sigmoid(f) * Q[N:] + c_ * dsig(f) * df
        dc = dc + torch.tanh(g) * dsig(i) * di + torch.sigmoid(i) / torch.cosh(g) ** 2 * dg
        dh = torch.tanh(cn) * dsig(o) * do + torch.sigmoid(o) / torch.cosh(cn) ** 2 * dc
        Q, R = torch.linalg.qr(torch.cat([dh, dc], 0))
        h, c = h_new, c_new
        if t + 1 > TRANSIENT:
            logs = logs + torch.log(torch.abs(torch.diagonal(R)))
    lam = logs / (x.shape[0] - TRANSIENT)
    loss = (lam**2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item(), lam.detach()


class LSTMSetup:
    """Model, optimisers and one batch of data for ``R`` LSTMs (``R = 0``: the reference)."""

    def __init__(self, R: int, seed: int = 0):
        self.R = R
        seeds = self.seeds = seeding.realization_seeds(seed, max(R, 1))
        self.task = make_task("delayed_xor", DELAY, T=T)
        self.model = build_model({"name": "lstm", "N": N}, S, O, seeds)
        self.x, self.y = self.task.sample(seeding.generators(seeds, "train"), B)
        xf, _ = self.task.sample(seeding.generators(seeds, "floss"), 1)
        self.xf = xf[:FLOSS_STEPS]
        if R == 0:
            self.p = {n: q.detach()[0].clone().requires_grad_(True) for n, q in
                      self.model.named_parameters()}  # fmt: skip
            self.opt = torch.optim.Adam(self.p.values(), lr=LR)
            self.fopt = torch.optim.Adam([self.p[n] for n in ("W", "V", "b")], lr=LR)
            self.Q0 = initial_frame((1, 1, D, K), [seed], torch.float32, torch.device("cpu"))[0, 0]
        else:
            self.opt = training.make_adam(list(self.model.parameters()), LR)
            self.fopt = training.make_adam(self.model.floss_parameters(), LR)
            self.alive = torch.ones(R, dtype=torch.bool)

    def train(self):
        if self.R == 0:
            return reference_train_epoch(self.p, self.x[:, 0], self.y[:, 0], self.opt)
        m = self.model
        return training.train_epoch(m, self.task, self.x, self.y, self.opt, CLIP, self.alive)

    def floss(self):
        if self.R == 0:
            return reference_floss_epoch(self.p, self.xf[:, 0], self.Q0, self.fopt)
        frames = seeding.generators(self.seeds, "frame")
        m, x = self.model, self.xf
        return training.floss_epoch(m, x, K, TRANSIENT, 0.0, self.fopt, self.alive, frames=frames)


def exactness() -> list[str]:
    """Reference and flossrun R = 1 (same tensors, inputs, frame): loss and exponents agree."""
    ref, fr = LSTMSetup(0), LSTMSetup(1)
    l_ref, l_fr = ref.train(), fr.train()["loss"][0].item()
    ref, fr = LSTMSetup(0), LSTMSetup(1)
    (fl_ref, lam_ref), out = ref.floss(), fr.floss()
    lam_fr = out["exponents"][0, 0]
    err = ((lam_ref - lam_fr).abs().max() / lam_ref.abs().max()).item()
    ok = abs(l_ref - l_fr) <= 1e-5 * abs(l_ref) and err <= 1e-4
    return [
        f"LSTM training loss  reference {l_ref:.9f}  flossrun {l_fr:.9f}",
        f"LSTM flossing loss  reference {fl_ref:.9f}  flossrun {out['loss'][0].item():.9f}",
        f"LSTM exponents (k={K})  max |Δλ| / max |λ| = {err:.1e}  (λ_1 = {lam_ref[0]:.5f})",
        "LSTM exactness: OK" if ok else "LSTM exactness: MISMATCH",
    ]


def timed(fn, budget_s: float) -> float:
    """Seconds per call over as many calls as fit in ``budget_s``."""
    start, n = time.perf_counter(), 0
    while True:
        fn()
        n += 1
        if (elapsed := time.perf_counter() - start) >= budget_s:
            return elapsed / n


def lstm_rows(Rs: list[int], repeats: int, budget: float) -> list[str]:
    """The LSTM table: ms per network-epoch and speed-up over the reference (medians)."""
    setups = {R: LSTMSetup(R) for R in [0, *Rs]}
    times = {(kind, R): [] for kind in ("train", "floss") for R in setups}
    for s in setups.values():  # warm-up
        s.train(), s.floss()
    for _ in range(repeats):
        for kind in ("train", "floss"):
            for R, s in setups.items():
                fn = s.train if kind == "train" else s.floss
                times[(kind, R)].append(timed(fn, budget) / max(R, 1))
    per_net = {key: statistics.median(v) for key, v in times.items()}
    lines = [f"{'LSTM':<6} {'R':>5} {'ms/net-epoch':>13} {'speed-up':>9}"]
    for kind in ("train", "floss"):
        for R in setups:
            t = per_net[(kind, R)]
            name = "ref" if R == 0 else str(R)
            lines.append(f"{kind:<6} {name:>5} {t * 1e3:13.3f} {per_net[(kind, 0)] / t:8.1f}x")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--R", default="1,16", help="comma-separated ensemble sizes")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = ap.parse_args()
    configure_cpu(threads=args.threads)
    print(f"LSTM N={N} (D={D}) B={B} T={T}; flossing k={K}, {FLOSS_STEPS} steps, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print("\n".join(exactness()))
    Rs = [int(r) for r in args.R.split(",")]
    print("\n".join(lstm_rows(Rs, args.repeats, 1.0)))


if __name__ == "__main__":
    main()
