"""Cholesky QR with a Householder fallback and the analytic thin-QR backward.

For a tall ``A [..., D, k]`` (D ≥ k): ``G = AᵀA`` in float64, ``G = RᵀR`` (Cholesky, positive
diagonal), ``Q = A R⁻¹``. The Gram matrix squares the condition number κ of A, so it is always
formed and factorised in float64; the triangular solve then picks its precision from κ (estimated
by ``max_i R_ii / min_i R_ii``, a lower bound), for each matrix of a batch from its own κ, so that
a matrix's factors never depend on its batch-mates:

- float32 ``A`` with ``κ ≤ F32_SOLVE_COND``: solve in float32 (orthogonality ``≈ ε₃₂κ``, the same
  order as LAPACK Householder in float32);
- ``κ ≤ SINGLE_PASS_COND``: solve in float64 (orthogonality ``≈ ε₆₄κ² ≪ ε₃₂``);
- otherwise, and always for float64 ``A``: a second pass (CholQR2: ``Q₁ = A R₁⁻¹``,
  ``Q R₂ = Q₁``, ``R = R₂R₁``), orthogonal to working precision for ``κ ≲ ε₆₄^{-1/2}``
  (Yamamoto et al., 2015);
- a matrix whose Cholesky fails (``cholesky_ex`` info > 0) or with ``κ ≥ FALLBACK_COND`` is
  factorised by LAPACK Householder instead (signs fixed so that ``diag R > 0``).

Backward (Q̄, R̄ given; here R̄ = diag(r̄) because only ``diag R`` is returned):

    Ā = [Q̄ + Q copyltu(M)] R⁻ᵀ,   M = R R̄ᵀ − Q̄ᵀ Q,   copyltu(M) = tril(M) + tril(M, −1)ᵀ

and ``copyltu(R diag(r̄)) = diag(r ⊙ r̄)`` since R is upper triangular, so
``Ā = [Q̄ − Q (copyltu(Q̄ᵀQ) − diag(r ⊙ r̄))] R⁻ᵀ``: two bmm's and one triangular solve.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from flossrun.fast import blas

F32_SOLVE_COND = 100.0  # float32 A: solve in float32 while ε₃₂κ ≤ 6e-6
SINGLE_PASS_COND = 4e3  # one pass with a float64 solve while ε₆₄κ² ≤ 4e-9 (≪ ε₃₂ = 6e-8)
FALLBACK_COND = 1e6  # Householder beyond this (CholQR2 needs κ ≪ ε₆₄^{-1/2} ≈ 7e7)


# The cores work on transposes, ``At = Aᵀ [n, k, D]`` (each column of A a contiguous row), so
# that every triangular solve is a left solve on a row-major right-hand side, done in place:
# with A itself (row-major) ``solve_triangular(..., left=False)`` first copies A into column-major
# order, which cost more than the solve. Everything down to _lower_mask is TorchScript-compatible
# (flossrun.fast.jit compiles the flossing kernel, which calls these, to run without the GIL).


def _cholesky_by_address(k: int = 75) -> bool:
    """Whether this CPU's LAPACK Cholesky (``potrf``) of a float64 ``k × k`` matrix rounds
    differently at an address that is not a multiple of 64 bytes: a batch of two random Gram
    matrices, the second factorised in the batch and alone. MKL's AVX-512 code on AMD EPYC
    (Zen 5) does, for odd k ≥ 17 of those tried (k = 75 among them); on the Intel development
    machine the batched call passed the alone == ensemble tests. In a contiguous batch matrix i
    starts ``8 i k²`` bytes in, so its factor would depend on i."""
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(2, k, k + 4, dtype=torch.float64, generator=gen)
    G = torch.bmm(A, A.transpose(1, 2))
    batch = torch.linalg.cholesky_ex(G, upper=True)[0][1]
    alone = torch.linalg.cholesky_ex(G[1:2].clone(), upper=True)[0][0]
    return not torch.equal(batch, alone)


# Measured once, at import (about 0.1 ms); the compiled kernels see it as a default argument.
CHOLESKY_BY_ADDRESS = _cholesky_by_address()


def _gram_cholesky_rows(
    At64: torch.Tensor, by_address: bool = CHOLESKY_BY_ADDRESS, live: int = -1, pairs: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``R [n, k, k]`` upper triangular with ``RᵀR = At Atᵀ`` (float64) and ``ok [n]``.

    Factorised in place: the Gram matrix is symmetric, so its transpose is the same matrix laid
    out column-major, the layout LAPACK works in. Passed as the output too, ``cholesky_ex`` only
    zeroes its lower triangle instead of copying it into a fresh factor first (the copy, a
    strided loop, took about half of the call's time). The ``.L`` overload with ``L=``/``info=``
    is the spelling both Python and TorchScript accept.

    ``live`` (``-1``: all ``k``): the rows from ``live`` on are zero padding
    (:func:`padded_rows`); their Gram diagonal is set to 1, so that they factorise as the
    identity block they are. ``pairs``: the batch's second half repeats its first (a lone
    realization paired with a copy of itself): the Gram matrices are formed for both halves (a
    batched product, as inside an ensemble; a batch of one would take another route) and only
    the first half's are factorised (``R [n/2, k, k]``).

    Where the batch's matrices do not all start at 64-byte boundaries (k not a multiple of 4)
    and this CPU's Cholesky depends on the address (``by_address``, by default
    ``CHOLESKY_BY_ADDRESS``; an argument because TorchScript reads no module globals), each
    matrix is factorised alone at a 64-byte-aligned address (:func:`_gram_cholesky_aligned`):
    the factor of a realization then never depends on its place in the ensemble (alone, a
    matrix starts at an aligned address too)."""
    n, k = At64.shape[0], At64.shape[1]
    m = n // 2 if pairs else n
    if by_address and n > 1 and k % 4 != 0 and At64.device.type == "cpu":
        return _gram_cholesky_aligned(At64.narrow(0, 0, m), live)
    L = blas.bmm(At64, At64.transpose(1, 2)).narrow(0, 0, m).transpose(1, 2)
    _unit_padding(L, live)
    info = torch.empty(m, dtype=torch.int32, device=L.device)
    R, info = torch.ops.aten.linalg_cholesky_ex(L, upper=True, L=L, info=info)
    return R, info == 0


def _unit_padding(G: torch.Tensor, live: int) -> None:
    """Set the Gram diagonal of the padding rows (from ``live`` on; none when ``live < 0``) to 1."""
    k = G.shape[1]
    if 0 <= live < k:
        G.diagonal(0, 1, 2).narrow(1, live, k - live).fill_(1.0)


def _gram_cholesky_aligned(At64: torch.Tensor, live: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_gram_cholesky_rows` one matrix at a time: the Gram matrices formed into a buffer
    whose matrices start at 64-byte boundaries (:func:`blas.per_matrix`), each factorised in
    place there (a view with the strides of a batch of one, column-major, so that LAPACK works
    on it without a copy), then the factors copied out into the contiguous column-major batch
    the solves read."""
    n, k = At64.shape[0], At64.shape[1]
    G = blas.per_matrix(At64, At64.transpose(1, 2))  # [n, k, k], padded batch stride
    _unit_padding(G, live)
    info = torch.empty(n, dtype=torch.int32, device=G.device)
    stride, base = G.stride(0), G.storage_offset()
    for i in range(n):
        Li = G.as_strided([1, k, k], [k * k, 1, k], base + i * stride)  # Gᵢᵀ, column-major
        torch.ops.aten.linalg_cholesky_ex(Li, upper=True, L=Li, info=info[i : i + 1])
    R = torch.empty([n, k, k], dtype=G.dtype, device=G.device).copy_(G).transpose(1, 2)
    return R, info == 0


def _solve_rows(R: torch.Tensor, At: torch.Tensor, inplace: bool) -> torch.Tensor:
    """``R⁻ᵀ At`` (= ``(A R⁻¹)ᵀ``) for upper triangular ``R``; overwrites ``At`` if ``inplace``."""
    # Always the in-place route (on a private copy when not ``inplace``): LAPACK's solve on a
    # row-major right-hand side rounds differently from one on a fresh column-major result.
    B = At if inplace else At.clone()
    return torch.linalg.solve_triangular(R.transpose(1, 2), B, upper=False, out=B)


def _householder_positive(At64: torch.Tensor, live: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LAPACK thin QR of ``A = Atᵀ`` with the sign convention ``diag R ≥ 0``, as
    ``(Qᵀ [n, k, D], R [n, k, k])``; padding rows (from ``live`` on) stay zero rows of ``Qᵀ``
    and an identity block of ``R``."""
    n, k, D = At64.shape[0], At64.shape[1], At64.shape[2]
    m = k if live < 0 else live
    Q, R = torch.linalg.qr(At64.narrow(1, 0, m).transpose(1, 2))
    s = torch.sign(torch.diagonal(R, 0, -2, -1))
    s = torch.where(s == 0, torch.ones_like(s), s)
    Q, R = Q * s.unsqueeze(-2), R * s.unsqueeze(-1)
    if m == k:
        return Q.transpose(1, 2), R
    Qt = torch.zeros([n, k, D], dtype=At64.dtype, device=At64.device)
    Qt.narrow(1, 0, m).copy_(Q.transpose(1, 2))
    Rp = torch.eye(k, dtype=At64.dtype, device=At64.device).repeat(n, 1, 1)
    Rp.narrow(1, 0, m).narrow(2, 0, m).copy_(R)
    return Qt, Rp


def _two_pass_rows(
    At64: torch.Tensor, R: torch.Tensor, cond: torch.Tensor, fallback_cond: float, live: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """CholQR2 in float64 (``Qᵀ [n, k, D]``, ``R``), with LAPACK Householder for the matrices it
    cannot handle (``cond ≥ fallback_cond``, NaN, or a failed Cholesky in either pass).
    ``At64`` is left unchanged."""
    bad = ~(cond < fallback_cond)  # also NaN and failed Cholesky (inf)
    Q1t = _solve_rows(R, At64, False)
    R2, ok2 = _gram_cholesky_rows(Q1t, live=live)
    Qt, R = _solve_rows(R2, Q1t, True), blas.bmm(R2, R)
    bad = bad | ~ok2
    if bool(bad.any()):
        idx = bad.nonzero().squeeze(1)
        Qh, Rh = _householder_positive(At64[idx], live)
        Qt, R = Qt.index_copy(0, idx, Qh), R.index_copy(0, idx, Rh)
    return Qt, R


def _float64_rows(
    At64: torch.Tensor,
    R: torch.Tensor,
    cond: torch.Tensor,
    single_pass_cond: float,
    fallback_cond: float,
    live: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The float64 routes for float32 matrices the float32 solve cannot take, chosen per
    matrix: one pass with a float64 solve while ``cond ≤ single_pass_cond``, else CholQR2
    (with its Householder fallback). Returns float64 ``Qᵀ`` and ``R``; ``At64`` is overwritten."""
    one = cond <= single_pass_cond
    if bool(one.all()):
        return _solve_rows(R, At64, True), R
    Qt, R2 = _two_pass_rows(At64, R, cond, fallback_cond, live)
    if bool(one.any()):
        idx = one.nonzero().squeeze(1)
        Qt = Qt.index_copy(0, idx, _solve_rows(R[idx], At64[idx], False))
        R2 = R2.index_copy(0, idx, R[idx])
    return Qt, R2


def cholesky_qr_rows(
    At: torch.Tensor,
    inplace: bool = False,
    f32_solve_cond: float = F32_SOLVE_COND,
    single_pass_cond: float = SINGLE_PASS_COND,
    fallback_cond: float = FALLBACK_COND,
    live: int = -1,
    pairs: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin QR of ``A = Atᵀ``, given ``At [n, k, D]`` (k ≤ D): ``Qᵀ [n, k, D]``, ``R [n, k, k]``
    (upper triangular, positive diagonal) and ``log diag R [n, k]`` (taken in float64), in the
    dtype of ``At``, with ``A = Q R``.

    Every route is chosen per matrix from that matrix's own condition estimate, so a matrix's
    result does not depend on the others in the batch (an ensemble's realizations give the same
    numbers alone or together). For float32 ``At`` all matrices take the float32 solve (the
    common case); only those whose estimate exceeds ``f32_solve_cond`` are redone in float64.

    ``inplace``: write ``Qᵀ`` into ``At`` (which the caller no longer needs). ``live``: the
    rows from ``live`` on are zero padding (:func:`padded_rows`; ``-1``: none), which come out
    as zero rows of ``Qᵀ``, an identity block of ``R`` and logs 0, and take no part in the
    condition estimate. ``pairs``: the batch's second half repeats its first (a lone
    realization paired with a copy of itself): the first half is factorised (Gram matrices
    formed for both, see :func:`_gram_cholesky_rows`) and its ``Qᵀ`` repeated; ``R`` and the
    logs are the first half's. The condition thresholds are arguments only because TorchScript
    cannot read module globals.
    """
    At64 = At.to(torch.float64)  # At itself when already float64
    R64, ok = _gram_cholesky_rows(At64, live=live, pairs=pairs)
    if not pairs:
        return _factor_rows(At, At64, R64, ok, inplace, f32_solve_cond, single_pass_cond,
                            fallback_cond, live)  # fmt: skip
    m = R64.shape[0]
    Qt, R, logr = _factor_rows(At.narrow(0, 0, m), At64.narrow(0, 0, m), R64, ok, inplace,
                               f32_solve_cond, single_pass_cond, fallback_cond, live)  # fmt: skip
    if inplace:
        At.narrow(0, m, m).copy_(Qt)
        return At, R, logr
    return torch.cat([Qt, Qt]), R, logr


def _factor_rows(
    At: torch.Tensor,
    At64: torch.Tensor,
    R64: torch.Tensor,
    ok: torch.Tensor,
    inplace: bool,
    f32_solve_cond: float,
    single_pass_cond: float,
    fallback_cond: float,
    live: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`cholesky_qr_rows` from the Cholesky factors ``R64`` (``ok``: they exist) of the
    Gram matrices of ``At`` (``At64``: in float64): the routes, per matrix."""
    d = torch.diagonal(R64, 0, -2, -1)
    if 0 <= live < d.shape[1]:
        d = d.narrow(1, 0, live)
    lo, hi = torch.aminmax(d, dim=-1)
    cond = torch.where(ok, hi / lo, torch.full_like(hi, float("inf")))  # NaN stays NaN
    if At.dtype == torch.float64:
        Qt, R64 = _two_pass_rows(At64, R64, cond, fallback_cond, live)
        if inplace:
            Qt = At.copy_(Qt)
        return Qt, R64, torch.log(torch.diagonal(R64, 0, -2, -1))
    R = R64.to(At.dtype)
    Qt = _solve_rows(R, At, inplace)  # float32 solve for all (ε₃₂κ ≤ 6e-6 where it is kept)
    hard = ~(cond <= f32_solve_cond)  # also NaN and failed Cholesky (inf)
    if bool(hard.any()):  # one host sync per QR
        idx = hard.nonzero().squeeze(1)
        Qh, Rh = _float64_rows(
            At64[idx], R64[idx], cond[idx], single_pass_cond, fallback_cond, live
        )
        # in place: R keeps the column-major layout it has without a hard matrix (LAPACK's
        # triangular solves round differently on another layout, on some instruction sets)
        R64.index_copy_(0, idx, Rh)
        Qt[idx] = Qh.to(At.dtype)  # in place: Qt may be the caller's buffer
        R = R64.to(At.dtype)
    logr = torch.log(torch.diagonal(R64, 0, -2, -1)).to(At.dtype)
    return Qt, R, logr


def qr_backward_rows(
    gQt: torch.Tensor | None, gr: torch.Tensor | None, Qt: torch.Tensor, R: torch.Tensor
) -> torch.Tensor:
    """``Āᵀ [n, k, D]`` from ``Q̄ᵀ [n, k, D]`` and ``r̄ [n, k]`` (grad of ``diag R``; either may
    be None), given the forward ``Qᵀ`` and upper triangular ``R`` (both in Q's dtype).

    Transposed, the module's formula reads ``Āᵀ = R⁻¹ [Q̄ᵀ − S Qᵀ]`` with the symmetric
    ``S = copyltu(Q̄ᵀQ) − diag(r ⊙ r̄)``: one solve in place on a row-major right-hand side.
    ``Q̄ᵀ`` (contiguous) is overwritten by ``Āᵀ``: pass a tensor nothing else reads. An ``R`` of
    ``n/2`` matrices (and ``r̄`` of as many) is a lone realization paired with a copy of
    itself (:func:`cholesky_qr_rows` with ``pairs``): the products run on both copies, the
    solve on copy 0, and copy 1's adjoint is zero.
    """
    n, m, k = Qt.shape[0], R.shape[0], Qt.shape[1]
    if gQt is not None:
        M = blas.bmm_strided(gQt, Qt.transpose(1, 2))  # Q̄ᵀQ [n, k, k] (read once, by where)
        S = blas.aligned_like(M)  # its matrices at 64-byte boundaries, like M's
        torch.where(_lower_mask(k, Qt.device), M, M.transpose(1, 2), out=S)  # copyltu(Q̄ᵀQ)
    else:
        S = torch.zeros([n, k, k], dtype=R.dtype, device=R.device)
    if gr is not None:
        S.narrow(0, 0, m).diagonal(0, 1, 2).sub_(torch.diagonal(R, 0, 1, 2) * gr)
    Y = blas.bmm(S, Qt).neg_() if gQt is None else blas.baddbmm_(gQt, S, Qt, alpha=-1.0)
    if m < n:  # a lone pair (R of copy 0 only): copy 0's adjoint, copy 1 carries no loss
        Y0 = Y.narrow(0, 0, m)
        torch.linalg.solve_triangular(R, Y0, upper=True, out=Y0)
        Y.narrow(0, m, n - m).zero_()
        return Y
    return torch.linalg.solve_triangular(R, Y, upper=True, out=Y)


def padded_rows(k: int, D: int) -> int:
    """The rows a Benettin kernel carries a frame of ``k`` vectors in R^D with: the least
    ``k' ≥ k`` with ``k'`` a multiple of 4 and ``k'·D`` of 16, the rest zero rows. Then the
    frame's ``[k', D]`` and ``[k', k']`` blocks fill whole 64-byte lines in float32 and float64,
    so that every product and Cholesky of the step takes the batched route and still gives each
    realization the numbers it gets alone (:mod:`flossrun.fast.blas`), instead of one LAPACK/BLAS
    call per matrix (at k = 75, D = 80: k' = 76, 1.3 % more work)."""
    kp = k
    while kp % 4 != 0 or (kp * D) % 16 != 0:
        kp += 1
    return kp


def pad_frame(Qt: torch.Tensor, B: int, kp: int) -> torch.Tensor:
    """``Qᵀ [R, B·k, D]`` -> ``[R, B·k', D]``: each trajectory's ``k`` rows followed by
    ``k' − k`` zero rows (``Qt`` itself when ``k' = k``)."""
    R, D = Qt.shape[0], Qt.shape[2]
    k = Qt.shape[1] // B
    if kp == k:
        return Qt
    out = torch.zeros([R, B, kp, D], dtype=Qt.dtype, device=Qt.device)
    out.narrow(2, 0, k).copy_(Qt.reshape(R, B, k, D))
    return out.view(R, B * kp, D)


def unpad_frame(Qt: torch.Tensor, B: int, k: int) -> torch.Tensor:
    """The inverse of :func:`pad_frame`: ``[R, B·k', D]`` -> ``[R, B·k, D]`` (contiguous)."""
    R, D = Qt.shape[0], Qt.shape[2]
    kp = Qt.shape[1] // B
    if kp == k:
        return Qt
    return Qt.view(R, B, kp, D).narrow(2, 0, k).reshape(R, B * k, D)


def frame_qr(
    At: torch.Tensor, k: int, live: int = -1, lone: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One QR step of a Benettin kernel: the ensemble's stacked frames ``Aᵀ [R, B·k, D]``
    orthonormalised in place (:func:`cholesky_qr_rows`; rows ``live..k-1`` of each frame zero
    padding) -> ``Qᵀ [R, B·k, D]``, ``R [R·B, k, k]`` and ``log R_ii [R, B, k]`` (nats);
    for a ``lone`` pair (``R = 2``, equal copies) ``R`` and the logs are copy 0's."""
    n_r, rows, D = At.shape[0], At.shape[1], At.shape[2]
    Qt, Rt, logr = cholesky_qr_rows(At.view(n_r * rows // k, k, D), True, live=live, pairs=lone)
    return Qt.view(n_r, rows, D), Rt, logr.view(-1, rows // k, k)


def frame_qr_backward(
    gQt: torch.Tensor | None, g_logr: torch.Tensor | None, Qt: torch.Tensor, Rt: torch.Tensor
) -> torch.Tensor | None:
    """The adjoint of :func:`frame_qr`: ``Āᵀ [R, B·k, D]`` from ``Q̄ᵀ [R, B·k, D]`` and
    ``∂L/∂log R_ii [R, B, live]`` (the frame's live rows; either may be None; None when both
    are), given the step's ``Qᵀ`` and ``R``."""
    n, k = Rt.shape[0], Rt.shape[1]  # (n: copy 0's frames for a lone pair)
    gr: torch.Tensor | None = None
    if g_logr is not None:
        live = g_logr.shape[-1]
        # the first n frames' logs: all of them, or copy 0's of a lone pair (R covers copy 0)
        g = g_logr.reshape(-1, live).narrow(0, 0, n)
        g = g / torch.diagonal(Rt, 0, -2, -1).narrow(1, 0, live)
        # the padding rows' logs are constants (0): no adjoint
        gr = g if live == k else torch.cat([g, g.new_zeros([n, k - live])], 1)
    if gQt is None and gr is None:
        return None
    D = Qt.shape[2]
    n_all = Qt.shape[0] * Qt.shape[1] // k
    gQ_ = None if gQt is None else gQt.view(n_all, k, D)
    return qr_backward_rows(gQ_, gr, Qt.view(n_all, k, D), Rt).view(Qt.shape)


def frame_step(
    At: torch.Tensor,
    k: int,
    qr: bool,
    keep: bool,
    logs: torch.Tensor,
    j: int,
    lone: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor], int]:
    """The frame a Benettin kernel carries past its step, from the step's tangent frame
    ``Aᵀ [R, B·k, D]``: at a QR step (``qr``) ``(Qᵀ, [Qᵀ, R], j')`` by :func:`frame_qr`, the
    logs (nats) of the frame's live rows written to ``logs[j] [R, B, live]`` when ``keep``
    (then ``j' = j + 1``; ``k − live`` trailing rows are :func:`padded_rows` zeros); otherwise
    ``(Aᵀ, [], j)``. The list is what the step's trace keeps for :func:`frame_step_backward`.

    ``lone``: the slice is a lone realization paired with a copy of itself (``R = 2``, both
    copies equal): copy 0 is factorised (its Gram products run on both copies, the batched
    route an ensemble's matrices take) and its Q copied to copy 1, which is what copy 1 would
    compute (every matrix's QR is its own); R then holds copy 0's."""
    if not qr:
        none: list[torch.Tensor] = []
        return At, none, j
    Qt, Rt, logr = frame_qr(At, k, logs.shape[-1], lone)
    if keep:
        logs[j].copy_(logr.narrow(2, 0, logs.shape[-1]))  # (to both copies when lone)
        j += 1
    return Qt, [Qt, Rt], j


def frame_step_backward(
    gQt: torch.Tensor | None,
    record: list[torch.Tensor],
    qr: bool,
    keep: bool,
    g_logs: torch.Tensor,
    j: int,
) -> tuple[torch.Tensor | None, int]:
    """The adjoint of :func:`frame_step`, walking the kept logs back: ``(Āᵀ, j')`` from ``Q̄ᵀ``
    (None: no frame adjoint yet) and the adjoints ``g_logs [n_kept, R, B, k]``, given the step's
    trace ``record`` whose last two entries are ``[Qᵀ, R]`` when ``qr``; ``Āᵀ = Q̄ᵀ`` otherwise.
    A lone pair's step (:func:`frame_step` with ``lone``: its R covers copy 0 only) computes copy
    0's adjoint (only copy 0 carries the loss) and gives copy 1 a zero one."""
    if not qr:
        return gQt, j
    g_logr: torch.Tensor | None = None
    if keep:
        j -= 1
        g_logr = g_logs[j]
    n = len(record)
    return frame_qr_backward(gQt, g_logr, record[n - 2], record[n - 1]), j


def _lower_mask(k: int, device: torch.device) -> torch.Tensor:
    """``[k, k]`` boolean, True on and below the diagonal."""
    return torch.ones(k, k, dtype=torch.bool, device=device).tril()


def cholesky_qr_factor(
    A: torch.Tensor, live: int = -1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin QR without autograd: ``A [..., D, k]`` -> ``Q [..., D, k]``, ``R [..., k, k]`` (upper
    triangular, positive diagonal) and ``log diag R [..., k]`` (taken in float64), all in the
    dtype of ``A``, with ``A = Q R``; ``live`` as in :func:`cholesky_qr`."""
    D, k = A.shape[-2:]
    if D < (k if live < 0 else live):
        raise ValueError(f"cholesky_qr needs a tall matrix (D >= k), got D={D}, k={k}")
    lead = A.shape[:-2]
    Qt, R, logr = cholesky_qr_rows(A.detach().reshape(-1, D, k).transpose(1, 2), live=live)
    Q = Qt.transpose(1, 2).reshape(*lead, D, k)
    return Q, R.reshape(*lead, k, k), logr.reshape(*lead, k)


def qr_backward(
    gQ: torch.Tensor | None, gr: torch.Tensor | None, Q: torch.Tensor, R: torch.Tensor
) -> torch.Tensor:
    """``Ā [..., D, k]`` from ``Q̄ [..., D, k]`` and ``r̄ [..., k]`` (grad of ``diag R``; either
    may be None), given the forward ``Q`` and upper triangular ``R`` (both in Q's dtype)."""
    D, k = Q.shape[-2:]
    Qt = Q.reshape(-1, D, k).transpose(1, 2)
    gQt = None  # a private contiguous copy: qr_backward_rows overwrites it
    if gQ is not None:
        gQt = gQ.reshape(-1, D, k).transpose(1, 2).clone(memory_format=torch.contiguous_format)
    gr = None if gr is None else gr.reshape(-1, k)
    gAt = qr_backward_rows(gQt, gr, Qt, R.reshape(-1, k, k))
    return gAt.transpose(1, 2).reshape(Q.shape)


class _CholeskyQR(torch.autograd.Function):
    @staticmethod
    def forward(ctx, A: torch.Tensor, live: int) -> tuple[torch.Tensor, torch.Tensor]:
        Q, R, _ = cholesky_qr_factor(A, live)
        ctx.save_for_backward(Q, R)
        return Q, torch.diagonal(R, dim1=-2, dim2=-1).clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, gQ: torch.Tensor | None, gr: torch.Tensor | None):
        Q, R = ctx.saved_tensors
        return qr_backward(gQ, gr, Q, R), None


def cholesky_qr(A: torch.Tensor, live: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Thin QR ``A = Q R`` by Cholesky QR, differentiable: ``Q [..., D, k]``, ``diag(R) [..., k]``.

    A drop-in for :func:`flossrun.lyapunov.householder_qr` (``diag R`` here is positive; the
    Householder one may carry signs, so compare ``|diag R|`` and ``Q`` up to column signs).
    ``live`` (``-1``: all): the columns from ``live`` on are zero padding (:func:`padded_rows`),
    returned as zero columns of ``Q`` and ones in ``diag(R)``.
    """
    return _CholeskyQR.apply(A, live)
