"""The Benettin pass of the vanilla RNN with a hand-written adjoint (flossing, SPEC §4–5).

Forward, for t = 1..T (``h [R, B, N]``, frame ``Q [R, B, N, k]``):

    A_t = W (φ'(h_{t-1}) ⊙ Q_{t-1}),   h_t = W φ(h_{t-1}) + u_t
    at a QR step: Q_t, R_t = qr(A_t) (Cholesky QR), log|R_t,ii| kept after the transient;
    otherwise Q_t = A_t

Backward: the frame adjoint runs back through every QR (analytic thin-QR backward, see
:mod:`flossrun.fast.qr`) and tangent product, and the state adjoint δ_t = ∂L/∂h_t picks up the
frame's dependence on φ'(h) (dφ'/dh = −2 tanh(h) φ'(h)):

    Ā_t from (Q̄_t, r̄_t);   P_t = φ'(h_{t-1}) ⊙ Q_{t-1};   W̄ += Ā_t P_tᵀ + δ_t φ(h_{t-1})ᵀ
    P̄_t = Wᵀ Ā_t;   Q̄_{t-1} = φ'(h_{t-1}) ⊙ P̄_t;   d̄_{t-1} = Σ_j P̄_t ⊙ Q_{t-1}
    δ_{t-1} = φ'(h_{t-1}) ⊙ (Wᵀ δ_t) − 2 tanh(h_{t-1}) φ'(h_{t-1}) ⊙ d̄_{t-1};   ū_t = δ_t

About a dozen plain tensor ops per step each way, no autograd graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.autograd.function import once_differentiable

from flossrun.fast.ops import dtanh
from flossrun.fast.qr import cholesky_qr_factor, qr_backward


def _cols(Q: torch.Tensor) -> torch.Tensor:
    """``[R, B, N, k]`` -> ``[R, N, B·k]``: every column of every trajectory (a view when B = 1)."""
    R, B, N, k = Q.shape
    return Q.movedim(-2, 1).reshape(R, N, B * k)


def _uncols(X: torch.Tensor, B: int) -> torch.Tensor:
    """Inverse of :func:`_cols`: ``[R, N, B·k]`` -> ``[R, B, N, k]``."""
    R, N, Bk = X.shape
    return X.reshape(R, N, B, Bk // B).movedim(1, -2)


class _VanillaLyapunov(torch.autograd.Function):
    @staticmethod
    def forward(ctx, W, u, h0, Q0, qr_at, keep):
        T, B = u.shape[0], h0.shape[1]
        WT = W.transpose(1, 2)
        h, Q = h0, Q0
        frames, Ps, dphis, phis, qrs, logs = [], [], [], [], [], []
        for t in range(T):
            d, p = dtanh(h), torch.tanh(h)  # [R, B, N]
            P = d.unsqueeze(-1) * Q  # φ'(h_{t-1}) ⊙ Q_{t-1} [R, B, N, k], kept for W̄
            frames.append(Q)  # Q_{t-1} [R, B, N, k]
            Ps.append(P)
            dphis.append(d)
            phis.append(p)
            A = _uncols(torch.bmm(W, _cols(P)), B)  # [R, B, N, k]
            h = torch.baddbmm(u[t], p, WT)
            if qr_at[t]:
                Q, R, logr = cholesky_qr_factor(A)
                qrs.append((Q, R))
                if keep[t]:
                    logs.append(logr)
            else:
                Q = A
                qrs.append(None)
        ctx.save_for_backward(W)
        ctx.trace = (frames, Ps, dphis, phis, qrs)
        ctx.plan = (qr_at, keep)
        return torch.stack(logs), h

    @staticmethod
    @once_differentiable
    def backward(ctx, g_logs, g_h):
        (W,) = ctx.saved_tensors
        frames, Ps, dphis, phis, qrs = ctx.trace
        qr_at, keep = ctx.plan
        T, B = len(frames), g_h.shape[1]
        WT = W.transpose(1, 2)
        gW = torch.zeros_like(W)
        gu = torch.empty((T, *g_h.shape), dtype=g_h.dtype, device=g_h.device)
        gQ, gh, j = None, g_h, g_logs.shape[0]
        for t in range(T - 1, -1, -1):
            d, p, Qprev = dphis[t], phis[t], frames[t]
            gA = gQ
            if qr_at[t]:
                Q, R = qrs[t]
                gr = None
                if keep[t]:
                    j -= 1
                    gr = g_logs[j] / torch.diagonal(R, dim1=-2, dim2=-1)  # ∂L/∂R_ii
                gA = None if gQ is None and gr is None else qr_backward(gQ, gr, Q, R)
            back = torch.bmm(gh, W).mul_(d)  # φ'(h_{t-1}) ⊙ Wᵀδ_t, as rows [R, B, N]
            if gA is not None:
                gAc = _cols(gA)
                gW.baddbmm_(gAc, _cols(Ps[t]).transpose(1, 2))
                gP = _uncols(torch.bmm(WT, gAc), B)  # Wᵀ Ā [R, B, N, k]
                gQ = d.unsqueeze(-1) * gP
                back.addcmul_(torch.linalg.vecdot(gP, Qprev), p * d, value=-2.0)  # dφ'/dh
            gu[t] = gh
            gW.baddbmm_(gh.transpose(1, 2), p)
            gh = back
        return gW, gu, gh, None, None, None


def vanilla_lyapunov(
    W: torch.Tensor,
    u: torch.Tensor,
    h0: torch.Tensor,
    Q0: torch.Tensor,
    qr_at: Sequence[bool],
    keep: Sequence[bool],
) -> tuple[torch.Tensor, torch.Tensor]:
    """log|R_ii| of every kept QR along the trajectory of ``h_t = W φ(h_{t-1}) + u_t``.

    ``W [R, N, N]``, ``u [T, R, B, N]`` (drive ``V x_t + b``), ``h0 [R, B, N]``, orthonormal
    ``Q0 [R, B, N, k]`` (a constant); ``qr_at[t]``: orthonormalise after step t+1; ``keep[t]``:
    accumulate that QR's logs. Returns ``block_logs [n_kept, R, B, k]`` (nats) and the final
    state ``h_T [R, B, N]``, differentiable w.r.t. ``W``, ``u`` and ``h0``.
    """
    if len(qr_at) != u.shape[0] or len(keep) != u.shape[0]:
        raise ValueError(f"qr_at and keep need one flag per step ({u.shape[0]})")
    if not any(keep):
        raise ValueError("keep must mark at least one QR step")
    return _VanillaLyapunov.apply(W, u, h0, Q0, tuple(qr_at), tuple(keep))
