"""Figures and numbers of the attractor and smoothness analyses (docs/design.md §11): the
``orbit_diagram``, ``loss_landscape`` and ``smoothness`` presets, read from each finished run's
analysis files (``orbits.pt``, ``landscape.pt``, ``smoothness.pt``; shapes in
:mod:`flossrun.analyses`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from flossrun.analyses.orbit import distinct_values
from flossrun.analyses.smoothness import minima_count
from flossrun.contract import EXTRAPOLATION_CSV, LANDSCAPE_PT, ORBITS_PT, SMOOTHNESS_PT
from flossrun.report.collect import Collection
from flossrun.report.conditions import Conditions, finish
from flossrun.report.stats import markdown_table
from flossrun.report.style import new_figure, no_data

ORBIT_KEYS = ("task.name", "task.T", "model.N", "train.epochs", "floss.k", "analysis.n_omega")


def runs_with(exp: Collection, name: str) -> tuple[Conditions, list[tuple[str, str, Any]]]:
    """The conditions of ``exp`` and ``(condition, run, data)`` of every run with a readable
    analysis file ``name``, in the runs' order."""
    cond, found = Conditions.of(exp), []
    for run in exp.runs["run"]:
        try:
            data = torch.load(Path(run) / name, map_location="cpu", weights_only=True)
        except Exception:  # a missing or unreadable file: the run is left out of the figure
            continue
        found.append((cond.by_run[run], run, data))
    return cond, found


def distinct(cond: Conditions, run: str, data: dict[str, Any]) -> np.ndarray:
    """``[E, R, W, I]`` distinct output values per snapshot and trajectory of one run's orbits,
    at its ``analysis.distinct_tol``."""
    tol = float(cond.config.at[run, "analysis.distinct_tol"])
    return distinct_values(data["outputs"], tol).numpy()


def orbit_diagram(exp: Collection) -> Figure | None:
    """Per run (one column): output vs epoch at the middle ω, (x_t, x_{t+1} − x_t) coloured
    by epoch, distinct values and λ1 vs epoch."""
    cond, runs = runs_with(exp, ORBITS_PT)
    if not runs:
        return None
    fig, axes = new_figure(len(runs), 4, width=3.4, height=2.6)
    cmap = colormaps["viridis"]
    for col, (name, run, d) in enumerate(runs):
        out, epochs = d["outputs"].numpy(), d["epochs"].numpy()  # [E, R, W, I, T]
        w, colour = out.shape[2] // 2, cond.colour[name]
        omega = float(d["omega"][w])
        shades = cmap(np.linspace(0, 1, len(epochs)))  # one colour per epoch
        for epoch, traj, shade in zip(epochs, out[:, 0, w], shades, strict=True):  # traj: [I, T]
            axes[0, col].scatter(np.full(traj.size, epoch), traj.ravel(), s=1, color=shade, lw=0)
            axes[1, col].scatter(traj[:, :-1].ravel(), np.diff(traj, axis=-1).ravel(), s=1,
                                 color=shade, lw=0, alpha=0.5)  # fmt: skip
        axes[0, col].set(title=f"{name}\nω = {omega:.3f}", xlabel="epoch", ylabel="output $x_t$")
        axes[1, col].set(xlabel="$x_t$", ylabel="$x_{t+1} - x_t$", title=f"ω = {omega:.3f}")
        scale = ScalarMappable(Normalize(epochs.min(), epochs.max()), cmap)
        fig.colorbar(scale, ax=axes[1, col], label="training epoch")
        flat = distinct(cond, run, d).reshape(len(epochs), -1)
        axes[2, col].plot(epochs, np.median(flat, 1), color=colour, label="median")
        axes[2, col].plot(epochs, flat.max(1), color=colour, ls=":", label="max")
        axes[2, col].set(xlabel="epoch", ylabel="distinct outputs", yscale="log")
        axes[2, col].legend(fontsize=7)
        q = np.quantile(d["lambda_1"].numpy().reshape(len(epochs), -1), [0.25, 0.5, 0.75], axis=1)
        axes[3, col].fill_between(epochs, q[0], q[2], color=colour, alpha=0.2)
        axes[3, col].plot(epochs, q[1], color=colour)
        axes[3, col].axhline(0, color="0.4", lw=0.8)
        axes[3, col].set(xlabel="epoch", ylabel=r"$\lambda_1$ (nats/step)")
    what = "Orbit diagrams of the sine generator across training (open loop, after the burn-in)"
    return finish(fig, cond, what, keys=ORBIT_KEYS)


PATH_TITLES = {
    "scale": r"chaotic LSTM, $\theta(s) = s\,\theta_{chaotic}$",
    "from_init": r"trained, $\theta_0 + s(\theta_{trained} - \theta_0)$",
    "random": r"trained, $\theta_{trained} + (s-1)\,d$",
}


def loss_landscape(exp: Collection) -> Figure | None:
    """One column per path: steady-state output, loss and λ1 vs s of every network; a last
    row of 2-D grids, one per condition (its first network)."""
    cond, runs = runs_with(exp, LANDSCAPE_PT)
    if not runs:
        return None
    paths = [p for p in PATH_TITLES if any(p in d["paths"] for _, _, d in runs)]
    grids = {}  # the 2-D grid of each condition's first network (more would repeat the panel)
    for name, _, d in runs:
        if "grid" in d["paths"]:
            grids.setdefault(name, d["paths"]["grid"])
    linear = bool((cond.config["analysis.loss_scale"] == "linear").all())  # the runs' loss axis
    fig, axes = new_figure(max(len(paths), len(grids), 1), 4 if grids else 3, width=3.8)
    for col, path in enumerate(paths):
        on_path = [(name, d) for name, _, d in runs if path in d["paths"]]
        count = Counter(name for name, _ in on_path)  # one legend entry per condition, with n
        for name, d in on_path:
            p, colour, n = d["paths"][path], cond.colour[name], count.pop(name, 0)
            s, y = p["s1"].numpy(), p["outputs"].numpy()  # y: [P, T_keep]
            axes[0, col].scatter(np.repeat(s, y.shape[1]), y.ravel(), s=0.2, color=colour, lw=0)
            legend = None if not n else (name if n == 1 else f"{name} (n={n})")
            axes[1, col].plot(s, p["loss"].numpy(), color=colour, lw=0.7, label=legend)
            axes[2, col].plot(s, p["lambda_1"].numpy(), color=colour, lw=0.7)
            crossing = d["stats"].get(path, {}).get("crossing", float("nan"))
            if np.isfinite(crossing):
                for row in (1, 2):
                    axes[row, col].axvline(crossing, color=colour, ls=":", lw=0.8)
        axes[0, col].set(title=PATH_TITLES[path], ylabel="steady-state output")
        axes[1, col].set(ylabel="loss (MSE)", yscale="linear" if linear else "log")
        axes[1, col].legend(fontsize=7)
        axes[2, col].axhline(0, color="0.4", lw=0.8)
        axes[2, col].set(xlabel="$s$", ylabel=r"$\lambda_1$ (nats/step)")
    for ax, (name, g) in zip(axes[-1], grids.items(), strict=False):
        s1, s2 = g["s1"].numpy(), g["s2"].numpy()
        shape = (len(np.unique(s1)), -1)
        loss = g["loss"].numpy()
        loss = (loss if linear else np.log10(np.maximum(loss, 1e-12))).reshape(shape)
        cs = ax.contourf(s1.reshape(shape), s2.reshape(shape), loss, 30)
        ax.contour(s1.reshape(shape), s2.reshape(shape), g["lambda_1"].numpy().reshape(shape),
                   [0.0], colors="w", linewidths=0.8)  # fmt: skip
        fig.colorbar(cs, ax=ax, label="loss" if linear else "log10 loss")
        ax.set(title=f"{name}: grid (white: λ1 = 0)", xlabel="$s_1$", ylabel="$s_2$")
    for ax in axes.ravel():
        if not ax.has_data():
            no_data(ax)
    what = r"Loss, steady-state output and $\lambda_1$ along the same parameter paths"
    return finish(fig, cond, what, keys=("task.name", "model.N", "train.epochs", "floss.k"))


# --- numbers for index.md ----------------------------------------------------------------------
def orbit_summary(col: Collection) -> str:
    """Per condition: distinct outputs (median over ω and inits, realization 0) at a few
    epochs and the final median λ1, then :func:`extrapolation_table`."""
    parts = []
    cond, runs = runs_with(col, ORBITS_PT)
    for name, run, d in runs:
        n = distinct(cond, run, d)[:, 0]  # [E, W, I]
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
    if not parts:
        return "No orbit files."
    table = extrapolation_table(col)
    return " | ".join(parts) + "." + (f"\n\n{table}\n" if table else "")


def run_csvs(exp: Collection, name: str) -> pd.DataFrame:
    """The CSV file ``name`` of every run holding one, with ``run`` and ``condition``."""
    cond = Conditions.of(exp)
    frames = [
        pd.read_csv(Path(run) / name).assign(run=run, condition=cond.by_run.get(run))
        for run in exp.runs["run"]
        if (Path(run) / name).is_file()
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def extrapolation_table(col: Collection) -> str:
    """Markdown: per condition, test MSE on the training horizon and the next 1× and 4× (median,
    min–max over the networks) and the networks' attractor kinds."""
    df = run_csvs(col, EXTRAPOLATION_CSV)
    if df.empty:
        return ""
    rows = []
    for name, g in df.groupby("condition", sort=False):
        nets = g.drop_duplicates(["run", "realization"])
        mse = [g[g["window"] == w]["mse"] for w in ("train", "next_1x", "next_4x")]
        cells = [f"{v.median():.3g} ({v.min():.3g}–{v.max():.3g})" for v in mse]
        kinds = ", ".join(f"{k} {c}" for k, c in nets["attractor"].value_counts().items())
        rows.append([name, str(len(nets)), *cells, kinds])
    header = ["condition", "n", "MSE 1..T", "MSE T..2T", "MSE T..5T", "attractors"]
    return "\n".join(markdown_table(header, rows))


def _spread(values: list[float], fmt: str) -> str:
    """Median [min, max] of one number over the networks of a condition."""
    v = np.asarray(values, dtype=float)
    return f"{np.nanmedian(v):{fmt}} [{np.nanmin(v):{fmt}}, {np.nanmax(v):{fmt}}]"


def _landscape_text(stats: list[dict[str, Any]]) -> str:
    """The numbers along one path: one network's, or medians [min, max] over several."""
    st, one = stats[0], len(stats) == 1

    def num(key: str, fmt: str, scale: float = 1.0) -> str:
        return f"{scale * st[key]:{fmt}}" if one else _spread([scale * s[key] for s in stats], fmt)

    bands = res = ""
    if one and "frac_neutral" in st:
        bands = (
            f" (contracting / neutral / chaotic {num('frac_contracting', '.0f', 100)} / "
            f"{num('frac_neutral', '.0f', 100)} / {num('frac_chaotic_band', '.0f', 100)} %)"
        )
    if one and "points_per_s" in st:
        res = f" at {st['points_per_s']:.0f} points per unit s"
    text = (
        f"λ1 {num('lambda_1_at_1', '+.3f')} at s = 1, crosses 0 at s = {num('crossing', '.3f')}, "
        f"{num('frac_chaotic', '.0f', 100)} % of points λ1 ≥ 0{bands}; loss variation per unit "
        f"s{res} {num('tv_stable', '.3g')} (λ1 < 0) vs {num('tv_chaotic', '.3g')} (λ1 ≥ 0)"
    )
    return text if one else f"n = {len(stats)} networks, medians [min, max]: {text}"


def landscape_summary(col: Collection) -> str:
    """Per condition and path: where λ1 crosses 0 and the loss variation on each side."""
    paths: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for name, _, d in runs_with(col, LANDSCAPE_PT)[1]:
        for path, st in d["stats"].items():
            paths.setdefault((name, path), []).append(st)
    parts = []
    for (name, path), sts in paths.items():
        if len(sts) > 1 and all(st == sts[0] for st in sts):  # a fixed network, once per seed
            text = f"{_landscape_text(sts[:1])} (one fixed network; the same in {len(sts)} runs)"
        else:
            text = _landscape_text(sts)
        parts.append(f"{name} / {path}: {text}")
    return " | ".join(parts) + "." if parts else "No landscape files."


# --- smoothness against the horizon (analysis=smoothness) --------------------------------------
REGIME_COLOURS = {"contracting": "tab:blue", "neutral": "tab:gray", "chaotic": "tab:red"}
BOUNDS = (0.8, 1.3)  # the factor band the growth rates are checked against (λ1 and 2 λ1)
CHAOTIC_MIN, CONTRACTING_MAX, BOUNDED = 0.05, -0.05, 0.01  # nats/step, the claim's thresholds


def rate_frame(data: dict[str, Any]) -> pd.DataFrame:
    """The growth-rate rows of one ``smoothness.pt`` (``RATE_COLUMNS``) as a frame."""
    return pd.DataFrame([list(r) for r in data["rates"]], columns=list(data["rate_columns"]))


def smoothness_panels(runs: dict[str, dict[str, Any]]) -> Figure | None:
    """Per run and path (one row each): ln L, ln L_g vs T in the most chaotic and contracting
    window with fitted and λ1, 2 λ1 slopes; growth rates vs window λ1; λ1 along the path;
    local minima per unit s vs T."""
    rows = [(name, path, d) for name, d in runs.items() for path in d["paths"]]
    if not rows:
        return None
    fig, axes = new_figure(4, len(rows), width=3.6, height=3.0)
    for row, (name, path, d) in enumerate(rows):
        p = d["paths"][path]
        rates = rate_frame(d)
        rates = rates[rates["path"] == path].reset_index(drop=True)
        T = p["horizons"].numpy().astype(float)
        s = p["s"].numpy()
        edges = np.r_[rates["s_low"].to_numpy(), rates["s_high"].to_numpy()[-1:]]
        ax = axes[row, 0]
        lam = rates["lambda_1"]
        for i in dict.fromkeys([int(lam.idxmax()), int(lam.idxmin())]):  # most chaotic, contracting
            r = rates.loc[i]
            inside = (s >= r.s_low) & (s <= r.s_high)
            colour = REGIME_COLOURS.get(r.regime, "k")
            for key, rate, mult, marker in (("d1", r.rate_L, 1, "o"), ("d2", r.rate_L_g, 2, "s")):
                y = np.log(np.abs(p[key].numpy()[:, inside]).max(1))
                ax.plot(T, y, marker, color=colour, ms=3)
                ok = T >= r.T_min
                if np.isfinite(rate) and ok.any():
                    t0, y0 = T[ok][0], y[ok].mean() - rate * (T[ok].mean() - T[ok][0])
                    ax.plot(T[ok], y0 + rate * (T[ok] - t0), "-", color=colour, lw=0.8)
                    if r.lambda_1 > 0:  # the reference slopes λ1, 2 λ1 (chaotic windows)
                        ax.plot(T[ok], y0 + mult * r.lambda_1 * (T[ok] - t0), ":", color=colour)
        ax.set(title=f"{name} / {path}", xlabel="horizon T (steps)",
               ylabel=r"ln L (o), ln $L_g$ (s)")  # fmt: skip
        ax = axes[row, 1]
        for _, r in rates.iterrows():
            colour = REGIME_COLOURS.get(r.regime, "k")
            xerr = [[r.lambda_1 - r.lambda_1_min], [r.lambda_1_max - r.lambda_1]]
            ax.errorbar(r.lambda_1, r.rate_L, xerr=xerr, fmt="o", color=colour, ms=3, lw=0.5)
            ax.errorbar(2 * r.lambda_1, r.rate_L_g, xerr=[[2 * v for v in xerr[0]],
                        [2 * v for v in xerr[1]]], fmt="s", mfc="none", color=colour,
                        ms=3, lw=0.5)  # fmt: skip
        lo, hi = 2 * rates["lambda_1_min"].min(), 2 * rates["lambda_1_max"].max()
        lim = np.array([min(0.0, lo), max(0.05, hi)])
        ax.plot(lim, lim, color="0.3", lw=0.8)
        xs = np.linspace(0, lim[1], 10)
        ax.fill_between(xs, BOUNDS[0] * xs, BOUNDS[1] * xs, color="0.85", lw=0)
        ax.axhline(0, color="0.6", lw=0.5)
        ax.set(xlabel=r"$\lambda_1$ (o), $2\lambda_1$ (s) of the window",
               ylabel="growth rate of ln L, ln $L_g$ (per step)",
               title="grey: 0.8–1.3 ×")  # fmt: skip
        ax = axes[row, 2]
        ax.plot(s, p["lambda_1"].numpy(), color="k", lw=0.5, label="long window")
        if "lambda_1_T" in p:
            ax.plot(s, p["lambda_1_T"].numpy(), color="tab:orange", lw=0.5, alpha=0.7,
                    label="steps 1..T_max")  # fmt: skip
        for e in edges:
            ax.axvline(e, color="0.85", lw=0.5)
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set(xlabel="$s$", ylabel=r"$\lambda_1$ (nats/step)")
        ax.legend(fontsize=7)
        ax = axes[row, 3]
        minima = minima_count(p["d1"]).sum(-1).numpy() / (s[-1] - s[0])
        ax.plot(T, minima, "o-", color="k", ms=3)
        ax.axhline((len(s) - 1) / (s[-1] - s[0]) / 2, color="0.6", ls=":", lw=0.8)
        ax.set(xlabel="horizon T (steps)", ylabel="local minima of V per unit s",
               title="dotted: half the resolution")  # fmt: skip
    fig.suptitle("Smoothness of the cost against the horizon T: L = max|V′|, "
                 "L_g = max|V″| per window of s (exact derivatives)", fontsize=9)  # fmt: skip
    return fig


def smoothness_runs(exp: Collection) -> dict[str, dict[str, Any]]:
    """``{condition (run): smoothness.pt}`` for every finished run with one."""
    found = runs_with(exp, SMOOTHNESS_PT)[1]
    several = len(exp.runs) > 1
    return {f"{c} ({Path(r).name})" if several else str(c): d for c, r, d in found}


def smoothness(exp: Collection) -> Figure | None:
    """The ``smoothness`` preset figure (:func:`smoothness_panels` of every run)."""
    return smoothness_panels(smoothness_runs(exp))


def smoothness_table(runs: dict[str, dict[str, Any]]) -> str:
    """The claim's table (markdown): per path, the chaotic windows whose growth rates are
    0.8–1.3 × λ1 and 2 λ1, the contracting ones whose rates stay below 0.01 per step, and the
    ratio of the two rates (the header says which windows each column counts)."""
    header = [
        "run / path", "windows λ1 > 0.05", "L in 0.8–1.3 × λ1 (mean [max])",
        "L_g in 0.8–1.3 × 2λ1 (mean [max])", "median ratio L, L_g (mean λ1)",
        "windows with every point λ1 > 0.05: L, L_g in 0.8–1.3 (mean λ1)", "windows λ1 < −0.05",
        "both slopes < 0.01", "max slope there", "windows with every point λ1 < 0: both slopes "
        "< 0.01", "L_g rate / L rate (median, range; windows with a point λ1 > 0.05)",
    ]  # fmt: skip
    rows = []
    for name, d in runs.items():
        rates = rate_frame(d)
        for path, g in rates.groupby("path", sort=False):
            ch = g[g["lambda_1"] > CHAOTIC_MIN]
            full = g[g["lambda_1_min"] > CHAOTIC_MIN]
            co = g[g["lambda_1"] < CONTRACTING_MAX]

            def within(col: str, frame: pd.DataFrame = ch) -> int:
                return int(frame[col].between(*BOUNDS).sum())

            bounded = int(((co["rate_L"] < BOUNDED) & (co["rate_L_g"] < BOUNDED)).sum())
            worst = co[["rate_L", "rate_L_g"]].max().max() if len(co) else float("nan")
            med = (f"{ch['ratio_L'].median():.2f}, {ch['ratio_L_g'].median():.2f}"
                   if len(ch) else "–")  # fmt: skip
            neg = g[g["lambda_1_max"] < 0]
            neg_ok = int(((neg["rate_L"] < BOUNDED) & (neg["rate_L_g"] < BOUNDED)).sum())
            any_ch = g[g["lambda_1_max"] > CHAOTIC_MIN]
            q = (any_ch["rate_L_g"] / any_ch["rate_L"]).quantile([0, 0.5, 1])
            two = f"{q[0.5]:.2f} ({q[0]:.2f}–{q[1]:.2f})" if len(any_ch) else "–"
            rows.append([
                f"{name} / {path}", str(len(ch)), f"{within('ratio_L')} [{within('ratio_L_max')}]",
                f"{within('ratio_L_g')} [{within('ratio_L_g_max')}]", med,
                f"{within('ratio_L', full)}, {within('ratio_L_g', full)} of {len(full)}",
                str(len(co)), str(bounded), f"{worst:+.4f}", f"{neg_ok} of {len(neg)}", two,
            ])  # fmt: skip
    return "\n".join(markdown_table(header, rows))


def smoothness_summary(col: Collection) -> str:
    """One sentence for index.md followed by :func:`smoothness_table`."""
    runs = smoothness_runs(col)
    if not runs:
        return "No smoothness files."
    parts = []
    for name, d in runs.items():
        rates = rate_frame(d)
        ch = rates[rates["lambda_1"] > CHAOTIC_MIN]
        if len(ch):
            parts.append(
                f"{name}: in {len(ch)} windows with λ1 > 0.05, median growth rate of ln L "
                f"{ch['rate_L'].median():.3f} and of ln L_g {ch['rate_L_g'].median():.3f} per "
                f"step (median window λ1 {ch['lambda_1'].median():.3f}, max "
                f"{ch['lambda_1_max'].median():.3f})"
            )
        else:
            parts.append(
                f"{name}: no window with λ1 > 0.05; growth rates of ln L "
                f"{rates['rate_L'].min():+.4f}..{rates['rate_L'].max():+.4f}, ln L_g "
                f"{rates['rate_L_g'].min():+.4f}..{rates['rate_L_g'].max():+.4f} per step "
                f"(λ1 {rates['lambda_1'].min():+.3f}..{rates['lambda_1'].max():+.3f})"
            )
    return " | ".join(parts) + ".\n\n" + smoothness_table(runs) + "\n"
