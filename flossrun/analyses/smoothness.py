"""Smoothness of the cost along a path against the horizon T (docs/design.md §11).

Along a 1-D path θ(s) = a + s (b − a) the cost V_T(s) of horizon T (the loss of steps 1..T) and
its exact derivatives V′ = dV/ds = ∇V·(b − a) and V″ = d²V/ds² = (b − a)ᵀ H (b − a) come from
autograd: forward mode twice (default) or reverse mode with a double backward of V′
(:func:`path_derivatives`). Every
point is one realization of an ensemble (:func:`differentiable_points`), so its derivatives
never depend on the other points.

Per window of s (the path cut into ``windows`` equal parts) and horizon (:func:`window_table`):
``L = max |V′|`` and ``L_g = max |V″|`` over the window's points, and the local minima of V per
unit s (sign changes − → + of V′ between neighbouring points; at most one per pair of points,
so the count saturates at the path's resolution, which is reported with it). The growth rates
are the least-squares slopes of ln L and ln L_g against T (nats per step, :func:`growth_rate`)
over the horizons ≥ ``fit_from``. Ribeiro et al. (2020): both grow like e^{λ1 T} and e^{2 λ1 T}
where the dynamics are chaotic (λ1 > 0) and stay bounded where they contract (λ1 < 0).

λ1 at every point comes from a long window (``lyap_steps`` after ``lyap_transient``) of the
same open-loop dynamics (:func:`long_lambda`), and each window is classified by the mean λ1 of
its points: contracting (λ1 ≤ −ε), neutral (|λ1| < ε) or chaotic (λ1 ≥ ε), ε =
``neutral_band`` (:func:`classify`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from flossrun.lyapunov import lyapunov_spectrum

Params = dict[str, torch.Tensor]
CostFn = Callable[[Params], torch.Tensor]  # points {name: [P, ...]} -> V_T [H, P]
CLASSES = ("contracting", "neutral", "chaotic")


def classify(lam: float, band: float) -> str:
    """``contracting`` (λ1 ≤ −band), ``neutral`` (|λ1| < band) or ``chaotic`` (λ1 ≥ band)."""
    if lam >= band:
        return "chaotic"
    if lam <= -band:
        return "contracting"
    return "neutral"


def differentiable_points(template: nn.Module, points: Params) -> nn.Module:
    """A copy of the one-realization ``template`` whose realizations are the ``P`` points, with
    ``points[name] [P, ...]`` as plain tensors (so a graph to the path coordinate survives) and
    the other parameters repeated ``P`` times (detached)."""
    P = next(iter(points.values())).shape[0]
    model = copy.deepcopy(template)
    for name, p in template.named_parameters():
        value = points[name] if name in points else p.detach().expand(P, *p.shape[1:])
        del model._parameters[name]
        setattr(model, name, value.to(p.dtype))
    return model


METHODS = ("forward", "reverse")


def _on_path(a: Params, b: Params, s: torch.Tensor) -> Params:
    """θ(s) = a + s (b − a): ``{name: [P, ...]}``, differentiable in ``s [P]``."""
    return {k: a[k] + s.reshape(-1, *([1] * (a[k].dim() - 1))) * (b[k] - a[k]) for k in a}


def path_derivatives(
    cost: CostFn, a: Params, b: Params, s: torch.Tensor, method: str = "forward"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """V, V′ and V″ at ``s [P]`` for θ(s) = a + s (b − a) (``a``, ``b``: ``{name: [1, ...]}``).

    ``cost(points) -> [H, P]`` evaluates V_T at every horizon. The points are independent
    (realizations), so a derivative with respect to the vector ``s`` along all-ones is every
    point's own derivative. ``method``: ``forward`` — forward-mode AD twice
    (``torch.func.jvp`` of a jvp): every horizon from one pass over T_max steps; ``reverse`` —
    the gradient of Σ_points V_T and a double backward of it, one pair of passes per horizon
    (the same numbers to rounding, several times slower for many horizons). Returns three
    float64 tensors ``[H, P]``.
    """
    s = s.detach().to(torch.float64).clone()
    if method == "forward":
        from torch.func import jvp

        ones = torch.ones_like(s)

        def first(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return jvp(lambda y: cost(_on_path(a, b, y)), (x,), (ones,))

        (V, d1), (_, d2) = jvp(first, (s,), (ones,))
        return V.detach().double(), d1.detach().double(), d2.detach().double()
    s.requires_grad_(True)
    V = cost(_on_path(a, b, s))  # [H, P]
    out = [torch.zeros_like(V, dtype=torch.float64) for _ in range(2)]
    for i in range(V.shape[0]):
        (g,) = torch.autograd.grad(V[i].sum(), s, create_graph=True, retain_graph=True)
        (g2,) = torch.autograd.grad(g.sum(), s, retain_graph=True, allow_unused=True)
        out[0][i] = g.detach()
        out[1][i] = g2.detach() if g2 is not None else 0.0
    return V.detach().double(), out[0], out[1]


def growth_rate(T: Sequence[float], L: Sequence[float]) -> float:
    """Least-squares slope of ln L against T (per step); nan with fewer than two finite,
    positive L."""
    t = torch.as_tensor(T, dtype=torch.float64)
    y = torch.as_tensor(L, dtype=torch.float64)
    ok = torch.isfinite(y) & (y > 0)
    if ok.sum() < 2:
        return math.nan
    t, y = t[ok], y[ok].log()
    tc = t - t.mean()
    return float((tc * (y - y.mean())).sum() / tc.square().sum())


def minima_count(d1: torch.Tensor) -> torch.Tensor:
    """Local minima of V between neighbouring points: sign changes − → + of ``d1 [..., P]``
    (V′ at sorted s). Returns ``[..., P − 1]`` bool, one per neighbouring pair."""
    return (d1[..., :-1] < 0) & (d1[..., 1:] >= 0)


def window_edges(s_min: float, s_max: float, windows: int) -> torch.Tensor:
    """``windows + 1`` edges evenly spaced over [s_min, s_max] (float64)."""
    return torch.linspace(s_min, s_max, windows + 1, dtype=torch.float64)


def window_table(
    path: str,
    s: torch.Tensor,
    horizons: Sequence[int],
    d1: torch.Tensor,
    d2: torch.Tensor,
    lam: torch.Tensor,
    lam_T: torch.Tensor,
    windows: int,
    band: float,
    fit_from: int,
) -> tuple[list[tuple], list[tuple]]:
    """The per-window rows (``contract.WINDOW_COLUMNS``: one per window and horizon) and growth
    rates (``contract.RateRow``: one per window) of a path with ``s [P]`` sorted, ``d1, d2 [H, P]``
    (V′, V″), ``lam [P]`` (λ1 of the long window, nats/step) and ``lam_T [P]`` (λ1 of the
    steps 1..T_max the cost sees, no transient dropped).

    ``lambda_1`` is the window's mean long-window λ1 (``_min``, ``_max`` its range over the
    points, ``regime`` its :func:`classify`), ``lambda_1_T`` / ``lambda_1_T_max`` the mean and
    max of ``lam_T``. ``ratio_L = rate_L / λ1`` and ``ratio_L_g = rate_L_g / (2 λ1)`` with the
    mean, ``ratio_L_max`` and ``ratio_L_g_max`` with the max over the window (the max |V′|
    over a window follows its fastest-growing points). ``resolution``: points per unit s, the
    ceiling of what ``minima_per_s`` can count (one minimum per pair of points at most).
    """
    edges = window_edges(float(s[0]), float(s[-1]), windows)
    wins, rates = [], []
    pair_min = minima_count(d1)  # [H, P − 1]
    for w in range(windows):
        lo, hi = float(edges[w]), float(edges[w + 1])
        inside = (s >= lo) & ((s < hi) if w < windows - 1 else (s <= hi))
        if inside.sum() < 2:
            continue
        idx = torch.nonzero(inside).flatten()
        pairs = idx[:-1]  # neighbouring pairs (i, i + 1) with both ends inside
        width = float(s[idx[-1]] - s[idx[0]])
        lw, lt = lam[inside], lam_T[inside]
        lm, regime = float(lw.mean()), classify(float(lw.mean()), band)
        lmax = float(lw.max())
        extra = (float(lw.min()), lmax, regime, float(lt.mean()), float(lt.max()))
        res = (int(inside.sum()) - 1) / width if width > 0 else math.nan
        Ls, Lgs = [], []
        for i, T in enumerate(horizons):
            L = float(d1[i, inside].abs().max())
            Lg = float(d2[i, inside].abs().max())
            m = float(pair_min[i, pairs].sum()) / width if width > 0 else math.nan
            wins.append((path, w, lo, hi, int(inside.sum()), int(T), L, Lg, m, res, lm, *extra))
            Ls.append(L)
            Lgs.append(Lg)
        fit = [i for i, T in enumerate(horizons) if T >= fit_from]
        Tf = [horizons[i] for i in fit]
        rL = growth_rate(Tf, [Ls[i] for i in fit])
        rG = growth_rate(Tf, [Lgs[i] for i in fit])
        ratios = [x / y if y != 0 else math.nan
                  for x, y in ((rL, lm), (rG, 2 * lm), (rL, lmax), (rG, 2 * lmax))]  # fmt: skip
        T_lo, T_hi = (min(Tf), max(Tf)) if Tf else (math.nan, math.nan)
        rates.append((path, w, lo, hi, lm, *extra, rL, rG, *ratios, T_lo, T_hi))
    return wins, rates


@torch.no_grad()
def long_lambda(
    template: nn.Module,
    points: Params,
    x: torch.Tensor,
    transient: int,
    *,
    seed: int = 0,
    chunk: int = 256,
) -> torch.Tensor:
    """λ1 (nats/step) at every point over ``x [transient + steps, 1, S]`` (open loop, from the
    network's own h0), the first ``transient`` steps dropped: ``[P]`` float64 on the CPU."""
    from flossrun.analyses.landscape import with_points

    P = next(iter(points.values())).shape[0]
    out = []
    for start in range(0, P, chunk):
        model = with_points(template, {k: v[start : start + chunk] for k, v in points.items()})
        h = model.initial_state(1)
        lam = lyapunov_spectrum(
            model, h, x, 1, transient=transient, qr_every=5, seed=[seed] * model.R
        ).exponents
        out.append(lam[:, 0, 0].double().cpu())
    return torch.cat(out)


def state_cost(template: nn.Module, x: torch.Tensor, horizons: Sequence[int]) -> CostFn:
    """The chaotic LSTM's cost: V_T = mean over steps 1..T and the h units of
    (h_t(θ) − h_t(θ(1)))², the reference being the template's own trajectory; ``x [T_max, 1,
    S]``. Returns a :data:`CostFn` (``[H, P]``)."""
    N = template.N
    with torch.no_grad():
        ref = template(x, template.initial_state(1))[..., :N]  # [T_max, 1, 1, N]

    def cost(points: Params) -> torch.Tensor:
        model = differentiable_points(template, points)
        h0 = model.h0.unsqueeze(1)  # [P, 1, D]
        sq = (model(x, h0)[..., :N] - ref).square().mean((2, 3))  # [T_max, P]
        csum = sq.cumsum(0)
        return torch.stack([csum[T - 1] / T for T in horizons])

    return cost


def sine_cost(
    template: nn.Module, omega: torch.Tensor, horizons: Sequence[int], dtype: torch.dtype
) -> CostFn:
    """A sine generator's cost: V_T = MSE of the output against sin(ω t) over steps 1..T and
    the fixed ``omega [B]`` (constant input ω, as the task). Returns a :data:`CostFn`."""
    T_max = max(horizons)
    t = torch.arange(1, T_max + 1, dtype=torch.float64).reshape(-1, 1, 1)
    om = omega.to(torch.float64).reshape(1, 1, -1)
    y = torch.sin(om * t).to(template.h0.device, dtype)  # [T_max, 1, B]
    x = om.expand(T_max, 1, -1).unsqueeze(-1).to(template.h0.device, dtype)  # [T_max, 1, B, 1]

    def cost(points: Params) -> torch.Tensor:
        model = differentiable_points(template, points)
        P, B = model.h0.shape[0], omega.numel()
        h0 = model.h0.unsqueeze(1).expand(P, B, model.h0.shape[-1])
        z = model.logits(model(x.expand(T_max, P, B, 1), h0))[..., 0]  # [T_max, P, B]
        csum = (z - y).square().mean(-1).cumsum(0)  # [T_max, P]
        return torch.stack([csum[T - 1] / T for T in horizons])

    return cost


def chunked(
    cost: CostFn, a: Params, b: Params, s: torch.Tensor, chunk: int, method: str = "forward"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`path_derivatives` ``chunk`` points at a time (memory only)."""
    parts = [
        path_derivatives(cost, a, b, s[i : i + chunk], method) for i in range(0, len(s), chunk)
    ]
    return tuple(torch.cat([p[j] for p in parts], 1) for j in range(3))  # type: ignore[return-value]
