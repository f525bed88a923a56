"""Figures and numbers of the attractor and smoothness analyses (docs/design.md §11): the
``orbit_diagram`` and ``loss_landscape`` presets.

They read the analysis files of each finished run (``orbits.pt``, ``landscape.pt``; shapes in
:mod:`flossrun.analyses.orbit` and :mod:`flossrun.jobs`) next to the tidy frames of the
collection. Conditions and colours come from :class:`Conditions` as for every figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from flossrun.analyses.orbit import distinct_values
from flossrun.report.collect import Collection
from flossrun.report.conditions import Conditions
from flossrun.report.panels import finish
from flossrun.report.style import new_figure, no_data

ORBIT_KEYS = ("task.name", "task.T", "model.N", "train.epochs", "floss.k", "analysis.n_omega")


def _load(run: str, name: str) -> dict[str, Any] | None:
    path = Path(run) / name
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a missing or unreadable file: the run is left out of the figure
        return None


def orbit_runs(exp: Collection) -> list[tuple[str, str, dict[str, Any]]]:
    """``(condition, run, orbits.pt)`` for every finished run with orbits, in condition order."""
    cond = Conditions.of(exp)
    found = [(cond.by_run.get(r), r, _load(r, "orbits.pt")) for r in exp.runs["run"]]
    found = [f for f in found if f[2] is not None]
    return sorted(found, key=lambda f: (cond.order.index(f[0]) if f[0] in cond.order else 99, f[1]))


def distinct_per_epoch(data: dict[str, Any], tol: float) -> np.ndarray:
    """``[E, R, W, I]`` distinct output values per snapshot and trajectory."""
    return distinct_values(data["outputs"], tol).numpy()


def _tol(exp: Collection, run: str) -> float:
    value = exp.runs.set_index("run").get("analysis.distinct_tol")
    return float(value[run]) if value is not None else 1e-3


def orbit_diagram(exp: Collection) -> Figure | None:
    """Per run (one column): output vs epoch at the middle ω (1-D orbit diagram);
    (x_t, x_{t+1} − x_t) coloured by epoch (2-D); distinct values and λ1 vs epoch."""
    runs = orbit_runs(exp)
    if not runs:
        return None
    cond = Conditions.of(exp)
    fig, axes = new_figure(len(runs), 4, width=3.4, height=2.6)
    for col, (name, run, d) in enumerate(runs):
        out, epochs = d["outputs"].numpy(), d["epochs"].numpy()  # [E, R, W, I, T]
        w = out.shape[2] // 2
        omega = float(d["omega"][w])
        colours = np.linspace(0, 1, len(epochs))
        cmap = colormaps["viridis"]
        for e, epoch in enumerate(epochs):
            y = out[e, 0, w].ravel()
            axes[0, col].scatter(np.full(y.shape, epoch), y, s=1, color=cmap(colours[e]), lw=0)
            traj = out[e, 0, w]  # [I, T]
            axes[1, col].scatter(
                traj[:, :-1].ravel(), np.diff(traj, axis=-1).ravel(), s=1,
                color=cmap(colours[e]), lw=0, alpha=0.5,
            )  # fmt: skip
        axes[0, col].set(title=f"{name}\nω = {omega:.3f}", xlabel="epoch", ylabel="output $x_t$")
        axes[1, col].set(xlabel="$x_t$", ylabel="$x_{t+1} - x_t$", title=f"ω = {omega:.3f}")
        scale = ScalarMappable(Normalize(epochs.min(), epochs.max()), cmap)
        fig.colorbar(scale, ax=axes[1, col], label="training epoch")
        n = distinct_per_epoch(d, _tol(exp, run))  # [E, R, W, I]
        flat = n.reshape(len(epochs), -1)
        axes[2, col].plot(epochs, np.median(flat, 1), color=cond.colour.get(name), label="median")
        axes[2, col].plot(epochs, flat.max(1), color=cond.colour.get(name), ls=":", label="max")
        axes[2, col].set(xlabel="epoch", ylabel="distinct outputs", yscale="log")
        axes[2, col].legend(fontsize=7)
        lam = d["lambda_1"].numpy().reshape(len(epochs), -1)
        q = np.quantile(lam, [0.25, 0.5, 0.75], axis=1)
        axes[3, col].fill_between(epochs, q[0], q[2], color=cond.colour.get(name), alpha=0.2)
        axes[3, col].plot(epochs, q[1], color=cond.colour.get(name))
        axes[3, col].axhline(0, color="0.4", lw=0.8)
        axes[3, col].set(xlabel="epoch", ylabel=r"$\lambda_1$ (nats/step)")
    what = "Orbit diagrams of the sine generator across training (open loop, after the burn-in)"
    return finish(fig, cond, what, keys=ORBIT_KEYS)


def landscape_runs(exp: Collection) -> list[tuple[str, str, dict[str, Any]]]:
    """``(condition, run, landscape.pt)`` for every finished run with a landscape."""
    cond = Conditions.of(exp)
    found = [(cond.by_run.get(r), r, _load(r, "landscape.pt")) for r in exp.runs["run"]]
    return [f for f in found if f[2] is not None]


PATH_TITLES = {
    "scale": r"chaotic LSTM, $\theta(s) = s\,\theta_{chaotic}$",
    "from_init": r"trained, $\theta_0 + s(\theta_{trained} - \theta_0)$",
    "random": r"trained, $\theta_{trained} + (s-1)\,d$",
}


def loss_landscape(exp: Collection) -> Figure | None:
    """One column per path (chaotic LSTM; trained from init; trained along a random direction):
    steady-state output, loss and λ1 vs s, conditions overlaid; a last row of 2-D grids."""
    runs = landscape_runs(exp)
    if not runs:
        return None
    cond = Conditions.of(exp)
    paths = [p for p in PATH_TITLES if any(p in d["paths"] for _, _, d in runs)]
    grids = [(name, d["paths"]["grid"]) for name, _, d in runs if "grid" in d["paths"]]
    fig, axes = new_figure(max(len(paths), len(grids), 1), 4 if grids else 3, width=3.8)
    for col, path in enumerate(paths):
        for name, _, d in runs:
            if path not in d["paths"]:
                continue
            p, colour = d["paths"][path], cond.colour.get(name)
            s = p["s1"].numpy()
            y = p["outputs"].numpy()  # [P, T_keep]
            axes[0, col].scatter(np.repeat(s, y.shape[1]), y.ravel(), s=0.2, color=colour, lw=0)
            axes[1, col].plot(s, p["loss"].numpy(), color=colour, lw=0.7, label=name)
            axes[2, col].plot(s, p["lambda_1"].numpy(), color=colour, lw=0.7)
            crossing = d["stats"].get(path, {}).get("crossing", float("nan"))
            if np.isfinite(crossing):
                for row in (1, 2):
                    axes[row, col].axvline(crossing, color=colour, ls=":", lw=0.8)
        axes[0, col].set(title=PATH_TITLES[path], ylabel="steady-state output")
        axes[1, col].set(ylabel="loss (MSE)", yscale="log")
        axes[1, col].legend(fontsize=7)
        axes[2, col].axhline(0, color="0.4", lw=0.8)
        axes[2, col].set(xlabel="$s$", ylabel=r"$\lambda_1$ (nats/step)")
    for col, (name, g) in enumerate(grids):
        ax = axes[3, col]
        s1, s2 = g["s1"].numpy(), g["s2"].numpy()
        n1 = len(np.unique(s1))
        shape = (n1, len(s1) // n1)
        loss = np.log10(np.maximum(g["loss"].numpy(), 1e-12)).reshape(shape)
        cs = ax.contourf(s1.reshape(shape), s2.reshape(shape), loss, 30)
        ax.contour(s1.reshape(shape), s2.reshape(shape), g["lambda_1"].numpy().reshape(shape),
                   [0.0], colors="w", linewidths=0.8)  # fmt: skip
        fig.colorbar(cs, ax=ax, label="log10 loss")
        ax.set(title=f"{name}: grid (white: λ1 = 0)", xlabel="$s_1$", ylabel="$s_2$")
    for ax in axes.ravel():
        if not ax.has_data():
            no_data(ax)
    what = r"Loss, steady-state output and $\lambda_1$ along the same parameter paths"
    return finish(fig, cond, what, keys=("task.name", "model.N", "train.epochs", "floss.k"))


# --- numbers for index.md ----------------------------------------------------------------------
def orbit_summary(col: Collection) -> str:
    """Per condition: distinct output values per ω after the burn-in (median over ω and
    initial states, realization 0) at a few epochs, and median λ1 at the last snapshot."""
    parts = []
    for name, run, d in orbit_runs(col):
        n = distinct_per_epoch(d, _tol(col, run))[:, 0]  # [E, W, I]
        epochs = d["epochs"].tolist()
        med = np.median(n.reshape(len(epochs), -1), 1)
        picks = sorted({0, len(epochs) // 4, len(epochs) // 2, len(epochs) - 1})
        path = ", ".join(f"{epochs[i]}: {med[i]:.0f}" for i in picks)
        lam = float(np.median(d["lambda_1"][-1, 0].numpy()))
        cycle = next((epochs[i] for i in range(len(epochs)) if med[i] > 1), None)
        first = f"first > 1 at epoch {cycle}" if cycle is not None else "never > 1"
        parts.append(
            f"{name}: distinct outputs (median over ω, inits) by epoch {path} ({first}); "
            f"final λ1 {lam:+.3f}"
        )
    return " | ".join(parts) + "." if parts else "No orbit files."


def landscape_summary(col: Collection) -> str:
    """Per run and path: where λ1 crosses 0 and the loss variation per unit s on each side."""
    parts = []
    for name, _, d in landscape_runs(col):
        for path, st in d["stats"].items():
            parts.append(
                f"{name} / {path}: λ1 {st['lambda_1_at_1']:+.3f} at s = 1, crosses 0 at "
                f"s = {st['crossing']:.3f}, "
                f"{100 * st['frac_chaotic']:.0f} % of points λ1 ≥ 0; loss variation per unit s "
                f"{st['tv_stable']:.3g} (λ1 < 0) vs {st['tv_chaotic']:.3g} (λ1 ≥ 0)"
            )
    return " | ".join(parts) + "." if parts else "No landscape files."
