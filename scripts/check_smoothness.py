"""Independent check of analysis=smoothness on the chaotic 2-unit LSTM (docs/design.md §11).

Own LSTM equations (torch.nn.LSTM gate order, torch.sigmoid/tanh) and forward-mode AD (jvp of
jvp) instead of flossrun's model and reverse-mode double backward, with its own s = 1
reference. Prints, for a few windows of a finished ``experiment=smoothness
variant=smoothness_chaotic`` run, the growth rates of ln L and ln L_g both ways (they agree
statistically only: past ~150 steps rounding differences grow by e^{λ1 t}, so the two follow
different chaotic trajectories), and the exact agreement of V′, V″ at T ≤ 30.

Usage: python scripts/check_smoothness.py [path/to/smoothness_rates.csv]
"""

from __future__ import annotations

import csv
import sys

import torch
from torch.func import jvp

from flossrun.analyses import landscape as ls
from flossrun.analyses import smoothness as sm

W0 = torch.tensor(ls.CHAOTIC_W, dtype=torch.float64)
RATES = "outputs/smoothness/quick/variant=smoothness_chaotic/smoothness_rates.csv"
WINDOWS = (5, 6, 7, 10, 16, 0, 26)


def trajectory(s: torch.Tensor, T: int) -> torch.Tensor:
    """h_1..h_T ``[T, P, 2]`` of the LSTM with W = s·W_chaotic, h0 = c0 = 0.5, zero input."""
    W = s[:, None, None] * W0
    h = torch.full((len(s), 2), 0.5, dtype=torch.float64)
    c, hs = h.clone(), []
    for _ in range(T):
        a = torch.einsum("pij,pj->pi", W, h)
        i, f, g, o = a[:, 0:2], a[:, 2:4], a[:, 4:6], a[:, 6:8]
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        hs.append(h)
    return torch.stack(hs)


def derivatives(s: torch.Tensor, H: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """V′ and V″ ``[H, P]`` by forward-mode AD."""
    ref = trajectory(torch.ones(1, dtype=torch.float64), max(H))

    def V(s):
        sq = (trajectory(s, max(H)) - ref).square().mean(2).cumsum(0)
        return torch.stack([sq[T - 1] / T for T in H])

    def dV(s):
        return jvp(V, (s,), (torch.ones_like(s),))[1]

    return dV(s), jvp(dV, (s,), (torch.ones_like(s),))[1]


def main(path: str) -> None:
    torch.set_num_threads(1)
    H = [25, 50, 100, 150, 200, 250, 300, 350, 400]
    fit = [T for T in H if T >= 100]
    rows = {int(r["window"]): r for r in csv.DictReader(open(path))}
    s_all = torch.linspace(0.8, 1.5, 1400, dtype=torch.float64)
    for w in WINDOWS:
        r = rows[w]
        lo, hi = float(r["s_low"]), float(r["s_high"])
        g1, g2 = derivatives(s_all[(s_all >= lo) & (s_all < hi)], H)
        rates = [sm.growth_rate(fit, g.abs().max(1).values[H.index(fit[0]) :]) for g in (g1, g2)]
        print(
            f"window {w} s∈[{lo:.2f},{hi:.2f}] λ1 {float(r['lambda_1']):+.3f} "
            f"(max {float(r['lambda_1_max']):+.3f}): independent rates L {rates[0]:+.4f}, "
            f"L_g {rates[1]:+.4f}; flossrun {float(r['rate_L']):+.4f}, "
            f"{float(r['rate_L_g']):+.4f}"
        )
    net, Hs = ls.chaotic_lstm(0), [10, 20, 30]
    cost = sm.state_cost(net, torch.zeros(30, 1, 1, dtype=torch.float64), Hs)
    theta = ls.parameters_of(net, ls.CHAOTIC_PARAMS)
    zero = {k: torch.zeros_like(v) for k, v in theta.items()}
    pts = torch.tensor([0.93, 1.05, 1.2, 1.6], dtype=torch.float64)
    _, d1, d2 = sm.path_derivatives(cost, zero, theta, pts)
    g1, g2 = derivatives(pts, Hs)
    e1 = ((g1 - d1).abs() / d1.abs()).max().item()
    e2 = ((g2 - d2).abs() / d2.abs()).max().item()
    print(f"T <= 30: max relative difference V′ {e1:.1e}, V″ {e2:.1e}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else RATES)
