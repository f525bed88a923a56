"""The Benettin pass of the LSTM with a hand-written adjoint (flossing, docs/design.md §4–5, §9).

State ``[h, c]`` (D = 2N), gates in torch.nn.LSTM's order i, f, g, o, drive ``u_t = V x_t + b``
``[T, R, B, 4N]`` computed up front (one product, :meth:`flossrun.models.lstm.LSTM.drive`).
Forward, for t = 1..T, per trajectory (``⊙`` elementwise; an ``[N]`` coefficient scales the rows
of the ``[N, k]`` frame blocks, or of the ``[N, N]`` weight blocks ``W_x``):

    a = W h + u_t [4N];   act = [s_i, s_f, t_g, s_o] = [σ(a_i), σ(a_f), tanh(a_g), σ(a_o)]
    c' = s_f ⊙ c + s_i ⊙ t_g,   h' = s_o ⊙ tanh(c')
    m = [t_g, c, s_i, tanh(c')],   β = m ⊙ act' (= ∂c'/∂a for i, f, g; ∂h'/∂a_o for o),
    γ = s_o ⊙ tanh'(c')
    tangent weights  K = [K_o; K_c] = [β_o ⊙ W_o;  β_f ⊙ W_f + β_i ⊙ W_i + β_g ⊙ W_g]   [2N, N]
    frame:  [P_o; P_c] = K Q_h,   δc' = P_c + s_f ⊙ Q_c,   δh' = γ ⊙ δc' + P_o
    at a QR step: Q_t, R_t = qr([δh'; δc']) (Cholesky QR), log R_ii kept after the transient;
    otherwise Q_t = [δh'; δc']

(``K Q_h = Σ_x β_x ⊙ (W_x Q_h)``: one ``[2N, N] × [N, k]`` product per trajectory instead of
``W Q_h`` ``[4N, N] × [N, k]`` and four scaled blocks.) Backward, per step, from the frame adjoint
``[Ā_h; Ā_c]`` (through the QR by :func:`flossrun.fast.qr.qr_backward_rows`) and the state
adjoints ``h̄', c̄'``:

    Ē_c = Ā_c + γ ⊙ Ā_h,   Z = [Ā_h; Ē_c]   (the adjoints of P_o and P_c)
    Q̄_h = Kᵀ Z,   Q̄_c = s_f ⊙ Ē_c,   M = [M_o; M_c] = Z Q_hᵀ   [2N, N]
    W̄_x += β_x ⊙ M_x   (M_c for x = i, f, g; M_o for o)
    coefficient adjoints:  β̄_x = Σ_m W_x[:, m] ⊙ M_x[:, m],   ᾱ_f = Σ_k Ē_c ⊙ Q_c,
                           γ̄ = Σ_k Ā_h ⊙ δc' = s_f ⊙ Σ_k Ā_h ⊙ Q_c + Σ_m K_c[:, m] ⊙ M_o[:, m]

and the state adjoint picks up the coefficients' dependence on the state through the gates'
second derivatives (σ'' = σ'(1 − 2σ), tanh'' = −2 tanh tanh'):

    c̄'_tot = c̄' + γ ⊙ (h̄' − 2 tanh(c') ⊙ γ̄) + β̄_o ⊙ s_o' ⊙ tanh'(c')
    ā = act' ⊙ (d ⊙ m + β̄ ⊙ m ⊙ κ + X),   d = [c̄'_tot, c̄'_tot, c̄'_tot, h̄'],
        κ = [1 − 2s_i, 1 − 2s_f, −2t_g, 1 − 2s_o],   X = [β̄_g t_g', ᾱ_f, β̄_i s_i', γ̄ tanh'(c')]
    c̄ = s_f ⊙ c̄'_tot + β̄_f ⊙ s_f',   h̄ = Wᵀ ā,   ū_t = ā,   W̄ += ā hᵀ

(``X`` collects the cross terms: β_i = t_g s_i' depends on a_g, β_g = s_i t_g' on a_i, α_f = s_f
on a_f, γ = s_o tanh'(c') on a_o; ``ā hᵀ`` is summed over all steps in one product at the end.)
As in :mod:`flossrun.fast.floss`: plain tensor ops without an autograd graph, step loops compiled
by TorchScript, the ensemble cut into one slice per core, the frame kept transposed
(``Qt [R, B·k, 2N]``, each row ``[q_h, q_c]``), lone slices paired, and every op
placement-independent (``fast.ops``, ``fast.blas``; sums run over k or m within one trajectory,
over the batch B in pairs, never over realizations).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from flossrun.fast import blas
from flossrun.fast.floss import (
    Adjoint,
    Flags,
    OptTensor,
    Pass,
    Tensor,
    Trace,
    kept_logs,
    sliced_benettin,
)
from flossrun.fast.jit import script
from flossrun.fast.ops import dtanh, sigmoid
from flossrun.fast.parallel import ensemble_slices
from flossrun.fast.qr import frame_step, frame_step_backward, pad_frame, padded_rows, unpad_frame


def _sum_batch(x: torch.Tensor) -> torch.Tensor:
    """``x [R, B, ...]`` summed over ``B`` by pairwise halving (:func:`fast.ops.pairwise_sum`'s
    order, which depends only on B): ``[R, ...]``."""
    while x.shape[1] > 1:
        half = x.shape[1] // 2
        pairs = x[:, :half] + x[:, half : 2 * half]
        x = torch.cat([pairs, x[:, 2 * half :]], 1) if x.shape[1] % 2 == 1 else pairs
    return x[:, 0]


def _tangent_weights(Wb: torch.Tensor, beta4: torch.Tensor) -> torch.Tensor:
    """``K = [β_o ⊙ W_o; β_f ⊙ W_f + β_i ⊙ W_i + β_g ⊙ W_g]`` (rows scaled) ``[R, B, 2N, N]``
    from ``Wb = W [R, 1, 4N, N]`` and ``β [R, B, 4N]`` (recomputed in the backward pass rather
    than kept: an N × N matrix per step and trajectory)."""
    R, B, N = beta4.shape[0], beta4.shape[1], Wb.shape[3]
    K = torch.empty([R, B, 2 * N, N], dtype=Wb.dtype, device=Wb.device)
    bc = beta4.unsqueeze(-1)  # [R, B, 4N, 1]
    torch.mul(Wb[:, :, 3 * N :], bc[:, :, 3 * N :], out=K[:, :, :N])
    Kc = K[:, :, N:]
    torch.mul(Wb[:, :, N : 2 * N], bc[:, :, N : 2 * N], out=Kc)
    Kc.addcmul_(Wb[:, :, :N], bc[:, :, :N])
    Kc.addcmul_(Wb[:, :, 2 * N : 3 * N], bc[:, :, 2 * N : 3 * N])
    return K


def _forward(
    W: Tensor, u: Tensor, h0: Tensor, Qt0: Tensor, qr: Flags, keep: Flags, trace: bool, lone: bool
) -> Pass:
    """The Benettin pass of one slice of the ensemble over the steps of ``u`` (a whole pass or
    one checkpointed segment) from ``h0 = [h, c] [R, B, 2N]`` and ``Qt0 = Q_0ᵀ [R, B·k, 2N]``:
    ``(block_logs [n_kept, R, B, k], [h_T, c_T], Q_Tᵀ, trace)``; ``lone`` as in
    :func:`flossrun.fast.floss._forward`.

    ``trace`` (when asked for), per step: ``[Qt_{t-1}, h, act, act', m, κ, γ, tanh(c'),
    tanh'(c'), β]`` (the step's tangent weights ``K`` are recomputed from ``β``), plus
    ``[Q_tᵀ, R_t]`` at QR steps.
    """
    R, B, D = h0.shape[0], h0.shape[1], h0.shape[2]
    live = Qt0.shape[1] // B  # the frame's vectors
    k = padded_rows(live, D)  # the rows it is carried with, zero padding after the live ones
    N = D // 2
    WT = W.transpose(1, 2).contiguous()  # [R, N, 4N]
    Wb = W.view(R, 1, 4 * N, N)  # broadcast over the trajectories
    h, c = h0[..., :N].contiguous(), h0[..., N:].contiguous()
    Qt = pad_frame(Qt0, B, k)  # rows [q_h, q_c]
    steps: list[list[torch.Tensor]] = []
    logs = kept_logs(keep, R, B, live, h0)  # written in place: no small tensor per step
    j = 0
    for t in range(u.shape[0]):
        a = blas.baddbmm(u[t], h, WT)  # [R, B, 4N]
        act = sigmoid(a)
        dact = act * sigmoid(-a)
        a_g = a[..., 2 * N : 3 * N]
        t_g = torch.tanh(a_g)
        act[..., 2 * N : 3 * N] = t_g
        dact[..., 2 * N : 3 * N] = dtanh(a_g)
        s_i, s_f, s_o = act[..., :N], act[..., N : 2 * N], act[..., 3 * N :]
        c_new = s_f * c + s_i * t_g
        tc, dtc = torch.tanh(c_new), dtanh(c_new)
        h_new = s_o * tc
        m = torch.cat([t_g, c, s_i, tc], -1)
        beta4 = m * dact  # [R, B, 4N]
        gamma = s_o * dtc
        K = _tangent_weights(Wb, beta4)
        Qh = Qt.view(R * B, k, D)[:, :, :N]
        P = blas.bmm(Qh, K.view(R * B, D, N).transpose(1, 2)).view(R, B, k, D)
        At = torch.empty([R, B, k, D], dtype=Qt.dtype, device=Qt.device)  # [δh' | δc'], rows
        Qc = Qt.view(R, B, k, D)[..., N:]
        torch.addcmul(P[..., N:], Qc, s_f.unsqueeze(-2), out=At[..., N:])  # δc'
        torch.addcmul(P[..., :N], At[..., N:], gamma.unsqueeze(-2), out=At[..., :N])  # δh'
        At = At.view(R, B * k, D)
        if trace:
            kappa = torch.cat([1.0 - 2.0 * act[..., :N], 1.0 - 2.0 * s_f, -2.0 * t_g], -1)
            kappa = torch.cat([kappa, 1.0 - 2.0 * s_o], -1)
            record = [Qt, h, act, dact, m, kappa, gamma, tc, dtc, beta4]
        else:
            record = []
        Qt, qr_record, j = frame_step(At, k, qr[t], keep[t], logs, j, lone)
        if trace:
            steps.append(record + qr_record)
        h, c = h_new, c_new
    return logs, torch.cat([h, c], -1), unpad_frame(Qt, B, live), steps


def _backward(
    W: Tensor, steps: Trace, keep: Flags, g_logs: Tensor, g_h: Tensor, g_Qt: OptTensor, gW: Tensor
) -> Adjoint:
    """The adjoint of :func:`_forward` for one slice, from the adjoints of its outputs (``g_Qt``
    of the final frame: None for a whole pass; overwritten), accumulating ``W̄`` into ``gW``
    (see :func:`flossrun.fast.floss._backward`): ``(W̄, ū [T, R, B, 4N], h̄_0 [R, B, 2N],
    Q̄_0ᵀ)``."""
    T = len(steps)
    R, B, D = g_h.shape[0], g_h.shape[1], g_h.shape[2]
    N = D // 2
    live = g_logs.shape[-1]
    k = padded_rows(live, D)
    W5 = W.view(R, 1, 4, N, N)
    Wb = W.view(R, 1, 4 * N, N)
    gu = torch.empty([T, R, B, 4 * N], dtype=g_h.dtype, device=g_h.device)
    gQt = g_Qt if g_Qt is None else pad_frame(g_Qt, B, k)  # Q̄ᵀ [R, B·k, 2N]
    gh, gc = g_h[..., :N], g_h[..., N:]
    zeros = torch.zeros([R, B, N], dtype=g_h.dtype, device=g_h.device)
    j = g_logs.shape[0]
    for t in range(T - 1, -1, -1):
        rec = steps[t]
        Qt_prev = rec[0]
        act, dact, m, kappa = rec[2], rec[3], rec[4], rec[5]
        gamma, tc, dtc, beta = rec[6], rec[7], rec[8], rec[9]
        gAt, j = frame_step_backward(gQt, rec, len(rec) == 12, keep[t], g_logs, j)
        s_f = act[..., N : 2 * N]
        if gAt is not None:
            Z = gAt.view(R, B, k, D)  # overwritten into [Ā_h | Ē_c]
            gAh, Ec = Z[..., :N], Z[..., N:]
            Ec.addcmul_(gAh, gamma.unsqueeze(-2))
            Qc = Qt_prev.view(R, B, k, D)[..., N:]
            galpha = torch.linalg.vecdot(Ec, Qc, dim=-2)
            ggamma = torch.linalg.vecdot(gAh, Qc, dim=-2) * s_f  # + Σ_k Ā_h ⊙ (Q_h K_cᵀ) below
            K = _tangent_weights(Wb, beta)
            Zr = Z.view(R * B, k, D)
            Qh = Qt_prev.view(R * B, k, D)[:, :, :N]
            M = blas.bmm(Zr.transpose(1, 2), Qh).view(R, B, 2, 1, N, N)  # [Ā_h | Ē_c]ᵀ Q_h
            gQh = blas.bmm(Zr, K.view(R * B, D, N)).view(R, B, k, N)
            # β̄_x[n] = Σ_m W_x[n, m] M_x[n, m];  W̄_x += β_x ⊙ M_x (rows; summed over B)
            M_o, M_c = M[:, :, 0], M[:, :, 1]  # [R, B, 1, N, N]
            gb_ifg = torch.linalg.vecdot(W5[:, :, :3], M_c, dim=-1)  # [R, B, 3, N]
            gb_o = torch.linalg.vecdot(W5[:, :, 3], M_o[:, :, 0], dim=-1)  # [R, B, N]
            ggamma = ggamma + torch.linalg.vecdot(K[:, :, N:], M_o[:, :, 0], dim=-1)
            gbeta = torch.cat([gb_ifg.reshape(R, B, 3 * N), gb_o], -1)
            b5 = beta.view(R, B, 4, N, 1)
            if B == 1:  # accumulated in place
                gW4 = gW.view(R, 4, N, N)
                gW4[:, :3].addcmul_(M_c[:, 0], b5[:, 0, :3])
                gW4[:, 3].addcmul_(M_o[:, 0, 0], b5[:, 0, 3])
            else:
                T4 = torch.empty([R, B, 4, N, N], dtype=W.dtype, device=W.device)
                torch.mul(M_c, b5[:, :, :3], out=T4[:, :, :3])
                torch.mul(M_o[:, :, 0], b5[:, :, 3], out=T4[:, :, 3])
                gW.add_(_sum_batch(T4).view(R, 4 * N, N))
            gQt = torch.cat([gQh, Ec * s_f.unsqueeze(-2)], -1).view(R, B * k, D)
        else:
            gbeta = torch.zeros([R, B, 4 * N], dtype=g_h.dtype, device=g_h.device)
            galpha, ggamma = zeros, zeros
        gb_i, gb_f, gb_g, gb_o = (gbeta[..., i * N : (i + 1) * N] for i in range(4))
        ds_i, ds_f, dt_g, ds_o = (dact[..., i * N : (i + 1) * N] for i in range(4))
        gc_tot = gc + gamma * (gh - 2.0 * tc * ggamma) + gb_o * (ds_o * dtc)
        drive = torch.cat([gc_tot, gc_tot, gc_tot, gh], -1)
        cross = torch.cat([gb_g * dt_g, galpha, gb_i * ds_i, ggamma * dtc], -1)
        ga = dact * (drive * m + gbeta * (m * kappa) + cross)  # ā [R, B, 4N]
        gu[t].copy_(ga)
        gh = blas.bmm(ga, W)  # (Wᵀ ā)ᵀ [R, B, N]
        gc = gc_tot * s_f + gb_f * ds_f
    # the state's share of W̄ for all steps in one product: W̄ += Σ_t ā_t h_{t-1}ᵀ
    H = torch.stack([rec[1] for rec in steps], 1).view(R, T * B, N)
    blas.baddbmm_(gW, gu.transpose(0, 1).reshape(R, T * B, 4 * N).transpose(1, 2), H)
    gQ0 = gQt if gQt is None else unpad_frame(gQt, B, live)
    return gW, gu, torch.cat([gh, gc], -1), gQ0


forward_jit = script(_forward)
backward_jit = script(_backward)


def lstm_lyapunov(
    W: Tensor, u: Tensor, h0: Tensor, Q0: Tensor, qr_at: Sequence[bool], keep: Sequence[bool]
) -> tuple[Tensor, Tensor]:
    """log R_ii of every kept QR along the trajectory of the LSTM ``[h, c] -> [h', c']``.

    ``W [R, 4N, N]`` (recurrent weights, gates i, f, g, o), ``u [T, R, B, 4N]`` (drive
    ``V x_t + b``), ``h0 [R, B, 2N]`` (``[h, c]``), orthonormal ``Q0 [R, B, 2N, k]`` (a
    constant); ``qr_at[t]``: orthonormalise after step t+1; ``keep[t]``: accumulate that QR's
    logs. Returns ``block_logs [n_kept, R, B, k]`` (nats) and the final state ``[R, B, 2N]``,
    differentiable w.r.t. ``W``, ``u`` and ``h0``.
    """
    slices = ensemble_slices(W.shape[0], W.device)
    return sliced_benettin(forward_jit, backward_jit, slices, W, u, h0, Q0, qr_at, keep)
