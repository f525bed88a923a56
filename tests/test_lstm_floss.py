"""The LSTM's fused Benettin pass (flossrun.fast.lstm_floss) equals the generic path it replaces.

- float64: block logs, final state and the gradients w.r.t. W, V, b and h0 equal those of
  :func:`flossrun.lyapunov.lyapunov_spectrum` through the model's own ``step``/``tangent`` under
  autograd (``LSTM.lyapunov_fused`` switched off), for lstm and stable_lstm; gradcheck;
- the kernel in ensemble slices equals one pass; TorchScript equals Python; no-grad equals grad;
- float32: a realization's numbers alone equal its numbers inside an ensemble, bit for bit, at 1
  and 2 threads, on both product routes (N = 16: every block 64-byte aligned; N = 12: not).
"""

from __future__ import annotations

import pytest
import torch

from flossrun.fast import lstm_floss
from flossrun.fast.floss import frame_rows
from flossrun.fast.lstm_floss import lstm_lyapunov
from flossrun.lyapunov import lyapunov_spectrum
from flossrun.models import build_model
from flossrun.models.lstm import LSTM


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _spectrum(model, x, h0, k, fused, **kw):
    """Exponents, block logs, final state and gradients of a loss on exponents and state."""
    model.zero_grad()
    h0 = h0.detach().clone().requires_grad_(True)
    cls = type(model)
    if not fused:
        model.lyapunov_fused = lambda *args: None  # the generic path: step/tangent + autograd
    try:
        res = lyapunov_spectrum(
            model, h0, x, k, seed=list(model.seeds), orthonormalize="cholesky", **kw
        )
    finally:
        model.__dict__.pop("lyapunov_fused", None)
    assert type(model) is cls
    ((res.exponents - 0.1) ** 2).mean(-1).sum().backward(retain_graph=True)
    (res.h.square().sum() * 0.01).backward()
    grads = _grads(model)
    grads["h0_input"] = h0.grad.clone()
    return res, grads


@pytest.mark.parametrize("name", ["lstm", "stable_lstm"])
@pytest.mark.parametrize(
    ("R", "B", "qr_every", "transient"), [(3, 1, 1, 5), (2, 3, 2, 4), (3, 2, 1, 0)]
)
def test_fused_pass_equals_generic_path_in_float64(float64, name, R, B, qr_every, transient):
    # (qr_every = 3 on stable_lstm: blocks of condition ~e^12, where the generic path's own
    # Householder and Cholesky gradients already differ by 1e-9 relative)
    model = build_model({"name": name, "N": 7}, 2, 1, list(range(R)), dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(20, R, B, 2, generator=gen)
    h0 = model.initial_state(B).detach() + 0.3 * torch.randn(R, B, 14, generator=gen)
    kw = {"transient": transient, "qr_every": qr_every}
    ref, g_ref = _spectrum(model, x, h0, 9, False, **kw)
    fast, g_fast = _spectrum(model, x, h0, 9, True, **kw)
    torch.testing.assert_close(fast.block_logs, ref.block_logs, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.h, ref.h, rtol=0, atol=1e-12)
    assert fast.block_steps == ref.block_steps
    assert g_fast.keys() == g_ref.keys() == {"W", "V", "b", "h0_input"}
    for key, g in g_ref.items():
        err = ((g_fast[key] - g).abs().max() / g.abs().max()).item()
        assert err < 1e-9, (key, err)


def test_fused_pass_is_used_for_lstm_and_stable_lstm_only_with_their_own_equations():
    x, Q = torch.zeros(4, 2, 1, 1), torch.zeros(2, 1, 8, 3)
    flags = [True] * 4
    for name in ("lstm", "stable_lstm"):
        model = build_model({"name": name, "N": 4}, 1, 1, [0, 1])
        assert model.lyapunov_fused(model.initial_state(1), x, Q, flags, flags) is not None

    class Leaky(LSTM):
        def step(self, h, x):
            return 0.5 * h + 0.5 * super().step(h, x)

    model = Leaky(4, 1, 1, [0, 1])
    assert model.lyapunov_fused(model.initial_state(1), x, Q, flags, flags) is None


def _inputs(R=3, N=5, k=4, T=9, B=1, seed=3):
    gen = torch.Generator().manual_seed(seed)
    W = (torch.randn(R, 4 * N, N, generator=gen) / N**0.5).requires_grad_(True)
    u = torch.randn(T, R, B, 4 * N, generator=gen).requires_grad_(True)
    h0 = (0.5 * torch.randn(R, B, 2 * N, generator=gen)).requires_grad_(True)
    Q0 = torch.linalg.qr(torch.randn(R, B, 2 * N, k, generator=gen))[0]
    qr_at = [t % 3 != 1 or t == T - 1 for t in range(T)]
    keep = [q and t >= 2 for t, q in enumerate(qr_at)]
    return W, u, h0, Q0, qr_at, keep


def test_fused_pass_gradcheck(float64):
    W, u, h0, Q0, qr_at, keep = _inputs(R=2, B=2)

    def run(W, u, h0):
        return lstm_lyapunov(W, u, h0, Q0, qr_at, keep)

    assert torch.autograd.gradcheck(run, (W, u, h0))


def _with_grads(W, u, h0, Q0, qr_at, keep):
    logs, h = lstm_lyapunov(W, u, h0, Q0, qr_at, keep)
    W.grad = u.grad = h0.grad = None
    (logs.square().sum() + h.sum()).backward()
    return logs.detach(), h.detach(), W.grad.clone(), u.grad.clone(), h0.grad.clone()


def test_fused_pass_in_slices_equals_one_pass(float64, monkeypatch):
    args = _inputs(R=5, B=2)
    monkeypatch.setattr(lstm_floss, "ensemble_slices", lambda R, device: [slice(0, 2), slice(2, 5)])
    sliced = _with_grads(*args)
    monkeypatch.setattr(lstm_floss, "ensemble_slices", lambda R, device: [slice(0, R)])
    whole = _with_grads(*args)
    for a, b in zip(sliced, whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_fused_pass_kernels_compile_with_torchscript_and_equal_python(float64):
    fwd, bwd = lstm_floss.forward_jit.compiled(), lstm_floss.backward_jit.compiled()
    assert isinstance(fwd, torch.jit.ScriptFunction) and isinstance(bwd, torch.jit.ScriptFunction)
    W, u, h0, Q0, qr_at, keep = (a.detach() if torch.is_tensor(a) else a for a in _inputs(B=2))
    Qt0 = frame_rows(Q0)
    out_py = lstm_floss._forward(W, u, h0, Qt0, qr_at, keep, True, False)
    out_ts = fwd(W, u, h0, Qt0, qr_at, keep, True, False)
    torch.testing.assert_close(out_ts[:3], out_py[:3], rtol=1e-13, atol=1e-15)
    g_logs, g_h = torch.randn_like(out_py[0]), torch.randn_like(out_py[1])
    grads_py = lstm_floss._backward(W, out_py[3], keep, g_logs, g_h, None, torch.zeros_like(W))
    grads_ts = bwd(W, out_ts[3], keep, g_logs, g_h, None, torch.zeros_like(W))
    torch.testing.assert_close(grads_ts, grads_py, rtol=1e-13, atol=1e-15)


def test_fused_pass_without_autograd_keeps_no_trace_and_gives_the_same_numbers():
    W, u, h0, Q0, qr_at, keep = _inputs(B=2)
    logs, h = lstm_lyapunov(W, u, h0, Q0, qr_at, keep)
    assert logs.grad_fn is not None
    with torch.no_grad():
        logs_ng, h_ng = lstm_lyapunov(W, u, h0, Q0, qr_at, keep)
    assert logs_ng.grad_fn is None
    assert torch.equal(logs_ng, logs.detach()) and torch.equal(h_ng, h.detach())


@pytest.mark.parametrize("N", [16, 12])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_realization_alone_equals_itself_inside_an_ensemble(N, threads):
    """float32, k close to D: logs, state and every gradient of realization 1 bit for bit."""
    W, u, h0, Q0, qr_at, keep = (
        a.detach().float() if torch.is_tensor(a) else a for a in _inputs(R=4, N=N, k=2 * N - 3)
    )
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        W, u, h0 = (a.requires_grad_(True) for a in (W, u, h0))
        together = _with_grads(W, u, h0, Q0, qr_at, keep)
        one = [a[1:2].detach().clone() for a in (W, h0, Q0)]
        alone = _with_grads(
            one[0].requires_grad_(True),
            u[:, 1:2].detach().clone().requires_grad_(True),
            one[1].requires_grad_(True),
            one[2],
            qr_at,
            keep,
        )
    finally:
        torch.set_num_threads(old)
    logs, h, gW, gu, gh = together
    picked = (logs[:, 1:2], h[1:2], gW[1:2], gu[:, 1:2], gh[1:2])
    for a, b in zip(picked, alone, strict=True):
        assert torch.equal(a, b), (a - b).abs().max()
