"""Differentiable Lyapunov spectrum by the QR (Benettin) algorithm (docs/design.md §4).

For a dynamics with ``step(h, x)`` and optionally ``tangent(h, x, Q)``:

    Q_0 = orthonormal [..., D, k] from a seeded Gaussian
    Q̃_t = J_t Q_{t-1},  h_t = step(h_{t-1}, x_t)
    every ``qr_every`` steps: Q, R = qr(Q̃);  λ_i = Σ log|R_ii| / steps covered   (nats per step)

Everything is differentiable with respect to the trajectory, the parameters and every QR.
``orthonormalize`` picks the QR:

- ``householder_qr`` / ``"householder"``: LAPACK Householder under plain autograd (the reference);
- ``"cholesky"``: :func:`flossrun.fast.qr.cholesky_qr` (Cholesky QR, analytic backward) and, for
  a dynamics with ``lyapunov_fused`` (the vanilla RNN, the LSTMs), the whole pass with a
  hand-written adjoint;
- ``"auto"`` (default): ``"cholesky"`` for a dynamics with an analytic ``tangent`` (every model:
  one batched tangent over realizations, trajectories and frame columns per step), Householder
  for one that falls back to autograd JVPs.

All give the same exponents and gradients to float tolerance (``tests/test_fast_paths.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from flossrun import seeding
from flossrun.fast import blas
from flossrun.fast.floss import checkpointing
from flossrun.fast.ops import pairwise_sum
from flossrun.fast.parallel import ensemble_slices, map_slices
from flossrun.fast.qr import cholesky_qr, padded_rows
from flossrun.models.base import Dynamics, RecurrentEnsemble

Orthonormalize = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
SeedLike = int | Sequence[int] | Sequence[torch.Generator]


@dataclass
class LyapunovResult:
    """Exponents and their raw material.

    ``exponents [..., k]``: λ_1..λ_k in nats per step (not sorted: the QR order, which is
    descending for a converged frame). ``block_logs [n_blocks, ..., k]``: log|R_ii| of every
    accumulated QR. ``block_steps``: time steps each block covers. ``h``: final state.
    """

    exponents: torch.Tensor
    block_logs: torch.Tensor
    block_steps: list[int]
    h: torch.Tensor


def householder_qr(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Thin QR ``A = Q R`` (LAPACK Householder): ``Q [..., D, k]`` and ``diag(R) [..., k]``."""
    Q, R = torch.linalg.qr(A)
    return Q, torch.diagonal(R, dim1=-2, dim2=-1)


ORTHONORMALIZERS: dict[str, Orthonormalize] = {
    "householder": householder_qr,
    "cholesky": cholesky_qr,
}


def resolve_orthonormalize(
    orthonormalize: Orthonormalize | str, dynamics: object = None
) -> Orthonormalize:
    """A QR function from itself or its name: a key of ``ORTHONORMALIZERS`` or ``"auto"``
    (Cholesky QR for a dynamics with a fused path or an analytic tangent, else Householder)."""
    if callable(orthonormalize):
        return orthonormalize
    if orthonormalize == "auto":
        fast = hasattr(dynamics, "lyapunov_fused") or hasattr(dynamics, "tangent")
        return cholesky_qr if fast else householder_qr
    if orthonormalize not in ORTHONORMALIZERS:
        names = ", ".join([*ORTHONORMALIZERS, "auto"])
        raise ValueError(
            f"orthonormalize must be one of {names} or a function, got {orthonormalize!r}"
        )
    return ORTHONORMALIZERS[orthonormalize]


def autograd_tangent(
    dynamics: Dynamics, h: torch.Tensor, x: torch.Tensor, Q: torch.Tensor
) -> torch.Tensor:
    """``J Q`` by autograd (slow but exact) for a dynamics without ``tangent``.

    Uses the double-vjp trick ``J v = ∂/∂u ⟨Jᵀu, v⟩``; assumes the leading dims of ``h`` are
    independent systems (true for every dynamics in flossrun).
    """
    create = torch.is_grad_enabled()
    with torch.enable_grad():
        h_in = h if h.requires_grad else h.detach().requires_grad_(True)
        y = dynamics.step(h_in, x)
        u = torch.zeros_like(y, requires_grad=True)
        (jtu,) = torch.autograd.grad(y, h_in, u, create_graph=True)  # [..., D]
        cols = [
            torch.autograd.grad(jtu, u, Q[..., j], create_graph=create, retain_graph=True)[0]
            for j in range(Q.shape[-1])
        ]
    return torch.stack(cols, dim=-1)


def initial_frame(
    shape: Sequence[int], seed: SeedLike, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Orthonormal ``[..., D, k]`` from a seeded Gaussian (drawn on the CPU in float64).

    ``seed``: one int for the whole tensor, or one int / generator per index of the first axis.
    """
    if isinstance(seed, int):
        G = torch.randn(*shape, generator=seeding.generator(seed, "frame"), dtype=torch.float64)
        return torch.linalg.qr(G)[0].to(device=device, dtype=dtype)
    if len(seed) != shape[0]:
        raise ValueError(f"seed must have one entry per realization ({shape[0]}), got {len(seed)}")
    gens = [s if isinstance(s, torch.Generator) else seeding.generator(s, "frame") for s in seed]

    def frames(part: Sequence[torch.Generator]) -> torch.Tensor:
        """The frames of one slice of realizations (a new frame is drawn every flossing epoch,
        so the slices are drawn side by side, one per core)."""
        G = torch.stack([torch.randn(*shape[1:], generator=g, dtype=torch.float64) for g in part])
        return torch.linalg.qr(G)[0]

    slices = ensemble_slices(len(gens), torch.device("cpu"))
    Q = torch.cat(map_slices(frames, [(gens[s],) for s in slices]))
    return Q.to(device=device, dtype=dtype)


def qr_times(T: int, transient: int, qr_every: int) -> list[int]:
    """1-based steps after which a QR happens: every ``qr_every`` steps, re-aligned at the end of
    the transient so that accumulated blocks cover exactly steps ``transient+1..T``."""
    times = [t for t in range(qr_every, transient + 1, qr_every)]
    if transient > 0 and (not times or times[-1] != transient):
        times.append(transient)
    times += list(range(transient + qr_every, T + 1, qr_every))
    if not times or times[-1] != T:
        times.append(T)
    return times


def ensemble_shapes(
    model: RecurrentEnsemble, h0: torch.Tensor, inputs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``h0`` and ``inputs`` of an ensemble of ``R`` networks (state size ``D``) in the kernels'
    shapes, ``h0 [R, B, D]`` and ``inputs [T, B, S]`` (shared by the realizations) or
    ``[T, R, B, S]``, from any accepted combination (views, no copies):

    - ``h0 [D]`` (only for ``R = 1``) with ``inputs [T, S]``;
    - ``h0 [R, D]`` with ``inputs [T, S]`` (shared) or ``[T, R, S]``;
    - ``h0 [R, B, D]`` with ``inputs [T, S]``, ``[T, B, S]`` (shared) or ``[T, R, B, S]``.

    Anything else raises a one-line ValueError naming these shapes (a state whose leading axis
    is not the ``R`` realizations would silently mix them)."""
    R, D = model.R, model.state_dim
    expected = (
        f"h0 [D] (R = 1 only), [R, D] or [R, B, D] with inputs [T, S], [T, R, S] (for h0 [R, D]) "
        f"or [T, B, S], [T, R, B, S] (for h0 [R, B, D]); this model has R = {R}, D = {D}"
    )
    got = f"got h0 {list(h0.shape)} and inputs {list(inputs.shape)}"
    shape, n_in = tuple(h0.shape), inputs.dim()
    if not shape or shape[-1] != D or h0.dim() > 3 or (h0.dim() > 1 and shape[0] != R):
        raise ValueError(f"lyapunov_spectrum expects {expected}; {got}")
    if h0.dim() == 1 and R != 1:
        raise ValueError(f"lyapunov_spectrum expects {expected}; {got} (h0 [D] is ambiguous)")
    T, S = inputs.shape[0], inputs.shape[-1]
    if h0.dim() == 1:
        ok = n_in == 2
        h, x = h0.reshape(1, 1, D), inputs.reshape(T, 1, S)
    elif h0.dim() == 2:
        ok = n_in == 2 or (n_in == 3 and inputs.shape[1] == R)
        h = h0.unsqueeze(1)
        x = inputs.unsqueeze(1) if n_in == 2 else inputs.unsqueeze(2)
    else:
        B = shape[1]
        ok = n_in == 2 or (n_in == 3 and inputs.shape[1] == B)
        ok = ok or (n_in == 4 and inputs.shape[1] == R and inputs.shape[2] == B)
        h, x = h0, (inputs.unsqueeze(1).expand(T, B, S) if n_in == 2 else inputs)
    if not ok:
        raise ValueError(f"lyapunov_spectrum expects {expected}; {got}")
    return h, x


def lyapunov_spectrum(
    dynamics: Dynamics,
    h0: torch.Tensor,
    inputs: torch.Tensor,
    k: int,
    transient: int = 0,
    qr_every: int = 1,
    seed: SeedLike = 0,
    orthonormalize: Orthonormalize | str = "auto",
    checkpoint_every: int | None = None,
) -> LyapunovResult:
    """First ``k`` Lyapunov exponents (nats per step) along the trajectory from ``h0``.

    For a model of :mod:`flossrun.models` (an ensemble of ``R`` networks with state size
    ``D``), the accepted shapes (:func:`ensemble_shapes`) and the returned exponents are:

    - ``h0 [D]`` (a model with ``R = 1``), ``inputs [T, S]`` -> ``exponents [k]``;
    - ``h0 [R, D]``, ``inputs [T, S]`` (shared) or ``[T, R, S]`` -> ``exponents [R, k]``;
    - ``h0 [R, B, D]`` (``B`` trajectories per network), ``inputs [T, S]``, ``[T, B, S]``
      (shared) or ``[T, R, B, S]`` -> ``exponents [R, B, k]``;

    all through the model's fused kernel where it has one (vanilla RNN, LSTMs); any other
    shape is refused with a ValueError. For any other dynamics: ``h0 [..., D]`` and
    ``inputs [T, ...]``, whatever ``dynamics.step`` accepts per step, -> ``exponents [..., k]``.
    ``block_logs`` and ``h`` keep ``h0``'s leading shape the same way.

    Exponents average over steps ``transient+1..T``. ``seed``: one int, or one per
    realization (see :func:`initial_frame`). ``orthonormalize``: a function
    ``A -> (Q, diag R)``, or ``"householder"``, ``"cholesky"`` or ``"auto"`` (see the module
    docstring). ``checkpoint_every`` (fused kernels, with autograd): keep the state and frame
    every m steps only and recompute each segment in the backward pass, O(√T) trace memory for
    m ≈ √T at the cost of a second forward pass; ``None`` (default) does so with m = ⌈√T⌉ when
    the whole trace would pass 128 MiB over 256 steps or more (1 GiB for
    shorter passes, such as flossing's), ``0`` never. Results equal the plain pass to rounding.
    Returns a :class:`LyapunovResult`.
    """
    if isinstance(dynamics, RecurrentEnsemble):
        lead = h0.shape[:-1]
        h, x = ensemble_shapes(dynamics, h0, inputs)
        with checkpointing(checkpoint_every):
            res = _spectrum(dynamics, h, x, k, transient, qr_every, seed, orthonormalize)
        n = res.block_logs.shape[0]
        return LyapunovResult(
            res.exponents.reshape(*lead, k),
            res.block_logs.reshape(n, *lead, k),
            res.block_steps,
            res.h.reshape(h0.shape),
        )
    with checkpointing(checkpoint_every):
        return _spectrum(dynamics, h0, inputs, k, transient, qr_every, seed, orthonormalize)


def _spectrum(
    dynamics: Dynamics,
    h0: torch.Tensor,
    inputs: torch.Tensor,
    k: int,
    transient: int,
    qr_every: int,
    seed: SeedLike,
    orthonormalize: Orthonormalize | str,
) -> LyapunovResult:
    """:func:`lyapunov_spectrum` once the shapes are settled."""
    D, T = h0.shape[-1], inputs.shape[0]
    if not 1 <= k <= D:
        raise ValueError(f"k must be in [1, {D}] (the state dimension), got {k}")
    if not 0 <= transient < T:
        raise ValueError(f"transient must be in [0, {T - 1}] (T={T} steps), got {transient}")
    if qr_every < 1:
        raise ValueError(f"qr_every must be >= 1, got {qr_every}")
    orthonormalize = resolve_orthonormalize(orthonormalize, dynamics)
    Q = initial_frame((*h0.shape, k), seed, h0.dtype, h0.device)  # [..., D, k]
    due = set(qr_times(T, transient, qr_every))
    kept = [t for t in sorted(due) if t > transient]  # QRs whose logs accumulate
    steps = [b - a for a, b in zip([transient, *kept[:-1]], kept, strict=True)]  # block lengths
    fused = getattr(dynamics, "lyapunov_fused", None) if orthonormalize is cholesky_qr else None
    if fused is not None:
        qr_at = [t in due for t in range(1, T + 1)]
        keep = [t in due and t > transient for t in range(1, T + 1)]
        out = fused(h0, inputs, Q, qr_at, keep)
        if out is not None:
            block_logs, h = out  # [n_blocks, ..., k], [..., D]
            return LyapunovResult(pairwise_sum(block_logs) / sum(steps), block_logs, steps, h)
    cell = dynamics.cell() if hasattr(dynamics, "cell") else dynamics  # derived weights once
    tangent = getattr(cell, "tangent", None)
    if tangent is None:

        def tangent(h, x, Q):
            return autograd_tangent(cell, h, x, Q)

    kp = padded_rows(k, Q.shape[-2]) if orthonormalize is cholesky_qr else k
    if kp != k:  # zero columns up to a whole number of 64-byte lines (fast.qr.padded_rows)
        Q = torch.cat([Q, Q.new_zeros([*Q.shape[:-1], kp - k])], -1)

        def orthonormalize(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            Q, r = cholesky_qr(A, k)
            return Q, r[..., :k]

    h, logs, n_logged = h0, [], 0
    # without autograd the logs go straight into one buffer (no small tensor kept per step)
    buffer = None if torch.is_grad_enabled() else Q.new_empty([len(kept), *Q.shape[:-2], k])
    with blas.pairing_once():  # a lone realization's weights paired once for the pass
        for t in range(1, T + 1):
            x = inputs[t - 1]
            Q = tangent(h, x, Q)  # [..., D, k]: one batched product for all trajectories, columns
            h = cell.step(h, x)
            if t in due:
                Q, r = orthonormalize(Q)
                if t > transient:
                    if buffer is None:
                        logs.append(torch.log(torch.abs(r)))
                    else:
                        torch.log(torch.abs(r), out=buffer[n_logged])
                    n_logged += 1
    block_logs = torch.stack(logs) if buffer is None else buffer  # [n_blocks, ..., k]
    return LyapunovResult(pairwise_sum(block_logs) / sum(steps), block_logs, steps, h)
