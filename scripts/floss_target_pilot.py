"""Pilot for the ``regions`` preset (docs/pilots.md): can gradient flossing place a vanilla RNN at
a positive λ1? An independent minimal implementation, sharing no code with flossrun.

One tanh network h_t = W tanh(h_{t−1}) + V x_t + b (N units, W ~ N(0, g²/N), V ~ N(0, 1),
b ~ U(0, 0.1)), driven by random ±1 bits (or zero input); per flossing epoch the largest
Lyapunov exponent of one fresh sequence by the QR (Benettin) recursion over ``steps`` steps
after ``transient``; loss (λ1 − λ*)², one Adam step on W, V, b. Every ``every`` epochs it
prints the flossed estimate and λ1 from a long run (1000 steps after 200, no grad).

Run: python scripts/floss_target_pilot.py --gain 1 --target 0.2 [--lr 1e-2] [--input zero]
"""

from __future__ import annotations

import argparse

import torch


def drive(kind: str, steps: int, gen: torch.Generator) -> torch.Tensor:
    """``[steps]`` inputs: random ±1 bits or zeros."""
    if kind == "zero":
        return torch.zeros(steps, dtype=torch.float64)
    return torch.randint(0, 2, (steps,), generator=gen).double() * 2 - 1


def lambda_1(W, V, b, x: torch.Tensor, transient: int, gen: torch.Generator) -> torch.Tensor:
    """λ1 (nats/step) of one sequence ``x [T]`` from a random state, differentiable."""
    N = W.shape[0]
    h = torch.randn(N, generator=gen, dtype=torch.float64)
    q = torch.randn(N, 1, generator=gen, dtype=torch.float64)
    q = q / q.norm()
    total = torch.zeros((), dtype=torch.float64)
    for t in range(len(x)):
        phi = torch.tanh(h)
        h = W @ phi + V * x[t] + b
        q, r = torch.linalg.qr(W @ ((1 - phi**2)[:, None] * q))  # D_t q = W diag(φ') q
        if t >= transient:
            total = total + r.diagonal().abs().log().sum()
    return total / (len(x) - transient)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=32, help="hidden units")
    ap.add_argument("--gain", type=float, default=1.0, help="initial gain g")
    ap.add_argument("--target", type=float, default=0.2, help="λ* (nats/step)")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    ap.add_argument("--epochs", type=int, default=600, help="flossing epochs")
    ap.add_argument("--steps", type=int, default=55, help="steps per flossing sequence")
    ap.add_argument("--transient", type=int, default=16, help="steps before λ1 accumulates")
    ap.add_argument("--input", choices=("bits", "zero"), default="bits", help="drive")
    ap.add_argument("--every", type=int, default=100, help="epochs between printed rows")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    gen = torch.Generator().manual_seed(a.seed)
    f64 = torch.float64
    W = (torch.randn(a.N, a.N, generator=gen, dtype=f64) * a.gain / a.N**0.5).requires_grad_()
    V = torch.randn(a.N, generator=gen, dtype=f64).requires_grad_()
    b = (torch.rand(a.N, generator=gen, dtype=f64) * 0.1).requires_grad_()
    opt = torch.optim.Adam([W, V, b], lr=a.lr)
    print(f"g={a.gain} target={a.target} lr={a.lr} input={a.input} N={a.N}")
    print("epoch  lambda_1_floss  lambda_1_long  |W|_F/sqrt(N)")
    for epoch in range(1, a.epochs + 1):
        lam = lambda_1(W, V, b, drive(a.input, a.steps, gen), a.transient, gen)
        opt.zero_grad()
        ((lam - a.target) ** 2).backward()
        opt.step()
        if epoch % a.every == 0:
            with torch.no_grad():
                long = lambda_1(W, V, b, drive(a.input, 1200, gen), 200, gen)
            size = float(W.detach().norm()) / a.N**0.5
            print(f"{epoch:5d}  {float(lam.detach()):+14.3f}  {float(long):+13.3f}  {size:13.2f}")


if __name__ == "__main__":
    main()
