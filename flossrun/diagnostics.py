"""Jacobian diagnostics built on the dynamics protocol (docs/design.md §4): long-term Jacobians and
error-signal norms as functions of the time lag τ.

- :func:`long_term_jacobian`: singular values of ``∂h_{t0+τ}/∂h_{t0}`` for a grid of τ, by
  pushing the identity through ``tangent`` in QR form (:mod:`flossrun.product_svd`: no rounding
  floor, no under- or overflow at long lags).
- :func:`condition_number`: ``log10(σ_1/σ_k)`` from those singular values.
- :func:`error_signal_norms`: ``‖∂L_T/∂h_{T−τ}‖`` for the loss at the last step, one backward pass.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from flossrun.fast.ops import pairwise_sum
from flossrun.lyapunov import autograd_tangent
from flossrun.models.base import Dynamics
from flossrun.product_svd import graded_log_singular_values, scaled_product
from flossrun.tasks import DelayedParity, bce_with_logits


@dataclass
class JacobianResult:
    """Singular values of the long-term Jacobian ``∂h_{t0+τ}/∂h_{t0}``.

    ``lags``: the τ (steps), ascending. ``log_sv [L, ..., D]``: natural log of the singular
    values at each lag, descending along the last axis, float64 (``-inf`` for an exact zero,
    NaN where the value is not certified to ``MAX_LOG_SV_ERROR``). ``log_sv_error [L, ...]``:
    the certified bound on the error of every ``ln σ_i`` of that lag (nats, see
    :mod:`flossrun.product_svd`). ``h``: the state after the longest lag.
    """

    lags: list[int]
    log_sv: torch.Tensor
    log_sv_error: torch.Tensor
    h: torch.Tensor

    @property
    def singular_values(self) -> torch.Tensor:
        """``σ_i`` themselves, ``[L, ..., D]`` (may underflow to 0 or overflow at long lags)."""
        return self.log_sv.exp()


MAX_LOG_SV_ERROR = 0.01  # nats: ln σ_i with a larger certified error bound are reported as NaN


def _check_lags(lags: Sequence[int], low: int, high: int, strict_order: bool) -> list[int]:
    """Validate ``lags`` as integers in ``[low, high]`` (ascending and distinct if asked)."""
    lags = list(lags)
    if not lags:
        raise ValueError(f"lags must name at least one lag in [{low}, {high}], got none")
    if any(isinstance(t, bool) or int(t) != t or not low <= t <= high for t in lags):
        raise ValueError(f"lags must be integers in [{low}, {high}], got {lags}")
    if strict_order and any(a >= b for a, b in itertools.pairwise(lags)):
        raise ValueError(f"lags must be strictly increasing, got {lags}")
    return [int(t) for t in lags]


def long_term_jacobian(
    model: Dynamics,
    h0: torch.Tensor,
    inputs: torch.Tensor,
    lags: Sequence[int],
    transient: int = 0,
) -> JacobianResult:
    """Singular values of ``∂h_{t0+τ}/∂h_{t0}`` with ``t0 = transient``, for each τ in ``lags``.

    ``h0 [..., D]`` (``[R, B, N]`` for the RNNs); ``inputs [T, ..., S]`` (or whatever
    ``model.step`` accepts per step, e.g. ``[T, B, S]`` shared by all realizations). The state is
    first advanced ``transient`` steps; then ``Q = I [..., D, D]`` is pushed through
    ``model.tangent`` (autograd JVPs if the model has none) for ``max(lags)`` steps.

    The product is accumulated in QR form as in the Benettin pass, ``J_t Q_{t−1} = Q_t R_t``
    (``Q`` in the model's dtype, each QR and the triangular product ``R_t ⋯ R_1`` in float64,
    row-scaled with log scales so nothing under- or overflows), and its singular values come
    from :func:`flossrun.product_svd.graded_log_singular_values`: accurate relative to each
    ``σ_i`` itself, not to ``σ_1``, so spreads of hundreds of nats are measured. The bound that
    method certifies is returned as ``log_sv_error``; values with a bound above
    ``MAX_LOG_SV_ERROR`` are NaN (not seen in practice: the largest bound over the quick
    ``jacobian`` preset, N = 48, lags to 200, is 2e-5 nats, where near-equal pairs slow the
    iteration). The step Jacobians themselves
    carry the model's rounding (use a float64 model for long lags). Returns log singular values
    (nats).
    """
    T = inputs.shape[0]
    if not 0 <= transient < T:
        raise ValueError(f"transient must be in [0, {T - 1}] (T={T} steps), got {transient}")
    lags = _check_lags(lags, 1, T - transient, strict_order=True)
    model = model.cell() if hasattr(model, "cell") else model  # derived weights once
    tangent = getattr(model, "tangent", None)
    if tangent is None:

        def tangent(h, x, Q):
            return autograd_tangent(model, h, x, Q)

    D = h0.shape[-1]
    wanted = set(lags)
    log_sv, errors = [], []
    with torch.no_grad():
        h = h0
        for t in range(transient):
            h = model.step(h, inputs[t])
        f64 = dict(dtype=torch.float64, device=h.device)
        Q = torch.eye(D, dtype=h.dtype, device=h.device).expand(*h.shape, D).clone()  # [..., D, D]
        U = torch.eye(D, **f64).expand(*h.shape, D).clone()  # R_τ⋯R_1 = diag(e^ℓ) U
        ell = torch.zeros(h.shape, **f64)  # [..., D]
        for tau in range(1, lags[-1] + 1):
            x = inputs[transient + tau - 1]
            Q64, R = torch.linalg.qr(tangent(h, x, Q).double())
            Q = Q64.to(h.dtype)
            h = model.step(h, x)
            ell, U = scaled_product(R, ell, U)
            if tau in wanted:
                values, error = graded_log_singular_values(ell, U)
                log_sv.append(torch.where(error[..., None] <= MAX_LOG_SV_ERROR, values, torch.nan))
                errors.append(error)
    return JacobianResult(lags, torch.stack(log_sv), torch.stack(errors), h)


def condition_number(log_sv: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """``log10(σ_1/σ_k)`` (decades) from log singular values ``[..., D]`` sorted descending.

    ``k=None`` uses the smallest, ``σ_D``. Returns ``[...]``.
    """
    D = log_sv.shape[-1]
    if k is None:
        k = D
    if not 1 <= k <= D:
        raise ValueError(f"k must be in [1, {D}] (the number of singular values), got {k}")
    return (log_sv[..., 0] - log_sv[..., k - 1]) / math.log(10.0)


def error_signal_norms(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    task: DelayedParity,
    lags: Sequence[int],
) -> torch.Tensor:
    """``‖∂L_T/∂h_{T−τ}‖`` for each τ in ``lags``, averaged over the batch: ``[L, R]``.

    ``L_T`` is the binary cross-entropy with logits at the last step ``T`` (nats per bit, mean
    over output channels) of each trajectory; ``x``, ``y`` are ``[T, R, B, S]`` as returned by
    ``task.sample``. ``model`` needs ``initial_state(B)`` (the start), ``step`` and
    ``readout`` (logits ``[R, B, O]``), like :class:`flossrun.models.VanillaRNN`. Each τ must be in
    ``[0, T−1]`` (``τ = 0`` is the last state itself). One backward pass gives every lag.
    """
    T, B = x.shape[0], x.shape[-2]
    if y.shape[0] != T:
        raise ValueError(f"y must have T={T} steps like x, got {y.shape[0]}")
    if T <= task.delay:
        raise ValueError(f"x must have T > task.delay={task.delay} steps, got T={T}")
    lags = _check_lags(lags, 0, T - 1, strict_order=False)
    with torch.enable_grad():
        # h_0 is a fresh leaf so every state is in the graph even for frozen parameters.
        h = model.initial_state(B).detach().requires_grad_(True)  # [R, B, D]
        cell = model.cell() if hasattr(model, "cell") else model
        hs = [h]  # hs[t] = h_t, t = 0..T
        for t in range(T):
            h = cell.step(h, x[t])
            hs.append(h)
        z = model.readout(h)  # [R, B, O]
        loss = bce_with_logits(z, y[-1]).mean(-1)  # [R, B]
        # Trajectories are independent, so the gradient of the sum holds each one's own.
        grads = torch.autograd.grad(loss.sum(), [hs[T - tau] for tau in lags])
    norms = [pairwise_sum(g.square(), -1).sqrt() for g in grads]  # [R, B] each
    return torch.stack([pairwise_sum(n, -1) / B for n in norms])  # [L, R]
