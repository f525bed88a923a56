"""The vanilla RNN over a whole sequence, readout included, with a hand-written backward
(docs/design.md §2).

    h_t = W φ(h_{t-1}) + V x_t + b,   z_t = w_out h_t + b_out,   t = 1..T,   φ = tanh

Forward: the drive ``V x_t + b`` is written into the state buffer in one op, then one in-place
``baddbmm`` (``h_t += W φ(h_{t-1})``) and one ``tanh`` per step; ``φ(h_0..h_T)`` is kept for the
backward pass and the logits are one op over the whole sequence.

Backward, with g_t = w_outᵀ ∂L/∂z_t (+ ∂L/∂h_t when the states themselves are used):

    δ_T = g_T,   δ_t = g_t + φ'(h_t) ⊙ (Wᵀ δ_{t+1}),   φ'(h_t) = 1 − φ(h_t)²
    ∂L/∂W = Σ_t δ_t φ(h_{t-1})ᵀ  (accumulated per step, while δ_t and φ(h_{t-1}) are in cache)
    [∂L/∂V | ∂L/∂b] = Σ_t δ_t [x_t, 1]ᵀ,  ∂L/∂w_out = Σ_t ∂L/∂z_t h_tᵀ,  ∂L/∂b_out = Σ_t ∂L/∂z_t
    ∂L/∂h_0 = φ'(h_0) ⊙ (Wᵀ δ_1)

Four ops per step backward (the δ recursion in place in the buffer that held g, and two
``bmm``). φ' = 1 − φ² is what autograd's tanh backward computes, so the kernel reproduces the
plain autograd loop; it rounds to 0 only where |h| ≳ 9 (float32), where the true φ' < 1e-7.
(The Lyapunov engine's Jacobian uses 1/cosh² instead, docs/design.md §2, as its exponents need it.)

Time-major ``[T, R, B, N]`` buffers throughout: each step reads and writes contiguous blocks.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from flossrun.fast import blas
from flossrun.fast.ops import pairwise_sum


def small_matmul(
    a: torch.Tensor, m: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``a [T, R, n, k] @ m [R, k, p] (+ bias [R, p])`` -> ``[T, R, n, p]`` (shared over time).

    For the few input/output channels of the tasks (small ``k``) a sum of ``k`` broadcast
    products, the bias folded into the first: far cheaper than a batched matmul over ``T·R``
    tiny matrices.
    """
    k = a.shape[-1]
    if k > 4:
        T, R, B, n = a.shape[0], a.shape[1], a.shape[2], m.shape[-1]
        ms = m.expand(T, R, k, n).contiguous().view(T * R, k, n)  # a copy of m per step
        out = blas.bmm(a.reshape(T * R, B, k), ms).view(T, R, B, n)
        return out if bias is None else out.add_(bias[:, None, :])
    if bias is None:
        out = a[..., 0:1] * m[:, 0:1]
    else:
        out = torch.addcmul(bias[:, None, :], a[..., 0:1], m[:, 0:1])
    for i in range(1, k):
        out.addcmul_(a[..., i : i + 1], m[:, i : i + 1])
    return out


def sum_outer(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``Σ_{t,b} a[t,r,b] c[t,r,b]ᵀ`` for ``a [T, R, B, m]``, ``c [T, R, B, n]`` -> ``[R, m, n]``.

    One ``bmm`` over the ``T·R`` blocks (time-major rows cannot be merged per realization
    without a copy), then a pairwise sum over time (:func:`flossrun.fast.ops.pairwise_sum`: the
    same rounding for a realization alone or in an ensemble).
    """
    T, R, B = a.shape[:3]
    blocks = blas.bmm(a.reshape(T * R, B, -1).transpose(1, 2), c.reshape(T * R, B, -1))
    return pairwise_sum(blocks.view(T, R, *blocks.shape[1:]))


def _unroll(
    x: torch.Tensor, W: torch.Tensor, V: torch.Tensor, b: torch.Tensor, h0: torch.Tensor, keep: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """States ``hs [T, R, B, N]`` and ``φ(h_0..h_T) [T+1, R, B, N]`` (only the last two steps
    kept, as ``[2, R, B, N]``, when ``keep`` is False)."""
    T, R, B, _ = x.shape
    N = W.shape[1]
    hs = small_matmul(x, V.transpose(1, 2), b)  # [T, R, B, N]: V x_t + b
    phis = torch.empty((T + 1 if keep else 2, R, B, N), dtype=W.dtype, device=W.device)
    WT = W.transpose(1, 2).contiguous()  # a contiguous operand makes each bmm ~30% faster
    h_t, phi_t = hs.unbind(0), phis.unbind(0)
    torch.tanh(h0, out=phi_t[0])
    direct = blas.direct(phi_t[0], WT) and blas.direct(phi_t[-1], WT)  # once for every step
    for t in range(T):
        prev, nxt = (t, t + 1) if keep else (t % 2, (t + 1) % 2)
        if direct:
            h_t[t].baddbmm_(phi_t[prev], WT)
        else:
            blas.baddbmm_(h_t[t], phi_t[prev], WT)
        torch.tanh(h_t[t], out=phi_t[nxt])
    return hs, phis


def _readout(hs: torch.Tensor, w_out: torch.Tensor, b_out: torch.Tensor) -> torch.Tensor:
    """Logits ``z [T, R, B, O]`` of states ``hs [T, R, B, N]``."""
    return small_matmul(hs, w_out.transpose(1, 2), b_out)


class _VanillaRNN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, W, V, b, h0, w_out, b_out):
        ctx.set_materialize_grads(False)  # unused outputs (states or logits) get no gradient
        hs, phis = _unroll(x, W, V, b, h0, keep=True)
        z = _readout(hs, w_out, b_out)
        ctx.save_for_backward(x, W, w_out, hs, phis)
        return hs, z

    @staticmethod
    @once_differentiable
    def backward(ctx, g_hs, g_z):
        x, W, w_out, hs, phis = ctx.saved_tensors
        T, R, B, N = hs.shape
        S = x.shape[-1]
        grad_w_out = grad_b_out = None
        if g_z is None and g_hs is None:
            return (None,) * 7
        if g_z is not None:
            grad_w_out = sum_outer(g_z, hs)
            grad_b_out = pairwise_sum(pairwise_sum(g_z), 1)  # [R, O]
            delta = small_matmul(g_z, w_out)  # [T, R, B, N]: g_t, becomes δ_t in place
            if g_hs is not None:
                delta += g_hs
        else:
            delta = g_hs.clone()
        grad_W = torch.zeros_like(W)
        back = torch.empty((R, B, N), dtype=W.dtype, device=W.device)  # Wᵀ δ_{t+1}, as rows
        dphi = torch.empty_like(back)
        one = torch.ones((), dtype=W.dtype, device=W.device)
        d_t, phi_t = delta.unbind(0), phis.unbind(0)
        dT = d_t[0].transpose(1, 2)
        direct = blas.direct(dT, phi_t[0]) and blas.direct(d_t[0], W)
        direct = direct and blas.direct(d_t[-1], W) and blas.offset_aligned(back)
        for t in range(T - 1, -1, -1):  # d_t[t] is δ_{t+1} (h_{t+1} = hs[t])
            if t < T - 1:
                torch.addcmul(one, phi_t[t + 1], phi_t[t + 1], value=-1, out=dphi)
                d_t[t].addcmul_(dphi, back)
            if direct:
                grad_W.baddbmm_(d_t[t].transpose(1, 2), phi_t[t])
                torch.bmm(d_t[t], W, out=back)
            else:
                blas.baddbmm_(grad_W, d_t[t].transpose(1, 2), phi_t[t])
                blas.bmm_into(back, d_t[t], W)
        torch.addcmul(one, phi_t[0], phi_t[0], value=-1, out=dphi)
        grad_h0 = dphi.mul_(back)
        ones = torch.ones_like(x[..., :1])
        grad_V, grad_b = sum_outer(delta, torch.cat([x, ones], dim=-1)).split([S, 1], dim=-1)
        return None, grad_W, grad_V, grad_b.squeeze(-1), grad_h0, grad_w_out, grad_b_out


def vanilla_rnn(
    x: torch.Tensor,
    W: torch.Tensor,
    V: torch.Tensor,
    b: torch.Tensor,
    h0: torch.Tensor,
    w_out: torch.Tensor,
    b_out: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """States and logits of ``R`` vanilla RNNs over a sequence, differentiable.

    ``x [T, R, B, S]`` (inputs; not differentiated), ``W [R, N, N]``, ``V [R, N, S]``,
    ``b [R, N]``, ``h0 [R, B, N]``, ``w_out [R, O, N]``, ``b_out [R, O]`` -> ``hs [T, R, B, N]``
    (``h_1..h_T``) and ``z [T, R, B, O]``. Equal to the plain autograd loop to float rounding.
    Without autograd (``torch.no_grad`` or no input requiring grad) nothing is kept for a
    backward pass.
    """
    if W.shape[0] == 1 and W.device.type == "cpu":  # alone as in an ensemble (fast.blas)
        hs, z = vanilla_rnn(
            blas.paired(x, 1), *(blas.paired(p) for p in (W, V, b, h0, w_out, b_out))
        )
        return hs[:, :1], z[:, :1]
    params = (W, V, b, h0, w_out, b_out)
    if torch.is_grad_enabled() and any(p.requires_grad for p in params):
        return _VanillaRNN.apply(x, *params)
    hs, _ = _unroll(x, W, V, b, h0, keep=False)
    return hs, _readout(hs, w_out, b_out)
