"""A matrix's numbers must not depend on its address (docs/design.md §6): some CPUs' MKL (AVX-512
code on AMD EPYC) rounds a GEMM, a Cholesky factorisation or an SVD differently for a matrix that
does not start at a 64-byte boundary, and in a contiguous batch of odd-sized matrices most do.
These tests check, on any machine, that the routes taken for such batches compute every matrix
exactly as it is computed alone; ``test_determinism.py`` and ``test_lstm_floss.py`` check the
end-to-end guarantee on the machine that runs them."""

from __future__ import annotations

import pytest
import torch

from flossrun.fast import blas, qr
from flossrun.models.stable import clip_singular_values


def _matrices_aligned(x: torch.Tensor) -> bool:
    return all(x[i].data_ptr() % 64 == 0 for i in range(x.shape[0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("transposed", [False, True])
def test_an_unaligned_operand_is_copied_so_every_matrix_starts_at_64_bytes(dtype, transposed):
    x = torch.randn(3, 11, 13, dtype=dtype)  # 11·13 elements: matrix 1 starts mid-line
    x = x.transpose(1, 2) if transposed else x
    assert not _matrices_aligned(x)
    y = blas._aligned_operand(x)
    assert _matrices_aligned(y) and torch.equal(y, x)
    assert (y.stride(2) == 1) == (x.stride(2) == 1)  # the same per-matrix layout
    aligned = torch.randn(3, 16, 16, dtype=dtype)
    assert blas._aligned_operand(aligned) is aligned  # nothing to copy


@pytest.mark.parametrize("by_address", [False, True])
def test_the_cholesky_of_a_batch_is_each_matrix_factorised_alone(by_address):
    """Both routes agree with each other to rounding, and the address-safe one (taken where
    this CPU needs it) equals the factor of every matrix alone bit for bit."""
    At = torch.randn(4, 11, 13, dtype=torch.float64)  # 11² · 8 bytes: unaligned in a batch
    R, ok = qr._gram_cholesky_rows(At, by_address)
    assert bool(ok.all())
    for i in range(4):
        Ri, _ = qr._gram_cholesky_rows(At[i : i + 1].clone(), by_address)
        if by_address:
            assert torch.equal(R[i], Ri[0])
        torch.testing.assert_close(R[i], Ri[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(R, qr._gram_cholesky_rows(At, not by_address)[0])


def test_per_matrix_products_under_autograd_equal_alone_and_double_backward_works():
    a = torch.randn(3, 11, 13, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 13, 7, dtype=torch.float64, requires_grad=True)
    assert not blas.batched_route(a, b)
    out = blas.bmm(a, b)
    g = torch.randn_like(out)
    ga, gb = torch.autograd.grad(out, (a, b), g, create_graph=True)
    torch.testing.assert_close(ga, g @ b.detach().transpose(1, 2))
    torch.testing.assert_close(gb, a.detach().transpose(1, 2) @ g)
    for i in range(3):
        ai, bi = (t[i : i + 1].detach().clone().requires_grad_(True) for t in (a, b))
        gai, gbi = torch.autograd.grad(blas.bmm(ai, bi), (ai, bi), g[i : i + 1])
        assert torch.equal(ga[i], gai[0]) and torch.equal(gb[i], gbi[0])
    (ga.square().sum() + gb.square().sum()).backward()  # a second derivative through the route
    assert a.grad is not None and b.grad is not None


def test_the_stable_projection_of_a_batch_is_each_matrix_projected_alone():
    W = 0.5 * torch.randn(5, 7, 7, dtype=torch.float32)  # 7² · 4 bytes: unaligned in a batch
    out = clip_singular_values(W, 0.9)
    for i in range(5):
        assert torch.equal(out[i], clip_singular_values(W[i : i + 1].clone(), 0.9)[0])
    assert torch.linalg.matrix_norm(out.double(), ord=2).max() <= 0.9 + 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [7, 12])
def test_a_lone_pair_takes_its_qr_step_once_with_the_numbers_of_both_copies(dtype, k):
    """A lone realization runs paired with a copy of itself; its QR step (frame_step with
    ``lone``) factorises copy 0 only and copies it: both copies, the logs and the adjoint of
    copy 0 are bit for bit those of the step that factorises both; copy 1's adjoint is zero
    (only copy 0 carries the loss)."""
    B, D = 2, 19
    gen = torch.Generator().manual_seed(k)
    At = torch.randn(1, B * k, D, generator=gen, dtype=dtype).repeat(2, 1, 1)  # [2, B·k, D]
    runs = {}
    for lone in (False, True):
        logs = torch.zeros(1, 2, B, k, dtype=dtype)
        Qt, record, j = qr.frame_step(At.clone(), k, True, True, logs, 0, lone)
        g_logs = torch.randn(1, 2, B, k, generator=torch.Generator().manual_seed(1), dtype=dtype)
        g_logs[:, 1] = 0  # copy 1 carries no loss
        gQt = torch.randn(2, B * k, D, generator=torch.Generator().manual_seed(2), dtype=dtype)
        gQt[1] = 0
        gAt, j_back = qr.frame_step_backward(gQt, record, True, True, g_logs, j)
        runs[lone] = (Qt, logs, gAt, j, j_back)
    (Qa, la, ga, ja, jba), (Qb, lb, gb, jb, jbb) = runs[False], runs[True]
    assert torch.equal(Qa, Qb) and torch.equal(la, lb) and (ja, jba) == (jb, jbb) == (1, 0)
    assert torch.equal(ga[0], gb[0]) and not torch.any(gb[1])
    assert torch.equal(Qb[0], Qb[1]) and torch.equal(lb[:, 0], lb[:, 1])


@pytest.mark.parametrize(("k", "D"), [(75, 80), (48, 64), (1, 80), (3, 5), (75, 81), (80, 80)])
def test_a_frame_is_padded_to_the_fewest_rows_that_fill_whole_cache_lines(k, D):
    kp = qr.padded_rows(k, D)
    lines = [(kp * kp * e) % 64 == 0 and (kp * D * e) % 64 == 0 for e in (4, 8)]
    assert kp >= k and all(lines)
    assert all((j % 4 or (j * D) % 16) for j in range(k, kp))  # none fewer would do
    Qt = torch.randn(2, 3 * k, D)  # two realizations, three trajectories' frames stacked
    padded = qr.pad_frame(Qt, 3, kp)
    assert padded.shape == (2, 3 * kp, D)
    assert not padded.view(2, 3, kp, D)[:, :, k:].any()  # zero rows after each frame
    assert torch.equal(qr.unpad_frame(padded, 3, k), Qt)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1.0, 1e7])  # Cholesky QR, and LAPACK Householder's fallback
def test_zero_padding_rows_come_out_of_the_qr_as_an_identity_block(dtype, scale, monkeypatch):
    """The padded frame's live rows get the QR of the frame alone (to rounding), the padding
    stays zero rows of Qᵀ with an identity block of R and logs 0, and the padding takes no part
    in the routes (the condition estimate)."""
    n, k, kp, D = 3, 5, 8, 12
    At = torch.randn(n, k, D, dtype=torch.float64)
    At[1, 0] *= scale  # κ ≈ scale: beyond FALLBACK_COND for 1e7
    At = At.to(dtype)
    Qt, R, logr = qr.cholesky_qr_rows(At.clone())
    padded = torch.zeros(n, kp, D, dtype=dtype)
    padded[:, :k] = At
    seen, householder = [], qr._householder_positive
    monkeypatch.setattr(
        qr, "_householder_positive", lambda B, m: seen.append(m) or householder(B, m)
    )
    Qtp, Rp, logrp = qr.cholesky_qr_rows(padded, live=k)
    assert seen == ([k] if scale > 1 else [])  # only the ill-conditioned matrix falls back
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(Qtp[:, :k], Qt, **tol)
    torch.testing.assert_close(Rp[:, :k, :k], R, **tol)
    torch.testing.assert_close(logrp[:, :k], logr, **tol)
    assert not Qtp[:, k:].any() and not logrp[:, k:].any()
    assert not Rp[:, :k, k:].any() and not Rp[:, k:, :k].any()
    assert torch.equal(Rp[:, k:, k:], torch.eye(kp - k, dtype=dtype).expand(n, -1, -1))
