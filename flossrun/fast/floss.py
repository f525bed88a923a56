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

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch.autograd.function import once_differentiable

from flossrun.fast import blas
from flossrun.fast.jit import script
from flossrun.fast.ops import dtanh
from flossrun.fast.parallel import ensemble_slices, map_slices
from flossrun.fast.qr import frame_step, frame_step_backward, pad_frame, padded_rows, unpad_frame

# The frame is kept transposed, ``Qt = Qᵀ [R, B·k, N]`` (the B trajectories' frames stacked as
# rows), so that every product and the QR's triangular solves read and write row-major blocks
# (see flossrun.fast.qr). _forward and _backward are TorchScript-compatible: flossrun.fast.jit
# compiles them so that the ensemble's slices run side by side without the GIL.

# The kernels' signature (this module's and flossrun.fast.lstm_floss's _forward and _backward,
# driven by sliced_benettin), as types TorchScript reads:
Tensor = torch.Tensor
OptTensor = torch.Tensor | None
Flags = list[bool]  # one flag per step: a QR is due / its logs are kept
Trace = list[list[torch.Tensor]]  # per step, what _backward needs (empty unless traced)
Pass = tuple[Tensor, Tensor, Tensor, Trace]  # (block logs, final state, final frame, trace)
Adjoint = tuple[Tensor, Tensor, Tensor, OptTensor]  # (W̄, ū, h̄_0, Q̄_0ᵀ)


def _forward(
    W: Tensor, u: Tensor, h0: Tensor, Qt0: Tensor, qr: Flags, keep: Flags, trace: bool, lone: bool
) -> Pass:
    """The Benettin pass of one slice of the ensemble over the steps of ``u`` (a whole pass or
    one checkpointed segment) from ``h0 [R, B, N]`` and the frame ``Qt0 = Q_0ᵀ [R, B·k, N]``:
    ``(block_logs [n_kept, R, B, k], h_T, Q_Tᵀ, trace)``.

    ``lone``: the slice is a lone realization paired with a copy of itself (its QRs are
    computed once, :func:`flossrun.fast.qr.frame_step`). ``trace`` (when asked for): per step
    ``[Q_{t-1}ᵀ, φ'(h_{t-1}), φ(h_{t-1})]``, plus
    ``[Q_tᵀ, R_t]`` at QR steps: all that :func:`_backward` needs. (``P_t`` is recomputed there:
    not keeping it saves a third of the trace's memory, at no measurable cost in time.)
    """
    R, B, N = h0.shape[0], h0.shape[1], h0.shape[2]
    live = Qt0.shape[1] // B  # the frame's vectors
    k = padded_rows(live, N)  # the rows it is carried with, zero padding after the live ones
    WT = W.transpose(1, 2).contiguous()
    h = h0
    Qt = pad_frame(Qt0, B, k)  # Q_0ᵀ, trajectories stacked [R, B·k, N]
    steps: list[list[torch.Tensor]] = []
    logs = kept_logs(keep, R, B, live, h0)  # written in place: no small tensor per step
    j = 0
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
        Qt, qr_record, j = frame_step(At, k, qr[t], keep[t], logs, j, lone)
        if trace:
            steps.append(record + qr_record)
    return logs, h, unpad_frame(Qt, B, live), steps


def kept_logs(keep: list[bool], R: int, B: int, k: int, like: torch.Tensor) -> torch.Tensor:
    """The buffer of the kept QRs' logs ``[n_kept, R, B, k]`` (``n_kept`` may be 0 in a
    checkpointed segment). One buffer per pass instead of a small tensor kept per step: with
    large frames, small long-lived allocations between the steps' big temporaries fragment
    the heap (docs/performance.md)."""
    n_kept = 0
    for f in keep:
        if f:
            n_kept += 1
    return torch.empty([n_kept, R, B, k], dtype=like.dtype, device=like.device)


def _backward(
    W: Tensor, steps: Trace, keep: Flags, g_logs: Tensor, g_h: Tensor, g_Qt: OptTensor, gW: Tensor
) -> Adjoint:
    """The adjoint of :func:`_forward` for one slice, from the adjoints of its outputs
    (``g_logs``, ``g_h``, and ``g_Qt`` of the final frame, None for a whole pass; overwritten):
    ``(W̄, ū [T, R, B, N], h̄_0, Q̄_0ᵀ)``. ``W̄`` is accumulated into ``gW`` (zeros for a whole
    pass; a checkpointed pass hands one buffer from segment to segment, so that it adds the
    same products in the same order)."""
    T = len(steps)
    R, B, N = g_h.shape[0], g_h.shape[1], g_h.shape[2]
    live = g_logs.shape[-1]
    k = padded_rows(live, N)
    gu = torch.empty([T] + list(g_h.shape), dtype=g_h.dtype, device=g_h.device)  # noqa: RUF005
    gQt = g_Qt if g_Qt is None else pad_frame(g_Qt, B, k)  # Q̄ᵀ [R, B·k, N]
    gh = g_h
    j = g_logs.shape[0]
    # plain batched products (blas.direct), decided once per kind of product: every step's
    # operands are fresh buffers of the same shapes (-1: not seen yet)
    direct_h, direct_q = -1, -1
    for t in range(T - 1, -1, -1):
        record = steps[t]
        Qt_prev, d, p = record[0], record[1], record[2]
        gAt, j = frame_step_backward(gQt, record, len(record) == 5, keep[t], g_logs, j)
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
    return gW, gu, gh, gQt if gQt is None else unpad_frame(gQt, B, live)


def _cat(parts: Sequence[torch.Tensor], dim: int) -> torch.Tensor:
    """The slices' results joined along the realization axis ``dim``."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


forward_jit = script(_forward)
backward_jit = script(_backward)

# Checkpointing (docs/performance.md): a pass with autograd whose trace would be large keeps only
# the state and frame at every m-th step (m = ⌈√T⌉) and recomputes each segment's trace in the
# backward pass, one segment at a time. The recomputation costs a second forward pass (about
# +40 % per flossing epoch), so short passes (flossing: tens of steps) keep their trace up to
# AUTO_CHECKPOINT_BYTES (an ensemble of 64 networks at N = 80, k = 75 over 71 steps: ~230 MB by
# _trace_bytes), while long passes (spectra over LONG_PASS_STEPS or more) are checkpointed past
# LONG_PASS_BYTES, where the trace, not the compute, limits what fits.
AUTO_CHECKPOINT_BYTES = 2**30
LONG_PASS_STEPS = 256
LONG_PASS_BYTES = 128 * 2**20
NO_GRAD_SEGMENT = 256  # steps per call of a pass without autograd (no trace: any length works)
_checkpoint_every: ContextVar[int | None] = ContextVar("checkpoint_every", default=None)


@contextmanager
def checkpointing(every: int | None) -> Iterator[None]:
    """Within the block, fused Benettin passes with autograd keep states and frames every
    ``every`` steps and recompute the segments in the backward pass (``0``: never, keep the
    whole trace; ``None``: automatic, when the trace would exceed ``AUTO_CHECKPOINT_BYTES``).
    :func:`flossrun.lyapunov.lyapunov_spectrum` sets it from its ``checkpoint_every``."""
    if every is not None and every < 0:
        raise ValueError(
            f"checkpoint_every must be None (automatic), 0 (never) or >= 1, got {every}"
        )
    token = _checkpoint_every.set(every)
    try:
        yield
    finally:
        _checkpoint_every.reset(token)


def segment_length(T: int, trace_bytes: int) -> int:
    """Steps per checkpointed segment for a pass of ``T`` steps whose whole trace would take
    ``trace_bytes``: the :func:`checkpointing` setting, or automatic (0 = no checkpointing)."""
    every = _checkpoint_every.get()
    if every is None:
        limit = LONG_PASS_BYTES if T >= LONG_PASS_STEPS else AUTO_CHECKPOINT_BYTES
        every = math.isqrt(T - 1) + 1 if trace_bytes > limit and T > 4 else 0
    return 0 if every >= T else every


def _lone(s: slice, device: torch.device) -> bool:
    """A slice of one realization on CPU runs paired with a copy of itself (fast.blas.paired)."""
    return s.stop - s.start == 1 and device.type == "cpu"


class _Slices:
    """The ensemble cut into slices in the kernels' shapes: ``W``, ``u`` per slice, a lone
    realization paired with a copy of itself (``fast.blas.paired``), and the means to unpair."""

    def __init__(
        self, slices: Sequence[slice], W: torch.Tensor, u: torch.Tensor, pair_u: bool = True
    ) -> None:
        self.slices = list(slices)
        self.lone = [_lone(s, W.device) for s in self.slices]
        self.W = [self.pair(W[s], i) for i, s in enumerate(self.slices)]
        self.u = [self.pair(u[:, s], i, 1) for i, s in enumerate(self.slices)] if pair_u else []

    def pair(self, x: torch.Tensor, i: int, dim: int = 0) -> torch.Tensor:
        return blas.paired(x, dim) if self.lone[i] else x

    def zero_pair(self, g: torch.Tensor, i: int, dim: int = 0) -> torch.Tensor:
        return blas.zero_paired(g, dim) if self.lone[i] else g

    def unpair(self, x: torch.Tensor, i: int, dim: int = 0) -> torch.Tensor:
        return x.narrow(dim, 0, 1) if self.lone[i] else x

    def split(self, x: torch.Tensor, dim: int = 0) -> list[torch.Tensor]:
        """``x`` cut along its realization axis ``dim``, each slice paired where lone."""
        return [self.pair(x.narrow(dim, s.start, s.stop - s.start), i, dim)
                for i, s in enumerate(self.slices)]  # fmt: skip

    def join(self, parts: Sequence[torch.Tensor], dim: int = 0) -> torch.Tensor:
        return _cat([self.unpair(x, i, dim) for i, x in enumerate(parts)], dim)


def frame_rows(Q0: torch.Tensor) -> torch.Tensor:
    """``Q0 [R, B, D, k]`` as the kernels keep it, ``Q_0ᵀ [R, B·k, D]`` (contiguous)."""
    R, B, D, k = Q0.shape
    return Q0.transpose(-1, -2).reshape(R, B * k, D).contiguous()


def _trace_bytes(slices: Sequence[slice], h0: torch.Tensor, Q0: torch.Tensor, T: int) -> int:
    """An upper estimate of a whole pass's trace: per step and trajectory the frame (``k·D``; the
    QR writes Q over the product, and the next step's record shares it), its R (``k²``) and a
    dozen state-sized vectors (the LSTM's gates), for every (paired) realization."""
    R = sum(2 if _lone(s, h0.device) else s.stop - s.start for s in slices)
    B, D, k = Q0.shape[1], Q0.shape[2], Q0.shape[3]
    return T * R * B * (k * D + k * k + 12 * D) * h0.element_size()


def _run_slices(fwd, sl: _Slices, a: int, b: int, hs, Qts, qr_at, keep, trace):
    """Steps ``a..b-1`` of every slice side by side: ``[(logs, h, Qt, steps)]`` per slice."""
    calls = [(sl.W[i], sl.u[i][a:b], hs[i], Qts[i], qr_at[a:b], keep[a:b], trace, sl.lone[i])
             for i in range(len(sl.slices))]  # fmt: skip
    return map_slices(fwd, calls)


class _SlicedBenettin(torch.autograd.Function):
    """A forward kernel and its hand-written adjoint (``fwd``, ``bwd``), run slice by slice,
    over the whole pass or in checkpointed segments of ``every`` steps (``every > 0``)."""

    @staticmethod
    def forward(ctx, fwd, bwd, slices, every, W, u, h0, Q0, qr_at, keep):
        sl = _Slices(slices, W, u)
        T = u.shape[0]
        bounds = [(a, min(a + every, T)) for a in range(0, T, every)] if every else [(0, T)]
        hs, Qts = sl.split(h0), sl.split(frame_rows(Q0))
        starts, logs = [], []
        for a, b in bounds:
            starts.append((hs, Qts))
            out = _run_slices(fwd, sl, a, b, hs, Qts, qr_at, keep, not every)
            logs.append([o[0] for o in out])
            hs, Qts = [o[1] for o in out], [o[2] for o in out]
        traces = None if every else [o[3] for o in out]
        ctx.state = (fwd, bwd, sl, bounds, starts, traces, qr_at, keep)
        per_slice = [torch.cat([seg[i] for seg in logs]) for i in range(len(sl.slices))]
        return sl.join(per_slice, 1), sl.join(hs)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_logs, g_h):
        fwd, bwd, sl, bounds, starts, traces, qr_at, keep = ctx.state
        n = len(sl.slices)
        # (only copy 0 of a pair carries the loss)
        gls = [sl.zero_pair(g_logs[:, s], i, 1) for i, s in enumerate(sl.slices)]
        ghs = [sl.zero_pair(g_h[s], i) for i, s in enumerate(sl.slices)]
        gWs = [torch.zeros_like(w) for w in sl.W]
        gQs: list[torch.Tensor | None] = [None] * n
        gus: list[list[torch.Tensor]] = [[] for _ in range(n)]
        kept_after = sum(keep)
        for seg in range(len(bounds) - 1, -1, -1):
            a, b = bounds[seg]
            if traces is None:  # recompute this segment's trace from its checkpoint
                hs, Qts = starts[seg]
                out = _run_slices(fwd, sl, a, b, hs, Qts, qr_at, keep, True)
                steps = [o[3] for o in out]
            else:
                steps = traces
            n_kept = sum(keep[a:b])
            j0 = kept_after - n_kept
            calls = [(sl.W[i], steps[i], keep[a:b], gls[i][j0:kept_after], ghs[i], gQs[i], gWs[i])
                     for i in range(n)]  # fmt: skip
            kept_after = j0
            for i, (gW, gu, gh, gQ) in enumerate(map_slices(bwd, calls)):
                gWs[i], ghs[i], gQs[i] = gW, gh, gQ
                gus[i].append(gu)
        gu = [torch.cat(parts[::-1]) if len(parts) > 1 else parts[0] for parts in gus]
        grads = sl.join(gWs), sl.join(gu, 1), sl.join(ghs)
        return None, None, None, None, *grads, None, None, None


def sliced_benettin(
    fwd, bwd, slices: Sequence[slice], W, u, h0, Q0, qr_at: Sequence[bool], keep: Sequence[bool]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the flags, then run a fused Benettin pass (``fwd``/``bwd`` step loops of the same
    signature as :func:`_forward`/:func:`_backward`) over ``slices`` of the ensemble:
    differentiable when autograd needs it (checkpointed as :func:`checkpointing` says),
    otherwise without a trace."""
    T = u.shape[0]
    if len(qr_at) != T or len(keep) != T:
        raise ValueError(f"qr_at and keep need one flag per step ({T})")
    if not any(keep):
        raise ValueError("keep must mark at least one QR step")
    qr_at, keep = [bool(f) for f in qr_at], [bool(f) for f in keep]
    if torch.is_grad_enabled() and any(t.requires_grad for t in (W, u, h0)):
        every = segment_length(T, _trace_bytes(slices, h0, Q0, T))
        return _SlicedBenettin.apply(fwd, bwd, slices, every, W, u, h0, Q0, qr_at, keep)
    # no trace: in segments, so that a lone realization's paired drive is a segment's only
    sl = _Slices(slices, W, u, pair_u=False)
    hs, Qts, logs = sl.split(h0), sl.split(frame_rows(Q0)), []
    for a in range(0, T, NO_GRAD_SEGMENT):
        b = min(a + NO_GRAD_SEGMENT, T)
        sl.u = [sl.pair(u[a:b, s], i, 1) for i, s in enumerate(sl.slices)]
        out = _run_slices(fwd, sl, 0, b - a, hs, Qts, qr_at[a:b], keep[a:b], False)
        hs, Qts = [o[1] for o in out], [o[2] for o in out]
        logs.append(sl.join([o[0] for o in out], 1))
    return torch.cat(logs) if len(logs) > 1 else logs[0], sl.join(hs)


def vanilla_lyapunov(
    W: Tensor, u: Tensor, h0: Tensor, Q0: Tensor, qr_at: Sequence[bool], keep: Sequence[bool]
) -> tuple[Tensor, Tensor]:
    """log|R_ii| of every kept QR along the trajectory of ``h_t = W φ(h_{t-1}) + u_t``.

    ``W [R, N, N]``, ``u [T, R, B, N]`` (drive ``V x_t + b``), ``h0 [R, B, N]``, orthonormal
    ``Q0 [R, B, N, k]`` (a constant); ``qr_at[t]``: orthonormalise after step t+1; ``keep[t]``:
    accumulate that QR's logs. Returns ``block_logs [n_kept, R, B, k]`` (nats) and the final
    state ``h_T [R, B, N]``, differentiable w.r.t. ``W``, ``u`` and ``h0``.
    """
    slices = ensemble_slices(W.shape[0], W.device)
    return sliced_benettin(forward_jit, backward_jit, slices, W, u, h0, Q0, qr_at, keep)
