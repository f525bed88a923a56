"""An independent plain-PyTorch check of the orthogonal RNN on the delayed XOR (docs/pilots.md).

Not flossrun code: its own task, model and training loop, so that a result seen through flossrun
can be told apart from a flossrun defect. ``R`` networks train at once (one leading axis):

    h_t = f(W h_{t-1} + V x_t + c),   W = exp(A − Aᵀ) (orthogonal),   z_t = readout(h_t)

``--cell modrelu`` is expRNN's modReLU (``sign(u) relu(|u| + b)``, no ``c``, as flossrun's
``model=orthogonal``); ``--cell tanh`` is tanh with a bias ``c``; ``--readout mlp`` puts one
hidden ReLU layer (N units) before the output. Task: fair 0/1 bits, target
``x_{t−d/2} XOR x_{t−d}`` for t ≥ d (copy: ``x_{t−d}``), BCE and accuracy over those steps.
Adam, gradients clipped to norm 0.03 per tensor and network (as flossrun's train.clip).
Prints one line per evaluation: epoch, accuracy per network (2048 held-out sequences).
"""

from __future__ import annotations

import argparse
import math

import torch


def batch(gen: torch.Generator, R: int, B: int, T: int, d: int, xor: bool):
    x = torch.randint(0, 2, (T, R, B, 1), generator=gen).double()
    y = torch.zeros_like(x)
    y[d:] = x[: T - d] if not xor else (x[d // 2 : T - d // 2] != x[: T - d]).double()
    return x, y


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cell", choices=["modrelu", "tanh"], default="modrelu")
    p.add_argument("--readout", choices=["linear", "mlp"], default="linear")
    p.add_argument("--task", choices=["xor", "copy"], default="xor")
    p.add_argument("--delay", type=int, default=12)
    p.add_argument("--N", type=int, default=32)
    p.add_argument("--T", type=int, default=60)
    p.add_argument("--R", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--epochs", type=int, default=2000)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(a.seed)
    R, N, d = a.R, a.N, a.delay
    A = torch.zeros(R, N, N, dtype=torch.float64)
    i = torch.arange(0, N - 1, 2)
    A[:, i, i + 1] = (torch.rand(R, len(i), generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    params = {
        "A": A,
        "V": torch.randn(R, N, 1, generator=g, dtype=torch.float64) * 2**0.5,
        "b": (torch.rand(R, N, generator=g, dtype=torch.float64) * 2 - 1) * 0.01,
        "c": torch.zeros(R, N, dtype=torch.float64),
        "U": torch.randn(R, N, N, generator=g, dtype=torch.float64) * (2 / N) ** 0.5,
        "u": torch.zeros(R, N, dtype=torch.float64),
        "w": (torch.rand(R, 1, N, generator=g, dtype=torch.float64) * 2 - 1) * N**-0.5,
        "w0": torch.zeros(R, 1, dtype=torch.float64),
    }
    used = ["A", "V", "w", "w0"] + (["b"] if a.cell == "modrelu" else ["c"])
    used += ["U", "u"] if a.readout == "mlp" else []
    for k in used:
        params[k].requires_grad_(True)
    opt = torch.optim.Adam([params[k] for k in used], lr=a.lr)

    def run(x: torch.Tensor) -> torch.Tensor:
        W = torch.linalg.matrix_exp(params["A"] - params["A"].transpose(1, 2))
        h = torch.zeros(R, x.shape[2], N, dtype=x.dtype)
        zs = []
        for t in range(x.shape[0]):
            u = h @ W.transpose(1, 2) + x[t] @ params["V"].transpose(1, 2)
            if a.cell == "modrelu":
                h = torch.sign(u) * torch.relu(u.abs() + params["b"][:, None])
            else:
                h = torch.tanh(u + params["c"][:, None])
            r = h
            if a.readout == "mlp":
                r = torch.relu(h @ params["U"].transpose(1, 2) + params["u"][:, None])
            zs.append(r @ params["w"].transpose(1, 2) + params["w0"][:, None])
        return torch.stack(zs)  # [T, R, B, 1]

    xt, yt = batch(torch.Generator().manual_seed(10**6 + a.seed), R, 2048, a.T, d, a.task == "xor")
    for epoch in range(1, a.epochs + 1):
        x, y = batch(g, R, 16, a.T, d, a.task == "xor")
        z = run(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z[d:], y[d:], reduction="none")
        opt.zero_grad()
        loss.mean((0, 2, 3)).sum().backward()
        with torch.no_grad():
            for k in used:  # clip each tensor's gradient to norm 0.03 per network
                gr = params[k].grad
                norm = gr.flatten(1).norm(dim=1).clamp_min(1e-12)
                gr.mul_((0.03 / norm).clamp(max=1).view(-1, *[1] * (gr.dim() - 1)))
        opt.step()
        if epoch % a.every == 0:
            with torch.no_grad():
                acc = ((run(xt)[d:] > 0).double() == yt[d:]).double().mean((0, 2, 3))
            print(epoch, " ".join(f"{v:.3f}" for v in acc.tolist()), flush=True)


if __name__ == "__main__":
    main()
