"""Memory and smoothness against λ1, per network (``analysis=regions``; docs/design.md §11).

Ribeiro et al. (2020) split RNNs into three regions by their largest Lyapunov exponent λ1:
networks that forget (λ1 < 0: short memory, smooth cost), networks that remember (λ1 ≈ 0: long
memory, a cost still tractable) and chaotic ones (λ1 > 0: rugged cost). Gradient flossing
places a network at a chosen λ1, so the ``regions`` preset flosses vanilla RNNs to a grid of
targets λ* (from an initial gain g: flossing reaches targets ≤ 0 from g = 1 but does not push
a network past λ1 ≈ 0, so chaotic networks start from a large g; docs/pilots.md), trains them
on a delayed task with interflossing, and measures each network at two stages (``STAGES``):
``placed`` — as flossing left it, before training (:class:`PlacementRecorder` keeps its
parameters) — and ``trained`` — at the end of training. Per network and stage
(:func:`network_row`):

- λ1 from a long window (``lyap_steps`` after ``lyap_transient``, on a fixed random input
  sequence of the task, from the network's h0), classified with the neutral band ε;
- memory: the error-signal norm ‖∂L_t/∂h_{t−τ}‖ and the log10 condition number of the
  long-term Jacobian at the longest lag τ of ``diag.lags`` (the run's ``diag.jacobian``
  diagnostics at stage ``preflossed`` — ``initial`` without preflossing — or ``final``);
- smoothness: along θ(s) = θ + (s − 1) d, s ∈ [1 − span, 1 + span] (d a seeded Gaussian
  direction, each tensor scaled to the norm of the matching tensor of θ), the task's cost V_T
  (its loss over the counted steps d+1..T of ``sequences`` fixed sequences) for every horizon
  T, with exact V′ and V″ (:func:`flossrun.analyses.smoothness.path_derivatives`); L = max|V′|,
  L_g = max|V″| over the path and their growth rates with T (slopes of ln L, ln L_g per step
  over T ≥ ``fit_from``, :func:`flossrun.analyses.smoothness.window_table` with one window);
- delayed-copy success after training (the same for both stages of a network).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import torch
from torch import nn

from flossrun import seeding
from flossrun.analyses import landscape as ls
from flossrun.analyses import smoothness as sm
from flossrun.contract import REGION_COLUMNS, REGIONS_CSV, REGIONS_PT, RateRow
from flossrun.tasks.parity import bce_with_logits

STAGES = ("placed", "trained")  # as flossing left a network (before training); after training


class PlacementRecorder:
    """The training hook of ``analysis=regions``: keeps the parameters of every realization as
    preflossing left them (the run's epoch-0 point, before any training step; the initial
    network without preflossing). The snapshot lives in the run's checkpoint, so a resumed run
    measures the same placed networks."""

    figure = "regions"  # the run's figure (plots/regions.png)
    files = f"regions: {REGIONS_CSV} ({REGIONS_PT})"  # what the job writes

    def due(self, epoch: int) -> bool:
        """Only at epoch 0 (after preflossing)."""
        return epoch == 0

    def snapshot(self, model: nn.Module, epoch: int) -> dict:
        """``{"epoch", "parameters": {name: tensor [R, ...]}}`` on the CPU."""
        params = {n: p.detach().cpu().clone() for n, p in model.named_parameters()}
        return {"epoch": epoch, "parameters": params}

    def write(self, out: Any, snapshots: list[dict]) -> None:
        """Nothing: the regions job measures the snapshot after training."""


def placed_model(model: nn.Module, snapshot: dict) -> nn.Module:
    """A copy of the ensemble ``model`` with the parameters of the placement ``snapshot``."""
    net = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(snapshot["parameters"][name].to(p.device, p.dtype))
    return net


def diagnostics_stage(stage: str, preflossed: bool) -> str:
    """The ``diagnostics.csv`` stage that holds a regions ``stage``'s memory numbers."""
    if stage == "trained":
        return "final"
    return "preflossed" if preflossed else "initial"


def one_realization(model: nn.Module, r: int, dtype: torch.dtype = torch.float64) -> nn.Module:
    """A one-realization copy of realization ``r`` of an ensemble in ``dtype``, its parameters
    frozen, with the plain autograd pass (``fast = False``: the fused kernels have no
    forward-mode or double-backward rules)."""
    net = copy.deepcopy(model)
    for name, p in model.named_parameters():
        value = p.detach()[r : r + 1].clone().to(dtype)
        setattr(net, name, nn.Parameter(value, requires_grad=False))
    if hasattr(net, "fast"):
        net.fast = False
    return net


def delayed_cost(
    template: nn.Module, task: Any, x: torch.Tensor, y: torch.Tensor, horizons: list[int]
) -> sm.CostFn:
    """The delayed task's cost for every horizon: V_T = mean BCE (nats per bit) of the logits
    against the targets over steps d+1..T and the sequences ``x [T_max, B, S]``, ``y [T_max,
    B, O]``, from the network's h0. Returns a :data:`~flossrun.analyses.smoothness.CostFn`."""
    d, T_max = task.delay, x.shape[0]

    def cost(points: sm.Params) -> torch.Tensor:
        model = sm.differentiable_points(template, points)
        P, B = model.h0.shape[0], x.shape[1]
        h0 = model.h0.unsqueeze(1).expand(P, B, model.h0.shape[-1])
        z = model.logits(model(x.unsqueeze(1).expand(T_max, P, *x.shape[1:]), h0))
        bits = bce_with_logits(z[d:], y[d:].unsqueeze(1)).mean((2, 3))  # [T_max − d, P]
        csum = bits.cumsum(0)
        return torch.stack([csum[T - d - 1] / (T - d) for T in horizons])

    return cost


def smoothness_of(
    net: nn.Module, task: Any, cfg: Any, seed: int
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """λ1 and the smoothness numbers of the one-realization float64 ``net`` (see the module
    docstring) for the ``analysis.*`` keys ``cfg``. Returns the numbers and the tensors
    (``s [P]``, ``V, d1, d2 [H, P]``, ``lambda_1 [P]``)."""
    H = list(cfg.horizons)
    T_max = max(H)
    dtype, device = net.h0.dtype, net.h0.device
    long = dataclasses.replace(task, T=T_max)
    x, y = long.test_set(seeding.generators([seed], "regions"), cfg.sequences, dtype=dtype,
                         device=device)  # fmt: skip
    x, y = x[:, 0, : cfg.sequences], y[:, 0, : cfg.sequences]  # [T_max, B, ·]
    steps = cfg.lyap_transient + cfg.lyap_steps
    xl = task.drive(seeding.generators([seed], "regions_lyap"), steps, 1, dtype=dtype,
                    device=device)[:, 0]  # fmt: skip  # [steps, 1, S]
    theta = ls.parameters_of(net)
    d = ls.random_direction(theta, seed, norms=theta)
    behind = {k: theta[k] - d[k] for k in theta}  # θ(s) = θ + (s − 1) d
    s = torch.linspace(1 - cfg.span, 1 + cfg.span, cfg.points, dtype=torch.float64)
    cost = delayed_cost(net, task, x, y, H)
    V, d1, d2 = sm.path_derivatives(cost, behind, theta, s, cfg.derivatives)
    pts = ls.path_points(behind, theta, s)
    lam = sm.long_lambda(net, pts, xl, cfg.lyap_transient, seed=seed, chunk=cfg.points)
    lam_T = sm.long_lambda(net, pts, xl[:T_max], 0, seed=seed, chunk=cfg.points)
    _, rates = sm.window_table("random", s, H, d1, d2, lam, lam_T, 1, cfg.neutral_band,
                               cfg.fit_from)  # fmt: skip
    rate = RateRow(*rates[0])
    at_one = float(lam[(s - 1).abs().argmin()])
    numbers = {
        "lambda_1": at_one, "regime": sm.classify(at_one, cfg.neutral_band),
        "lambda_1_path_min": float(lam.min()), "lambda_1_path_max": float(lam.max()),
        "rate_L": rate.rate_L, "rate_L_g": rate.rate_L_g,
        "L_T_max": float(d1[-1].abs().max()), "L_g_T_max": float(d2[-1].abs().max()),
    }  # fmt: skip
    return numbers, {"s": s, "V": V, "d1": d1, "d2": d2, "lambda_1": lam}


def memory_of(diagnostics: list[tuple], r: int, k: int, stage: str = "final") -> dict[str, float]:
    """Error-signal norm and log10 condition number (of the top ``k`` singular values, or the
    largest k recorded below it) at the longest lag, diagnostics ``stage``, of realization ``r``
    from the run's ``diagnostics`` rows ``(r, seed, stage, lag, index, name, value)``; NaN
    without ``diag.jacobian`` (the condition number also where no k ≤ ``k`` was recorded)."""
    rows = [row for row in diagnostics if row[0] == r and row[2] == stage]
    if not rows:
        return {"lag": math.nan, "error_signal_norm": math.nan, "log10_condition": math.nan,
                "condition_k": math.nan}  # fmt: skip
    lag = max(row[3] for row in rows)
    at = [row for row in rows if row[3] == lag]
    err = next((row[6] for row in at if row[5] == "error_signal_norm"), math.nan)
    conds = {row[4]: row[6] for row in at if row[5] == "log10_condition"}
    ks = [c for c in sorted(conds) if c <= k]  # none: NaN (σ1/σ1 says nothing)
    ck = ks[-1] if ks else math.nan
    return {"lag": lag, "error_signal_norm": err, "log10_condition": conds.get(ck, math.nan),
            "condition_k": ck}  # fmt: skip


def network_row(
    r: int,
    seed: int,
    stage: str,
    numbers: dict[str, Any],
    memory: dict[str, float],
    success: bool,
    accuracy: float,
) -> tuple:
    """One ``REGION_COLUMNS`` row (``stage``: one of ``STAGES``; ``success``, ``accuracy``:
    the network's after training)."""
    values = {"realization": r, "seed": seed, "stage": stage, **numbers, **memory,
              "success": bool(success), "test_accuracy": accuracy}  # fmt: skip
    return tuple(values[c] for c in REGION_COLUMNS)
