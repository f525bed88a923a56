"""Every fast path equals the plain autograd computation it replaces (flossrun.fast).

- BPTT kernel (VanillaRNN.forward/predict with ``fast=True``) vs the plain loop: states, logits
  and gradients, gradcheck, and the no-grad path;
- Cholesky QR vs LAPACK Householder: Q up to column signs, |diag R|, gradients through
  log|R_ii| and Q, the float64 two-pass and the Householder fallback;
- the fused Benettin pass (``orthonormalize="cholesky"``) vs Householder under autograd:
  exponents and gradients w.r.t. W, V, b and h0, in float64 (tight) and float32 (as accurate as
  Householder against a float64 truth).
"""

from __future__ import annotations

import pytest
import torch

from flossrun import seeding
from flossrun.fast import cholesky_qr, cholesky_qr_factor, configure_cpu, vanilla_rnn
from flossrun.fast import qr as fast_qr
from flossrun.fast.floss import vanilla_lyapunov
from flossrun.lyapunov import householder_qr, lyapunov_spectrum, resolve_orthonormalize
from flossrun.models import VanillaRNN
from flossrun.tasks import make_task


def _model(N=12, S=2, O=2, R=3, g=1.2, dtype=torch.float64):
    return VanillaRNN(N, S, O, list(range(R)), g=g, dtype=dtype)


def _bits(T, R, B, S, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (T, R, B, S), generator=gen).to(dtype)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# --- training: hand-written BPTT -------------------------------------------------------------
@pytest.mark.parametrize("through", ["predict", "states"])
@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_bptt_kernel_matches_plain_autograd_loop(dtype, rtol, through):
    # "predict": the loss reaches the states through the kernel's own readout (training);
    # "states": through forward() and model.logits (the gradient arrives at h_t directly)
    model = _model(dtype=dtype)
    task = make_task("delayed_xor", 4, T=30, channels=2)
    x, y = task.sample(seeding.generators(model.seeds, "train"), 5, dtype=dtype)
    out = {}
    for fast in (False, True):
        model.fast = fast
        model.zero_grad()
        z = model.predict(x) if through == "predict" else model.logits(model(x))
        task.loss(z, y).sum().backward()
        out[fast] = (z.detach(), _grads(model))
    torch.testing.assert_close(out[True][0], out[False][0], rtol=rtol, atol=rtol)
    assert out[True][1].keys() == {"W", "V", "b", "w_out", "b_out", "h0"}
    for name, g in out[False][1].items():
        scale = g.abs().max()
        torch.testing.assert_close(out[True][1][name], g, rtol=0, atol=rtol * scale, msg=name)


def test_bptt_kernel_gradcheck_through_states_and_logits(float64):
    gen = torch.Generator().manual_seed(1)
    T, R, B, N, S, O = 6, 2, 3, 4, 2, 3
    x = torch.randn(T, R, B, S, generator=gen)
    shapes = {"W": (R, N, N), "V": (R, N, S), "b": (R, N), "h0": (R, B, N)}
    shapes |= {"w_out": (R, O, N), "b_out": (R, O)}
    p = {n: (torch.randn(*s, generator=gen) * 0.8).requires_grad_(True) for n, s in shapes.items()}
    args = (p["W"], p["V"], p["b"], p["h0"], p["w_out"], p["b_out"])
    assert torch.autograd.gradcheck(lambda *a: vanilla_rnn(x, *a), args)
    assert torch.autograd.gradcheck(lambda *a: vanilla_rnn(x, *a)[1], args)  # logits only


def test_bptt_kernel_without_autograd_gives_the_same_numbers(float64):
    model = _model()
    x = _bits(9, 3, 4, 2)
    hs, z = model(x), model.predict(x)
    with torch.no_grad():
        torch.testing.assert_close(model(x), hs.detach(), rtol=0, atol=0)
        torch.testing.assert_close(model.predict(x), z.detach(), rtol=0, atol=0)
    torch.testing.assert_close(z, model.logits(hs), rtol=1e-12, atol=1e-12)


def test_drive_and_logits_equal_their_definitions(float64):
    model = _model()
    x = _bits(7, 3, 4, 2)
    u = model.drive(x)
    ref = torch.einsum("rns,trbs->trbn", model.V, x) + model.b[None, :, None, :]
    torch.testing.assert_close(u, ref)
    torch.testing.assert_close(model.drive(x[:, 0]), model.drive(x[:, :1].expand_as(x)))
    hs = torch.randn(7, 3, 4, model.N)
    z = torch.einsum("ron,trbn->trbo", model.w_out, hs) + model.b_out[None, :, None, :]
    torch.testing.assert_close(model.logits(hs), z)


# --- Cholesky QR --------------------------------------------------------------------------------
def _sign_fixed(Q, r):
    s = torch.sign(r)
    return Q * s.unsqueeze(-2), r.abs()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cholesky_qr_matches_householder_up_to_signs(dtype):
    gen = torch.Generator().manual_seed(2)
    A = torch.randn(3, 2, 20, 9, generator=gen, dtype=torch.float64).to(dtype)
    Qc, rc = cholesky_qr(A)
    Qh, rh = _sign_fixed(*householder_qr(A))
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert (rc > 0).all()
    torch.testing.assert_close(rc, rh, rtol=tol, atol=tol)
    torch.testing.assert_close(Qc, Qh, rtol=tol, atol=tol)
    eye = torch.eye(9, dtype=dtype).expand(3, 2, 9, 9)
    torch.testing.assert_close(Qc.transpose(-2, -1) @ Qc, eye, rtol=0, atol=tol)


def test_cholesky_qr_gradients_match_householder(float64):
    gen = torch.Generator().manual_seed(3)
    A = torch.randn(4, 15, 7, generator=gen, requires_grad=True)
    wQ, wr = torch.randn(4, 15, 7, generator=gen), torch.randn(4, 7, generator=gen)

    def objective(qr):
        Q, r = _sign_fixed(*qr(A))
        return (Q * wQ).sum() + (torch.log(r) * wr).sum()

    (g_ref,) = torch.autograd.grad(objective(householder_qr), A)
    (g_fast,) = torch.autograd.grad(objective(cholesky_qr), A)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(cholesky_qr, (A.detach().clone().requires_grad_(True),))


def _graded(n_rows, k, cond, seed):
    """A ``[n_rows, k]`` matrix with singular values spread geometrically over ``cond``."""
    gen = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(n_rows, k, generator=gen, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(k, k, generator=gen, dtype=torch.float64))[0]
    s = torch.logspace(0, -torch.log10(torch.tensor(cond)).item(), k, dtype=torch.float64)
    return U @ torch.diag(s) @ V.T


def test_cholesky_qr_fallback_handles_failed_and_ill_conditioned_factorisations(
    float64, monkeypatch
):
    A = torch.stack([_graded(20, 8, 10.0, 0), _graded(20, 8, 1e12, 1), _graded(20, 8, 10.0, 2)])
    A[2, :, 5] = A[2, :, 4]  # exactly dependent columns: the Gram matrix is singular
    seen = []
    householder = fast_qr._householder_positive
    monkeypatch.setattr(
        fast_qr,
        "_householder_positive",
        lambda B, live: seen.append(len(B)) or householder(B, live),
    )
    Q, R, logr = cholesky_qr_factor(A)
    assert seen == [2]  # matrices 1 and 2 fell back, matrix 0 did not
    Qh, rh = _sign_fixed(*householder_qr(A))
    torch.testing.assert_close(Q @ R, A, rtol=0, atol=1e-13)
    for i in (0, 1):  # well-conditioned (Cholesky) and κ = 1e12 (Householder fallback)
        torch.testing.assert_close(Q[i], Qh[i], rtol=0, atol=1e-10)
        torch.testing.assert_close(torch.exp(logr[i]), rh[i], rtol=1e-12, atol=0)
    assert torch.diagonal(R[2])[5].abs() < 1e-12  # the dependent column, as LAPACK finds it
    torch.testing.assert_close(torch.diagonal(R[2])[:5], rh[2, :5], rtol=1e-12, atol=0)


def test_cholesky_qr_second_pass_restores_float32_orthogonality():
    A = _graded(60, 20, 3e4, 4).float().unsqueeze(0)  # beyond the one-pass float32 range
    Q, R, _ = cholesky_qr_factor(A)
    eye = torch.eye(20).unsqueeze(0)
    torch.testing.assert_close(Q.transpose(1, 2) @ Q, eye, rtol=0, atol=2e-6)
    r_ref = torch.linalg.qr(A.double())[1].diagonal(dim1=1, dim2=2).abs()
    torch.testing.assert_close(R.diagonal(dim1=1, dim2=2).double(), r_ref, rtol=5e-4, atol=0)


# --- flossing: the fused Benettin pass ---------------------------------------------------------
def _spectrum(model, x, h0, k, orthonormalize, **kw):
    model.zero_grad()
    res = lyapunov_spectrum(
        model, h0, x, k, seed=list(model.seeds), orthonormalize=orthonormalize, **kw
    )
    ((res.exponents - 0.1) ** 2).mean(-1).sum().backward()
    grads = _grads(model)
    if h0.grad is not None:
        grads["h0_input"] = h0.grad.clone()
        h0.grad = None
    return res, grads


@pytest.mark.parametrize(("B", "qr_every", "transient"), [(1, 1, 5), (3, 3, 4), (2, 1, 0)])
def test_fused_pass_matches_householder_autograd_in_float64(float64, B, qr_every, transient):
    model = _model(N=10, R=2)
    x = _bits(20, 2, B, 2)
    h0 = model.initial_state(B).detach().clone().requires_grad_(True)
    ref, g_ref = _spectrum(model, x, h0, 7, "householder", transient=transient, qr_every=qr_every)
    fast, g_fast = _spectrum(model, x, h0, 7, "cholesky", transient=transient, qr_every=qr_every)
    torch.testing.assert_close(fast.exponents, ref.exponents, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.block_logs, ref.block_logs, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.h, ref.h)
    assert fast.block_steps == ref.block_steps
    assert g_fast.keys() == g_ref.keys() == {"W", "V", "b", "h0_input"}
    for name, g in g_ref.items():
        torch.testing.assert_close(g_fast[name], g, rtol=1e-8, atol=1e-10 * g.abs().max(), msg=name)


def test_fused_pass_gradcheck(float64):
    gen = torch.Generator().manual_seed(5)
    W = (torch.randn(2, 5, 5, generator=gen) * 0.6).requires_grad_(True)
    u = torch.randn(8, 2, 1, 5, generator=gen, requires_grad=True)
    h0 = torch.randn(2, 1, 5, generator=gen, requires_grad=True)
    Q0 = torch.linalg.qr(torch.randn(2, 1, 5, 3, generator=gen))[0]
    qr_at = [True, False, True, True, False, True, True, True]
    keep = [False, False, True, True, False, True, True, True]

    def logs(W, u, h0):
        return vanilla_lyapunov(W, u, h0, Q0, qr_at, keep)

    assert torch.autograd.gradcheck(logs, (W, u, h0))


def test_fused_pass_in_float32_is_as_accurate_as_householder():
    R, N, k = 4, 40, 36  # the paper's shape (k close to N), smaller
    model = VanillaRNN(N, 1, 1, list(range(R)))
    m64 = VanillaRNN(N, 1, 1, list(range(R)), dtype=torch.float64)
    x = _bits(40, R, 1, 1, dtype=torch.float32)
    truth, g_truth = _spectrum(
        m64, x.double(), m64.initial_state(1).detach(), k, "householder", transient=10
    )
    err, gerr = {}, {}
    for how in ("householder", "cholesky"):
        res, g = _spectrum(model, x, model.initial_state(1).detach(), k, how, transient=10)
        scale = truth.exponents.abs().amax(-1, keepdim=True)
        err[how] = ((res.exponents.double() - truth.exponents).abs() / scale).max().item()
        gerr[how] = ((g["W"].double() - g_truth["W"]).norm() / g_truth["W"].norm()).item()
    assert err["cholesky"] < 1e-4 and gerr["cholesky"] < 1e-3
    assert err["cholesky"] <= 2 * err["householder"] + 1e-6
    assert gerr["cholesky"] <= 2 * gerr["householder"] + 1e-6


def test_auto_takes_cholesky_qr_only_for_analytic_tangents(float64, linear_map, step_only):
    model = _model()
    assert resolve_orthonormalize("auto", model) is cholesky_qr
    assert resolve_orthonormalize("auto", linear_map(torch.eye(3))) is cholesky_qr
    assert resolve_orthonormalize("auto", step_only(model)) is householder_qr
    assert resolve_orthonormalize(householder_qr, model) is householder_qr
    with pytest.raises(ValueError, match="orthonormalize"):
        resolve_orthonormalize("gram_schmidt", model)


def test_subclass_with_its_own_step_takes_the_generic_cholesky_path(float64):
    class Scaled(VanillaRNN):
        def step(self, h, x):
            return 0.5 * super().step(h, x)

        def tangent(self, h, x, Q):
            return 0.5 * super().tangent(h, x, Q)

    model = Scaled(8, 1, 1, [0, 1], dtype=torch.float64)
    x, h0 = _bits(12, 2, 1, 1), model.initial_state(1).detach()
    assert model.lyapunov_fused(h0, x, None, [True] * 12, [True] * 12) is None
    ref, g_ref = _spectrum(model, x, h0, 5, "householder", transient=2)
    fast, g_fast = _spectrum(model, x, h0, 5, "cholesky", transient=2)
    torch.testing.assert_close(fast.exponents, ref.exponents, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_fast["W"], g_ref["W"], rtol=1e-8, atol=1e-12)


def test_generic_cholesky_path_reproduces_the_henon_exponents(float64, henon):
    Henon, _ = henon
    h0 = torch.tensor([[0.1, 0.1]])
    x = torch.zeros(2000, 1, 1)
    res = lyapunov_spectrum(Henon(), h0, x, 2, transient=100, orthonormalize="cholesky")
    ref = lyapunov_spectrum(Henon(), h0, x, 2, transient=100, orthonormalize="householder")
    torch.testing.assert_close(res.exponents, ref.exponents, rtol=1e-10, atol=1e-12)


def test_configure_cpu_reports_what_it_applied():
    applied = configure_cpu()
    assert set(applied) == {"mallopt", "threads"}
    assert applied["threads"] == torch.get_num_threads()
    assert fast_qr.F32_SOLVE_COND < fast_qr.SINGLE_PASS_COND < fast_qr.FALLBACK_COND


# --- ensemble slices in threads, TorchScript ---------------------------------------------------
def _fused_inputs(R=5, N=9, k=6, T=12, B=2, seed=3):
    gen = torch.Generator().manual_seed(seed)
    W = (torch.randn(R, N, N, generator=gen) / N**0.5).requires_grad_(True)
    u = (0.5 * torch.randn(T, R, B, N, generator=gen)).requires_grad_(True)
    h0 = torch.randn(R, B, N, generator=gen, requires_grad=True)
    Q0 = torch.linalg.qr(torch.randn(R, B, N, k, generator=gen))[0]
    qr_at = [t % 2 == 1 or t == T - 1 for t in range(T)]
    keep = [q and t >= 4 for t, q in enumerate(qr_at)]
    return W, u, h0, Q0, qr_at, keep


def _fused_with_grads(W, u, h0, Q0, qr_at, keep):
    logs, h = vanilla_lyapunov(W, u, h0, Q0, qr_at, keep)
    W.grad = u.grad = h0.grad = None
    (logs.square().sum() + h.sum()).backward()
    return logs.detach(), h.detach(), W.grad.clone(), u.grad.clone(), h0.grad.clone()


def test_fused_pass_in_slices_equals_one_pass(float64, monkeypatch):
    from flossrun.fast import floss

    args = _fused_inputs()
    assert len(floss.ensemble_slices(5, torch.device("cpu"))) == min(torch.get_num_threads(), 5)
    monkeypatch.setattr(floss, "ensemble_slices", lambda R, device: [slice(0, 2), slice(2, 5)])
    sliced = _fused_with_grads(*args)
    monkeypatch.setattr(floss, "ensemble_slices", lambda R, device: [slice(0, R)])
    whole = _fused_with_grads(*args)
    for a, b in zip(sliced, whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)  # float64 rounding


def test_fused_pass_kernels_compile_with_torchscript_and_equal_python(float64):
    from flossrun.fast import floss

    fwd, bwd = floss.forward_jit.compiled(), floss.backward_jit.compiled()
    assert isinstance(fwd, torch.jit.ScriptFunction) and isinstance(bwd, torch.jit.ScriptFunction)
    W, u, h0, Q0, qr_at, keep = (a.detach() if torch.is_tensor(a) else a for a in _fused_inputs())
    Qt0 = floss.frame_rows(Q0)
    out_py = floss._forward(W, u, h0, Qt0, qr_at, keep, True, False)
    out_ts = fwd(W, u, h0, Qt0, qr_at, keep, True, False)
    torch.testing.assert_close(out_ts[:3], out_py[:3], rtol=1e-13, atol=1e-15)
    g_logs = torch.randn_like(out_py[0])
    g_h = torch.randn_like(out_py[1])
    grads_py = floss._backward(W, out_py[3], keep, g_logs, g_h, None, torch.zeros_like(W))
    grads_ts = bwd(W, out_ts[3], keep, g_logs, g_h, None, torch.zeros_like(W))
    torch.testing.assert_close(grads_ts, grads_py, rtol=1e-13, atol=1e-15)


def test_fused_pass_without_autograd_keeps_no_trace_and_gives_the_same_numbers(float64):
    W, u, h0, Q0, qr_at, keep = _fused_inputs()
    logs, h = vanilla_lyapunov(W, u, h0, Q0, qr_at, keep)
    assert logs.grad_fn is not None
    with torch.no_grad():
        logs_ng, h_ng = vanilla_lyapunov(W, u, h0, Q0, qr_at, keep)
    assert logs_ng.grad_fn is None
    torch.testing.assert_close(logs_ng, logs.detach(), rtol=0, atol=0)
    torch.testing.assert_close(h_ng, h.detach(), rtol=0, atol=0)


def test_jit_can_be_turned_off(monkeypatch):
    from flossrun.fast.jit import script

    def twice(x: torch.Tensor) -> torch.Tensor:
        return 2 * x

    monkeypatch.setenv("FLOSSRUN_JIT", "0")
    plain = script(twice)
    assert plain.compiled() is twice and plain(torch.ones(2)).tolist() == [2.0, 2.0]
    monkeypatch.setenv("FLOSSRUN_JIT", "1")
    assert isinstance(script(twice).compiled(), torch.jit.ScriptFunction)


def test_slices_cover_the_ensemble_and_pool_threads_use_one_intra_op_thread():
    from flossrun.fast.parallel import ensemble_slices, map_slices

    for R in (1, 2, 3, 16, 17):
        parts = ensemble_slices(R, torch.device("cpu"))
        covered = [i for s in parts for i in range(R)[s]]
        assert covered == list(range(R)) and len(parts) == min(R, torch.get_num_threads())
    assert ensemble_slices(16, torch.device("meta")) == [slice(0, 16)]
    caller = torch.get_num_threads()
    threads = map_slices(torch.get_num_threads, [(), ()])
    assert threads == [1, 1] and torch.get_num_threads() == caller


def test_an_error_in_one_slice_is_raised_after_all_slices_ended():
    from flossrun.fast.parallel import map_slices

    done = []

    def work(i):
        if i == 0:
            raise ValueError("slice 0 failed")
        done.append(i)
        return i

    with pytest.raises(ValueError, match="slice 0 failed"):
        map_slices(work, [(0,), (1,)])
    assert done == [1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cholesky_qr_rows_in_place_equals_a_fresh_result(dtype):
    gen = torch.Generator().manual_seed(2)
    At = torch.randn(4, 6, 11, generator=gen, dtype=dtype)
    At[1, -1] = At[1, 0] * (1 + 1e-9)  # ill-conditioned: the two-pass / fallback route
    Qt, R, logr = fast_qr.cholesky_qr_rows(At.clone())
    buf = At.clone()
    Qt_in, R_in, logr_in = fast_qr.cholesky_qr_rows(buf, True)
    torch.testing.assert_close(R_in, R, rtol=0, atol=0)
    assert Qt_in.data_ptr() == buf.data_ptr()
    torch.testing.assert_close(Qt_in, Qt, rtol=0, atol=0)
    torch.testing.assert_close(logr_in, logr, rtol=0, atol=0)
    torch.testing.assert_close(R.transpose(1, 2) @ Qt, At, rtol=1e-4, atol=1e-5)


def test_caller_on_one_thread_keeps_the_slices_and_restores_the_threads():
    from flossrun.fast.parallel import caller_on_one_thread, ensemble_slices

    cpu = torch.device("cpu")
    cores = torch.get_num_threads()
    before = ensemble_slices(16, cpu)
    with caller_on_one_thread(16, cpu):
        assert torch.get_num_threads() == 1 or cores == 1
        assert ensemble_slices(16, cpu) == before
    assert torch.get_num_threads() == cores
    with pytest.raises(RuntimeError), caller_on_one_thread(16, cpu):
        raise RuntimeError("a failed epoch")
    assert torch.get_num_threads() == cores
