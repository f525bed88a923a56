"""The vanilla recurrence over a whole sequence with a hand-written backward (SPEC §2).

    h_t = W φ(h_{t-1}) + u_t,   t = 1..T,   φ = tanh,   u_t = V x_t + b (precomputed)

Forward: one ``baddbmm`` per step into a preallocated ``[T, R, B, N]`` buffer. Backward
(δ_t = ∂L/∂h_t, g_t the gradient arriving at h_t from the readout):

    δ_T = g_T,   δ_t = g_t + φ'(h_t) ⊙ (Wᵀ δ_{t+1}),   ∂L/∂u_t = δ_t
    ∂L/∂W = Σ_t δ_t φ(h_{t-1})ᵀ        (one bmm over all T·B rows)
    ∂L/∂h_0 = φ'(h_0) ⊙ (Wᵀ δ_1)

with φ' = 1/cosh² (not 1 − tanh², which rounds to 0 for saturated units).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from flossrun.fast.ops import dtanh


class _VanillaBPTT(torch.autograd.Function):
    # Layouts: hs is time-major [T, R, B, N] (each step writes one contiguous block); δ_t and
    # φ(h_{t-1}) are realization-major [R, T, B, N], so that ∂L/∂W is one bmm over [R, T·B, N]
    # rows and ∂L/∂u reaches VanillaRNN.drive without a transposing copy. Only hs is saved:
    # φ(h_{t-1}) is recomputed after the backward loop, in the memory φ'(h_t) used.
    @staticmethod
    def forward(ctx, u: torch.Tensor, W: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        T, R, B, N = u.shape
        hs = torch.empty((T, R, B, N), dtype=u.dtype, device=u.device)  # h_1..h_T
        WT = W.transpose(1, 2).contiguous()  # a contiguous operand makes each bmm ~30% faster
        h = h0
        for t in range(T):
            h = torch.baddbmm(u[t], torch.tanh(h), WT, out=hs[t])
        ctx.save_for_backward(W, h0, hs)
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):
        W, h0, hs = ctx.saved_tensors
        T, R, B, N = hs.shape
        dphi = dtanh(hs)  # [T, R, B, N]: φ'(h_1..h_T)
        delta = torch.empty((R, T, B, N), dtype=hs.dtype, device=hs.device)  # δ_1..δ_T
        delta[:, T - 1] = g[T - 1]
        back = torch.empty_like(hs[0])  # [R, B, N]: Wᵀ δ_{t+1} as rows
        for t in range(T - 2, -1, -1):
            torch.bmm(delta[:, t + 1], W, out=back)
            torch.addcmul(g[t], dphi[t], back, out=delta[:, t])
        grad_u = grad_W = grad_h0 = None
        if ctx.needs_input_grad[0]:
            grad_u = delta.transpose(0, 1)
        if ctx.needs_input_grad[1]:
            phis = dphi.view(R, T, B, N)  # φ(h_0)..φ(h_{T-1}), realization-major
            torch.tanh(h0, out=phis[:, 0])
            torch.tanh(hs[:-1].transpose(0, 1), out=phis[:, 1:])
            rows = delta.view(R, T * B, N)
            grad_W = torch.bmm(rows.transpose(1, 2), phis.view(R, T * B, N))  # [R, N, N]
        if ctx.needs_input_grad[2]:
            grad_h0 = torch.bmm(delta[:, 0], W) * dtanh(h0)
        return grad_u, grad_W, grad_h0


def vanilla_bptt(u: torch.Tensor, W: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """Hidden states ``h_1..h_T`` of ``h_t = W φ(h_{t-1}) + u_t``, differentiable.

    ``u [T, R, B, N]`` (drive ``V x_t + b``), ``W [R, N, N]``, ``h0 [R, B, N]`` ->
    ``[T, R, B, N]``. Equal to the plain autograd loop (same ops forward; exact adjoint
    backward), at one ``baddbmm`` per step forward and one ``bmm`` + one ``addcmul`` backward.
    """
    return _VanillaBPTT.apply(u, W, h0)
