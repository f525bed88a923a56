"""The Benettin pass of the vanilla RNN with a hand-written adjoint (flossing, docs/design.md §4–5).

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

About a dozen plain tensor ops per step each way, no autograd graph; the step loops are compiled
by TorchScript (:mod:`flossrun.fast.jit`). On CPU the ensemble is cut into one slice per core,
run side by side (:mod:`flossrun.fast.parallel`). Without autograd no trace is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.autograd.function import once_differentiable

from flossrun.fast import blas
from flossrun.fast.jit import script
from flossrun.fast.ops import dtanh
from flossrun.fast.parallel import ensemble_slices, map_slices
from flossrun.fast.qr import frame_qr, frame_qr_backward

# The frame is kept transposed, ``Qt = Qᵀ [R, B·k, N]`` (the B trajectories' frames stacked as
# rows), so that every product and the QR's triangular solves read and write row-major blocks
# (see flossrun.fast.qr). _forward and _backward are TorchScript-compatible: flossrun.fast.jit
# compiles them so that the ensemble's slices run side by side without the GIL.


def _forward(
    W: torch.Tensor,
    u: torch.Tensor,
    h0: torch.Tensor,
    Q0: torch.Tensor,
    qr_at: list[bool],
    keep: list[bool],
    trace: bool,
) -> tuple[torch.Tensor, torch.Tensor, list[list[torch.Tensor]]]:
    """The Benettin pass of one slice of the ensemble: ``(block_logs, h_T, trace)``.

    ``trace`` (when asked for): per step ``[Q_{t-1}ᵀ, φ'(h_{t-1}), φ(h_{t-1})]``, plus
    ``[Q_tᵀ, R_t]`` at QR steps: all that :func:`_backward` needs. (``P_t`` is recomputed there:
    not keeping it saves a third of the trace's memory, at no measurable cost in time.)
    """
    R, B, N, k = Q0.shape[0], Q0.shape[1], Q0.shape[2], Q0.shape[3]
    WT = W.transpose(1, 2).contiguous()
    h = h0
    Qt = Q0.transpose(-1, -2).reshape(R, B * k, N)  # Q_0ᵀ, trajectories stacked [R, B·k, N]
    steps: list[list[torch.Tensor]] = []
    logs: list[torch.Tensor] = []
    direct = False  # plain batched products every step (decided once, at t = 0: blas.direct)
    for t in range(u.shape[0]):
        d, p = dtanh(h), torch.tanh(h)  # [R, B, N]
        Pt = (Qt.view(R, B, k, N) * d.unsqueeze(-2)).view(R, B * k, N)  # (φ'(h_{t-1}) ⊙ Q)ᵀ
        if t == 0:
            direct = blas.direct(Pt, WT) and blas.direct(p, WT)
        if direct:
            At = torch.bmm(Pt, WT)  # A_tᵀ = P_tᵀ Wᵀ [R, B·k, N]
            h = torch.empty_like(p).copy_(u[t]).baddbmm_(p, WT)
        else:
            At = blas.bmm(Pt, WT)
            h = blas.baddbmm(u[t], p, WT)
        record = [Qt, d, p]
        if qr_at[t]:
            Qt, Rt, logr = frame_qr(At, k)
            record += [Qt, Rt]
            if keep[t]:
                logs.append(logr)
        else:
            Qt = At
        if trace:
            steps.append(record)
    return torch.stack(logs), h, steps


def _backward(
    W: torch.Tensor,
    steps: list[list[torch.Tensor]],
    keep: list[bool],
    g_logs: torch.Tensor,
    g_h: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The adjoint of :func:`_forward` for one slice: ``(W̄, ū [T, R, B, N], h̄_0)``."""
    T = len(steps)
    R, B, N = g_h.shape[0], g_h.shape[1], g_h.shape[2]
    k = g_logs.shape[-1]
    gW = torch.zeros_like(W)
    gu = torch.empty([T] + list(g_h.shape), dtype=g_h.dtype, device=g_h.device)  # noqa: RUF005
    gQt: torch.Tensor | None = None  # Q̄ᵀ [R, B·k, N]
    gh = g_h
    j = g_logs.shape[0]
    # plain batched products (blas.direct), decided once per kind of product: every step's
    # operands are fresh buffers of the same shapes (-1: not seen yet)
    direct_h, direct_q = -1, -1
    for t in range(T - 1, -1, -1):
        record = steps[t]
        Qt_prev, d, p = record[0], record[1], record[2]
        gAt = gQt
        if len(record) == 5:  # a QR step
            Qt, Rt = record[3], record[4]
            g_logr: torch.Tensor | None = None
            if keep[t]:
                j -= 1
                g_logr = g_logs[j]
            gAt = frame_qr_backward(gQt, g_logr, Qt, Rt)
        if direct_h < 0:
            ok = blas.direct(gh, W) and blas.direct(gh.transpose(1, 2), p)
            direct_h = 1 if ok and blas.offset_aligned(gW) else 0
        back = torch.bmm(gh, W) if direct_h == 1 else blas.bmm(gh, W)
        back.mul_(d)  # φ'(h_{t-1}) ⊙ Wᵀδ_t, as rows [R, B, N]
        if gAt is not None:
            Pt = (Qt_prev.view(R, B, k, N) * d.unsqueeze(-2)).view(R, B * k, N)
            if direct_q < 0:
                ok = blas.direct(gAt.transpose(1, 2), Pt) and blas.direct(gAt, W)
                direct_q = 1 if ok and blas.offset_aligned(gW) else 0
            if direct_q == 1:
                gW.baddbmm_(gAt.transpose(1, 2), Pt)  # Ā Pᵀ
                gPt = torch.bmm(gAt, W)  # (Wᵀ Ā)ᵀ [R, B·k, N]
            else:
                blas.baddbmm_(gW, gAt.transpose(1, 2), Pt)
                gPt = blas.bmm(gAt, W)
            gQt = (gPt.view(R, B, k, N) * d.unsqueeze(-2)).view(R, B * k, N)
            dbar = torch.linalg.vecdot(gPt.view(R, B, k, N), Qt_prev.view(R, B, k, N), dim=-2)
            back.addcmul_(dbar, p * d, value=-2.0)  # dφ'/dh
        gu[t].copy_(gh)
        if direct_h == 1:
            gW.baddbmm_(gh.transpose(1, 2), p)
        else:
            blas.baddbmm_(gW, gh.transpose(1, 2), p)
        gh = back
    return gW, gu, gh


def _cat(parts: Sequence[torch.Tensor], dim: int) -> torch.Tensor:
    """The slices' results joined along the realization axis ``dim``."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


forward_jit = script(_forward)
backward_jit = script(_backward)


def _lone(s: slice, device: torch.device) -> bool:
    """A slice of one realization on CPU runs paired with a copy of itself (fast.blas.paired)."""
    return s.stop - s.start == 1 and device.type == "cpu"


def _sliced_forward(fwd, slices, W, u, h0, Q0, qr_at, keep, trace):
    """A Benettin kernel ``fwd`` over the ensemble's ``slices``: ``(block_logs, h_T, traces)``."""
    calls = []
    for s in slices:
        call = (W[s], u[:, s], h0[s], Q0[s])
        if _lone(s, W.device):
            call = tuple(blas.paired(x, 1 if i == 1 else 0) for i, x in enumerate(call))
        calls.append((*call, qr_at, keep, trace))
    logs, h, traces = zip(*map_slices(fwd, calls), strict=True)
    logs = [x[:, :1] if _lone(s, W.device) else x for x, s in zip(logs, slices, strict=True)]
    h = [x[:1] if _lone(s, W.device) else x for x, s in zip(h, slices, strict=True)]
    return _cat(logs, 1), _cat(h, 0), traces


class _SlicedBenettin(torch.autograd.Function):
    """A forward kernel and its hand-written adjoint (``fwd``, ``bwd``), run slice by slice."""

    @staticmethod
    def forward(ctx, fwd, bwd, slices, W, u, h0, Q0, qr_at, keep):
        logs, h, traces = _sliced_forward(fwd, slices, W, u, h0, Q0, qr_at, keep, True)
        ctx.save_for_backward(W)
        ctx.trace = (bwd, slices, traces, keep)
        return logs, h

    @staticmethod
    @once_differentiable
    def backward(ctx, g_logs, g_h):
        (W,) = ctx.saved_tensors
        bwd, slices, traces, keep = ctx.trace
        calls = []
        for s, steps in zip(slices, traces, strict=True):
            if _lone(s, W.device):
                gl, gh_ = blas.zero_paired(g_logs[:, s], 1), blas.zero_paired(g_h[s])
                calls.append((blas.paired(W[s]), steps, keep, gl, gh_))
            else:
                calls.append((W[s], steps, keep, g_logs[:, s], g_h[s]))
        gW, gu, gh = (list(x) for x in zip(*map_slices(bwd, calls), strict=True))
        for i, s in enumerate(slices):
            if _lone(s, W.device):
                gW[i], gu[i], gh[i] = gW[i][:1], gu[i][:, :1], gh[i][:1]
        return None, None, None, _cat(gW, 0), _cat(gu, 1), _cat(gh, 0), None, None, None


def sliced_benettin(
    fwd, bwd, slices: Sequence[slice], W, u, h0, Q0, qr_at: Sequence[bool], keep: Sequence[bool]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the flags, then run a fused Benettin pass (``fwd``/``bwd`` step loops of the same
    signature as :func:`_forward`/:func:`_backward`) over ``slices`` of the ensemble:
    differentiable when autograd needs it, otherwise without a trace."""
    if len(qr_at) != u.shape[0] or len(keep) != u.shape[0]:
        raise ValueError(f"qr_at and keep need one flag per step ({u.shape[0]})")
    if not any(keep):
        raise ValueError("keep must mark at least one QR step")
    qr_at, keep = [bool(f) for f in qr_at], [bool(f) for f in keep]
    if torch.is_grad_enabled() and any(t.requires_grad for t in (W, u, h0)):
        return _SlicedBenettin.apply(fwd, bwd, slices, W, u, h0, Q0, qr_at, keep)
    logs, h, _ = _sliced_forward(fwd, slices, W, u, h0, Q0, qr_at, keep, False)  # no trace
    return logs, h


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
    slices = ensemble_slices(W.shape[0], W.device)
    return sliced_benettin(forward_jit, backward_jit, slices, W, u, h0, Q0, qr_at, keep)
