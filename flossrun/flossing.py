"""Gradient flossing (docs/design.md §5): push the first k Lyapunov exponents toward targets λ*."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from flossrun.fast.ops import pairwise_sum, realization_mean
from flossrun.lyapunov import SeedLike, lyapunov_spectrum


def flossing_loss(exponents: torch.Tensor, target: float | Sequence[float] = 0.0) -> torch.Tensor:
    """``mean_i (λ_i − λ*_i)²`` per realization (nats² per step²).

    ``exponents [R, ..., k]`` -> ``[R]`` (mean over trajectories and exponents); a 1-D ``[k]``
    gives a scalar. ``target``: one number, or ``k`` numbers (one per exponent).
    """
    k = exponents.shape[-1]
    if isinstance(target, int | float):
        tgt = torch.tensor(float(target), dtype=exponents.dtype, device=exponents.device)
    else:
        if len(target) != k:
            raise ValueError(
                f"target must be a number or a list of k={k} numbers, got {len(target)} numbers"
            )
        tgt = torch.as_tensor(list(target), dtype=exponents.dtype, device=exponents.device)
    sq = (exponents - tgt) ** 2
    return pairwise_sum(sq) / k if sq.dim() == 1 else realization_mean(sq)


def floss_exponents(
    model,
    x: torch.Tensor,
    k: int,
    transient: int,
    seed: SeedLike,
    qr_every: int = 1,
) -> torch.Tensor:
    """Exponents ``[R, B, k]`` of ``model`` along inputs ``x [T, R, B, S]`` from a detached ``h0``
    (``h0`` is trained with the task, not flossed)."""
    h = model.initial_state(x.shape[2]).detach()
    return lyapunov_spectrum(
        model, h, x, k, transient=transient, qr_every=qr_every, seed=seed
    ).exponents
