"""Loss landscapes with λ1 along the same paths (docs/design.md §11).

A path is a set of parameter points θ(s); every point is one realization of an ensemble built
from a template network (:func:`with_points`), so a point's numbers never depend on which other
points share its chunk. At every point, from the network's own ``h0``:

- ``loss``: chaotic LSTM — MSE of its state h over steps ``burn_in+1..steps`` against the s = 1
  trajectory; trained network — the task's loss on a fixed batch of sequences;
- ``outputs [P, steps − burn_in]``: the first output of the open-loop run at a constant input
  (zero for the chaotic LSTM, the middle ω of the grid for a trained sine generator);
- ``lambda_1 [P]`` (nats/step): of the same open-loop dynamics from h0, over ``lyap_steps``
  steps after ``lyap_transient`` (a long window: 100 steps leave errors of several 0.01).

Paths (θ(1) is always the network analysed): ``scale`` θ(s) = s·θ_chaotic; ``from_init``
θ_init + s (θ_trained − θ_init); ``random`` θ_trained + (s − 1) d with a seeded Gaussian ``d``
scaled per tensor to the norm of θ_trained − θ_init; ``grid`` θ_a + s1 (θ_b − θ_a) + s2 d.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from flossrun import seeding
from flossrun.fast.ops import realization_mean
from flossrun.lyapunov import lyapunov_spectrum
from flossrun.models import build_model

# The chaotic 2-unit LSTM of Ribeiro et al. (no bias, zero input): recurrent weights, rows in
# torch.nn.LSTM's gate order (i, f, g, o), two rows per gate; h0 = c0 = 0.5.
CHAOTIC_W = (
    (-1.0, -4.0), (-3.0, -2.0),  # W_i
    (-2.0, 6.0), (0.0, -6.0),  # W_f
    (-1.0, -6.0), (6.0, -9.0),  # W_g
    (4.0, 1.0), (-9.0, -7.0),  # W_o
)  # fmt: skip
CHAOTIC_H0 = 0.5
CHAOTIC_PARAMS = ("W", "V")  # what the chaotic paths move (no bias; readout and h0 fixed)

Params = dict[str, torch.Tensor]


def chaotic_lstm(seed: int = 0, *, dtype: torch.dtype = torch.float64, device="cpu") -> nn.Module:
    """The chaotic 2-unit LSTM as a one-realization ``model=lstm`` ensemble: ``W`` as above,
    ``V = 0``, ``b = 0``, ``h0 = c0 = 0.5``, readout ``z = h_1`` (its first unit)."""
    model = build_model({"name": "lstm", "N": 2}, 1, 1, [seed], dtype=dtype, device=device)
    with torch.no_grad():
        model.W.copy_(torch.tensor(CHAOTIC_W).unsqueeze(0))
        model.V.zero_()
        model.b.zero_()
        model.h0.fill_(CHAOTIC_H0)
        model.w_out.copy_(torch.tensor([[[1.0, 0.0]]]))
        model.b_out.zero_()
    return model


def parameters_of(model: nn.Module, names: tuple[str, ...] | None = None) -> Params:
    """Detached float64 copies of a one-realization model's parameters (``[1, ...]`` each)."""
    return {
        k: p.detach().to(torch.float64).clone()
        for k, p in model.named_parameters()
        if names is None or k in names
    }


def along(s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``s [P]`` shaped to scale ``v [1, ...]`` into ``[P, ...]``."""
    return s.to(v).reshape(-1, *([1] * (v.dim() - 1))) * v


def path_points(a: Params, b: Params, s: torch.Tensor) -> Params:
    """θ(s) = a + s (b − a) for ``s [P]``: ``{name: [P, ...]}`` (float64)."""
    return {k: a[k] + along(s, b[k] - a[k]) for k in a}


def grid_points(a: Params, b: Params, d: Params, s1: torch.Tensor, s2: torch.Tensor) -> Params:
    """θ = a + s1 (b − a) + s2 d for paired ``s1, s2 [P]``: ``{name: [P, ...]}``."""
    return {k: a[k] + along(s1, b[k] - a[k]) + along(s2, d[k]) for k in a}


def random_direction(like: Params, seed: int, norms: Params | None = None) -> Params:
    """A seeded direction (``"landscape"`` stream): U[0, 1) entries without ``norms`` (Ribeiro
    et al.'s random point); with ``norms``, Gaussian tensors scaled to the norm of the
    matching tensor of ``norms``."""
    gen = seeding.generator(seed, "landscape")
    out = {}
    for k, v in like.items():
        if norms is None:
            out[k] = torch.rand(v.shape, generator=gen, dtype=torch.float64)
        else:
            g = torch.randn(v.shape, generator=gen, dtype=torch.float64)
            out[k] = g * (norms[k].norm() / g.norm().clamp_min(1e-300))
    return out


def s_values(s_min: float, s_max: float, points: int) -> torch.Tensor:
    """``points`` values: ``points − 1`` evenly spaced in [s_min, s_max] plus s = 1, sorted
    (float64; s = 1, the network analysed, is always on the path when in range)."""
    s = torch.linspace(s_min, s_max, points - 1, dtype=torch.float64)
    return torch.sort(torch.cat([s, torch.ones(1, dtype=torch.float64)])).values


def grid_axis(low: float, high: float, n: int, include: tuple[float, ...]) -> torch.Tensor:
    """``n`` values evenly spaced in [low, high] plus the values of ``include`` inside that
    range (sorted, without duplicates; float64), so that e.g. s1 = 1, s2 = 0 — the network
    analysed itself — is a grid point, as in the reference."""
    s = torch.linspace(low, high, n, dtype=torch.float64)
    extra = torch.tensor([v for v in include if low <= v <= high], dtype=torch.float64)
    return torch.unique(torch.cat([s, extra]))


def with_points(template: nn.Module, points: Params) -> nn.Module:
    """A copy of the one-realization ``template`` whose realizations are the ``P`` points:
    each named parameter replaced by ``points[name] [P, ...]`` (cast to the template's dtype),
    the others repeated ``P`` times."""
    P = next(iter(points.values())).shape[0]
    model = copy.deepcopy(template)
    for name, p in template.named_parameters():
        value = points[name] if name in points else p.detach().expand(P, *p.shape[1:])
        setattr(model, name, nn.Parameter(value.to(p).contiguous(), requires_grad=False))
    return model


LossFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]  # (model, states [T, P, 1, D]) -> [P]


@torch.no_grad()
def evaluate_points(
    template: nn.Module,
    points: Params,
    loss_fn: LossFn,
    x: torch.Tensor,
    burn_in: int,
    *,
    seed: int = 0,
    chunk: int = 256,
    lyap: tuple[torch.Tensor, int] | None = None,
) -> dict[str, torch.Tensor]:
    """Loss, outputs and λ1 at every point (see the module docstring), ``chunk`` points at a
    time. ``x [steps, 1, S]``: the open-loop input, shared by every point. ``lyap = (x_l,
    transient)``: λ1 over ``x_l [transient + lyap_steps, 1, S]`` from h0, the first
    ``transient`` steps dropped (default: ``x`` after ``burn_in``).

    Returns ``loss [P]``, ``outputs [P, steps − burn_in]`` and ``lambda_1 [P]`` (float64, CPU).
    """
    x_l, transient = lyap if lyap is not None else (x, burn_in)
    P = next(iter(points.values())).shape[0]
    parts: dict[str, list[torch.Tensor]] = {"loss": [], "outputs": [], "lambda_1": []}
    for start in range(0, P, chunk):
        model = with_points(template, {k: v[start : start + chunk] for k, v in points.items()})
        n = model.R
        h = model.initial_state(1)  # [n, 1, D]
        hs = model(x, h)  # [steps, n, 1, D]
        z = model.logits(hs[burn_in:])[..., 0, 0]  # [T_keep, n]
        lam = lyapunov_spectrum(model, h, x_l, 1, transient=transient, seed=[seed] * n).exponents
        parts["loss"].append(loss_fn(model, hs).double().cpu())
        parts["outputs"].append(z.T.double().cpu())
        parts["lambda_1"].append(lam[:, 0, 0].double().cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


def state_mse(reference: torch.Tensor, burn_in: int, N: int) -> LossFn:
    """Loss of the chaotic LSTM: MSE of the h part of the states after the burn-in against
    ``reference [T_keep, 1, 1, N]`` (the s = 1 trajectory), per point."""

    def loss(model: nn.Module, hs: torch.Tensor) -> torch.Tensor:
        diff = hs[burn_in:, ..., :N] - reference.to(hs)
        return realization_mean(diff.square(), dim=1)

    return loss


def task_loss(task, x: torch.Tensor, y: torch.Tensor) -> LossFn:
    """Loss of a trained network: the task's loss on the fixed batch ``x, y [T, B, ·]``."""

    def loss(model: nn.Module, hs: torch.Tensor) -> torch.Tensor:
        z = model.predict(x.to(model.h0))  # [T, P, B, O]
        return task.loss(z, y.to(z).unsqueeze(1).expand(-1, model.R, -1, -1))

    return loss


def path_stats(
    s: torch.Tensor, loss: torch.Tensor, lam: torch.Tensor, band: float = 0.01
) -> dict[str, float]:
    """Where λ1 changes sign along a path and how rough the loss is on each side.

    ``crossing``: the first s (midpoint of the two neighbours) where λ1 goes from < 0 to ≥ 0
    (nan if never). ``tv_stable`` / ``tv_chaotic``: total variation of the loss per unit s,
    Σ|ΔL| / Σ Δs over neighbouring points that both have λ1 < 0 / both λ1 ≥ 0 (nan without
    such pairs) — a finite-difference statistic that grows with the resolution on a rugged
    loss, so it comes with ``points_per_s`` (analysis=smoothness has the exact derivatives).
    ``frac_chaotic``: fraction of points with λ1 ≥ 0; ``frac_contracting`` / ``frac_neutral``
    / ``frac_chaotic_band``: with the neutral band (λ1 ≤ −band / |λ1| < band / λ1 ≥ band).
    ``lambda_1_at_1``: λ1 at the point nearest s = 1 (the network analysed).
    """
    s, loss, lam = (t.double() for t in (s, loss, lam))
    ds, dl = s.diff(), loss.diff().abs()
    neg = lam < 0
    up = torch.nonzero(neg[:-1] & ~neg[1:]).flatten()
    crossing = float((s[up[0]] + s[up[0] + 1]) / 2) if len(up) else float("nan")
    out = {"crossing": crossing, "frac_chaotic": float((~neg).double().mean())}
    out["frac_contracting"] = float((lam <= -band).double().mean())
    out["frac_neutral"] = float((lam.abs() < band).double().mean())
    out["frac_chaotic_band"] = float((lam >= band).double().mean())
    out["points_per_s"] = float((len(s) - 1) / (s[-1] - s[0])) if len(s) > 1 else float("nan")
    out["lambda_1_at_1"] = float(lam[(s - 1).abs().argmin()])
    for name, mask in (("tv_stable", neg[:-1] & neg[1:]), ("tv_chaotic", ~neg[:-1] & ~neg[1:])):
        width = ds[mask].sum()
        out[name] = float(dl[mask].sum() / width) if width > 0 else float("nan")
    return out
