"""Batched matrix products whose every matrix comes out the same whatever its batch-mates.

On CPU, ``torch.bmm`` hands a batch to MKL's batched GEMM, whose result for one matrix depends on
where that matrix sits in memory (its 64-byte alignment) and, for a batch of one, takes a
different route again (a single GEMM, which switches to matrix-vector kernels for thin
shapes). An ensemble's realization would then compute different numbers alone and inside an
ensemble, and flossing amplifies any rounding difference into a different network. The
products here take one of two routes, chosen from the shapes of one matrix only:

- every per-matrix block (``M·K``, ``K·N``, ``M·N`` elements) a multiple of 64 bytes: MKL's
  batched GEMM (every matrix then sits at an equally aligned address), with a lone matrix
  presented as a batch of two (the same matrix twice);
- otherwise: one GEMM per matrix into a buffer whose matrices start at 64-byte boundaries
  (ATen loops over the batch when the output is not contiguous).

Elsewhere (GPU) they are the plain ops. Every function is TorchScript-compatible (the flossing
kernel's step loops call them). ``tests/test_determinism.py`` checks the guarantee.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.autograd.function import once_differentiable

ALIGN = 64  # bytes: MKL's result for a matrix depends on its address modulo this
# (written out as 64 below: TorchScript cannot read module globals)


def _block_aligned(n_elems: int, itemsize: int) -> bool:
    return (n_elems * itemsize) % 64 == 0


def offset_aligned(x: torch.Tensor) -> bool:
    """The view starts 64 bytes into its storage times an integer (PyTorch's CPU allocator
    aligns every storage to 64 bytes)."""
    return (x.storage_offset() * x.element_size()) % 64 == 0


def batched_route(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True where MKL's batched GEMM gives every matrix the same result whatever the batch:
    CPU, all three per-matrix blocks 64-byte multiples and both operands at aligned addresses
    (decided from one matrix's shape, so alone and in an ensemble alike)."""
    M, K, N = a.shape[1], a.shape[2], b.shape[2]
    e = a.element_size()
    return (
        _block_aligned(M * K, e)
        and _block_aligned(K * N, e)
        and _block_aligned(M * N, e)
        and offset_aligned(a)
        and offset_aligned(b)
    )


def aligned_empty(n: int, M: int, N: int, like: torch.Tensor) -> torch.Tensor:
    """Uninitialised ``[n, M, N]`` whose matrices start 64 bytes apart at least and never
    contiguously (the batch stride is padded), so that ATen runs one GEMM per matrix into it
    (with ``beta=0``, which never reads the old contents)."""
    unit = 64 // like.element_size()
    stride = ((M * N + unit - 1) // unit) * unit + unit
    flat = torch.empty(n * stride, dtype=like.dtype, device=like.device)
    return flat.as_strided([n, M, N], [stride, N, 1])


def aligned_like(x: torch.Tensor) -> torch.Tensor:
    """Uninitialised, the shape of ``x [n, M, N]``: contiguous where each matrix of a contiguous
    batch starts at a 64-byte boundary anyway (and on GPUs), else :func:`aligned_empty`. An
    operand built there enters a per-matrix product without a copy (:func:`per_matrix`)."""
    n, M, N = x.shape[0], x.shape[1], x.shape[2]
    if x.device.type != "cpu" or _block_aligned(M * N, x.element_size()):
        return torch.empty([n, M, N], dtype=x.dtype, device=x.device)
    return aligned_empty(n, M, N, x)


def _pair(x: torch.Tensor) -> torch.Tensor:
    """A lone matrix as a batch of two, itself twice, laid out as it was (row- or column-major:
    MKL computes a transposed operand with other kernels) and with a real batch stride (a
    stride of 0 can take another route inside MKL)."""
    if x.stride(2) == 1:
        return torch.cat([x, x])
    xt = x.transpose(1, 2)
    return torch.cat([xt, xt]).transpose(1, 2)


def direct(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the plain ops (``torch.bmm``, ``baddbmm_``) already give every matrix of
    ``a [n, M, K] @ b [n, K, N]`` its placement-independent result: on GPUs, and on CPU for a
    batch of two or more on the batched route. Kernels whose step loops repeat one shape decide
    this once (every step's slice of a block-aligned buffer is aligned alike) and then call the
    plain ops, without a check per step."""
    return a.device.type != "cpu" or (a.shape[0] > 1 and batched_route(a, b))


def paired(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """A lone realization (size 1 along ``dim``) as two copies of itself, so that a kernel runs
    it through the batched products an ensemble's member gets (take index 0 of the result)."""
    return torch.cat([x, x], dim)


def zero_paired(g: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The gradient of a :func:`paired` result: ``g`` for copy 0, zeros for copy 1."""
    return torch.cat([g, torch.zeros_like(g)], dim)


class _PairScope(threading.local):
    """Per thread: whether a :func:`pairing_once` block is open, and its recent pairs."""

    size = 8  # pairs kept (least recently used dropped): a pass reuses two or three weights

    def __init__(self) -> None:
        self.active = False
        self.entries: list[tuple[torch.Tensor, tuple, torch.Tensor]] = []


_scope = _PairScope()


@contextmanager
def pairing_once() -> Iterator[None]:
    """Within the block, a lone matrix entering several products is paired (:func:`_pair`) once
    and the pair reused, as long as the same tensor (same object, address, view geometry and
    version counter) comes again: a lone realization's weight matrix enters every step of a
    Lyapunov pass, and pairing it per product copied ``2·N²`` numbers each time (and, through
    glibc's heap, left resident memory that grew with every step). The block must not see a
    tensor written through ``.data`` (invisible to the version counter); a pass of
    :func:`flossrun.lyapunov.lyapunov_spectrum` opens one."""
    if _scope.active:
        yield
        return
    _scope.active, _scope.entries = True, []
    try:
        yield
    finally:
        _scope.active, _scope.entries = False, []


def _pair_reused(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``(_pair(x), reused)``: from the open :func:`pairing_once` block's pairs when ``x`` was
    paired there before (``reused``), else a new pair (recorded in the block)."""
    with torch.no_grad():
        if not _scope.active:
            return _pair(x), False
        key = (x.data_ptr(), tuple(x.shape), tuple(x.stride()), x._version)
        for i, (t, k, pair) in enumerate(_scope.entries):
            # the same tensor, or a view of the same base with the same geometry (the entries
            # keep their tensors alive, so an address is never reused by another tensor)
            same = t is x or (t._base is not None and t._base is x._base)
            if same and k == key:
                _scope.entries.insert(0, _scope.entries.pop(i))
                return pair, True
        pair = _pair(x)
        _scope.entries = [(x, key, pair), *_scope.entries[: _scope.size - 1]]
        return pair, False


class _LonePairBmm(torch.autograd.Function):
    """``a @ b`` of one matrix on the batched route, computed paired (:func:`_pair`). Autograd
    would keep both pairs per product; this keeps the unpaired operands, or a pair reused from
    a :func:`pairing_once` block (one object for every step), and computes the backward
    products paired as autograd would (gradient ``[g, 0]`` against the pairs: the batched
    GEMM's matrix 0 does not depend on matrix 1, so ``[g, g]`` gives the same numbers)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        (pa, ra), (pb, rb) = _pair_reused(a), _pair_reused(b)
        ctx.save_for_backward(a, b)
        ctx.pairs = (pa if ra else None, pb if rb else None)
        return torch.bmm(pa, pb)[:1]

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):
        a, b = ctx.saved_tensors
        pa, pb = ctx.pairs
        g2 = torch.cat([g, g]).contiguous()
        ga = gb = None
        if ctx.needs_input_grad[0]:
            pb = _pair(b) if pb is None else pb
            ga = torch.bmm(g2, pb.transpose(1, 2))[:1]
        if ctx.needs_input_grad[1]:
            pa = _pair(a) if pa is None else pa
            gb = torch.bmm(pa.transpose(1, 2), g2)[:1]
        return ga, gb


def _lone_pair_bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return _LonePairBmm.apply(a, b)
    return torch.bmm(_pair_reused(a)[0], _pair_reused(b)[0])[:1]


def _aligned_operand(x: torch.Tensor) -> torch.Tensor:
    """``x [n, M, K]`` itself where each of its matrices starts at a 64-byte boundary (aligned
    offset and block), else a copy whose matrices do (:func:`aligned_empty`), in the same
    per-matrix layout (row-major, or column-major for a transposed view): some GEMM kernels
    (MKL's AVX-512 code on AMD EPYC) round differently for an operand at another address."""
    col = x.stride(2) != 1  # a transposed view: keep it column-major
    M, K = (x.shape[2], x.shape[1]) if col else (x.shape[1], x.shape[2])
    if x.shape[0] == 1 or _block_aligned(x.stride(0), x.element_size()):
        if offset_aligned(x):
            return x
    buf = aligned_empty(x.shape[0], M, K, x)
    if col:
        return buf.copy_(x.transpose(1, 2)).transpose(1, 2)
    return buf.copy_(x)


def per_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` one GEMM per matrix, into an :func:`aligned_empty` buffer (rows contiguous,
    batch stride padded), each operand matrix at a 64-byte boundary (:func:`_aligned_operand`)."""
    out = aligned_empty(a.shape[0], a.shape[1], b.shape[2], a)
    return out.baddbmm_(_aligned_operand(a), _aligned_operand(b), beta=0.0)


class _PerMatrixBmm(torch.autograd.Function):
    """``a @ b`` on the per-matrix route with a backward on that route too: autograd's own
    backward of ``baddbmm_`` would form ``Ḡ bᵀ`` and ``aᵀ Ḡ`` with ``torch.bmm`` (MKL's batched
    GEMM on matrices at unaligned addresses), whose rounding depends on a matrix's place in the
    batch on some CPUs (AMD EPYC)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        return per_matrix(a, b).contiguous()

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        # through bmm again, so that a double backward (autograd tangents) stays on the route
        a, b = ctx.saved_tensors
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = bmm(g, b.transpose(1, 2))
        if ctx.needs_input_grad[1]:
            gb = bmm(a.transpose(1, 2), g)
        return ga, gb


def bmm_strided(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` like :func:`bmm`, but on the per-matrix route the result stays in its padded
    buffer: for a consumer that reads it once (an add, a ``where``), the copy into a contiguous
    tensor would cost more than the product. Under autograd it is :func:`bmm` (whose backward
    stays on the per-matrix route)."""
    if a.device.type != "cpu" or batched_route(a, b):
        return bmm(a, b)
    if not torch.jit.is_scripting():
        if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
            return bmm(a, b)
    return per_matrix(a, b)


def bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for ``a [n, M, K]``, ``b [n, K, N]`` -> ``[n, M, N]`` (contiguous)."""
    if a.device.type != "cpu":
        return torch.bmm(a, b)
    if batched_route(a, b):
        if a.shape[0] == 1:
            if not torch.jit.is_scripting():  # (the scripted kernels run without autograd)
                return _lone_pair_bmm(a, b)
            return torch.bmm(_pair(a), _pair(b))[:1]
        return torch.bmm(a, b)
    if not torch.jit.is_scripting():  # (the scripted kernels run without autograd)
        if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
            return _PerMatrixBmm.apply(a, b)
    return per_matrix(a, b).contiguous()


def bmm_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``out = a @ b`` in place (``out [n, M, N]`` contiguous); returns ``out``."""
    if a.device.type != "cpu" or (batched_route(a, b) and a.shape[0] > 1):
        if offset_aligned(out) or a.device.type != "cpu":
            return torch.bmm(a, b, out=out)
    return out.copy_(bmm(a, b))


def baddbmm_(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``c += alpha · a @ b`` in place (``c [n, M, N]``); returns ``c``.

    On the batched route (and on GPUs) the product is accumulated inside the GEMM; otherwise it
    is formed per matrix and added (a different rounding, but the same for every batch).
    """
    if a.device.type != "cpu":
        return c.baddbmm_(a, b, alpha=alpha)
    if batched_route(a, b) and offset_aligned(c):
        if a.shape[0] > 1:
            return c.baddbmm_(a, b, alpha=alpha)
        pair = _pair(c).baddbmm_(_pair(a), _pair(b), alpha=alpha)
        return c.copy_(pair[:1])
    return c.add_(bmm_strided(a, b), alpha=alpha)


def baddbmm(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``c + a @ b`` (a new tensor; ``c`` broadcasts to ``[n, M, N]``)."""
    out = torch.empty([a.shape[0], a.shape[1], b.shape[2]], dtype=c.dtype, device=c.device)
    return baddbmm_(out.copy_(c), a, b)
