"""Pictures of one run (``plots/`` of its folder) and of tensors from :mod:`flossrun.api`.

Every function builds a :class:`matplotlib.figure.Figure` on the Agg canvas (no pyplot, no global
backend switch: safe in a notebook) and returns it; the run plots also save it.

    spectrum_figure(lams, k=...)        λ_i vs i: ``[k]``, ``[R, k]`` or {label: tensor}
    flossing_figure(hist["lambda_1"])   λ1 vs flossing epoch: ``[E, R]``
    plot_run(run_dir, title)            learning_curve.png, flossing.png, spectrum.png of a run
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from flossrun.contract import CONFIG_FILE, METRICS_FILE, PLOTS_DIR, SPECTRA_FILE

STAGE_COLORS = {"initial": "#7f7f7f", "preflossed": "#1f77b4", "final": "#d62728"}
STAGE_LABELS = {"initial": "initial", "preflossed": "after preflossing", "final": "final"}
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#7f7f7f")
LAMBDA_I = r"$\lambda_i$ (nats/step)"
LAMBDA_1 = r"$\lambda_1$ (nats/step)"
BAND = "25–75 % of the {n} realizations"


def new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, Any]:
    """A headless figure with ``ncols`` axes side by side (constrained layout)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols)


def wrapped(title: str, fig: Figure, size: float = 10) -> str:
    """``title`` broken into lines that fit the figure's width at ``size`` points."""
    chars = max(30, int(fig.get_figwidth() * 72 / (0.62 * size)))
    return textwrap.fill(title, chars)


def quartiles(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """25 %, 50 %, 75 % over the first axis of ``[R, n]`` (``[n]``: one realization)."""
    v = values.detach().double().cpu().reshape(-1, values.shape[-1])
    q = torch.quantile(v, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64), dim=0)
    return q[0], q[1], q[2]


def draw_band(ax: Axes, x, q25, q50, q75, color: str, label: str, marker: str = ".") -> None:
    """Median line and its 25–75 % band (the band only where it has a width)."""
    if np.nanmax(np.abs(np.asarray(q75, dtype=float) - np.asarray(q25, dtype=float))) > 0:
        ax.fill_between(x, q25, q75, color=color, alpha=0.25, lw=0)
    ax.plot(x, q50, color=color, lw=1.5, marker=marker, ms=3, label=label)


def legend_with_band(ax: Axes, R: int) -> None:
    """The axes' legend, with an entry explaining the grey 25–75 % band when ``R`` > 1."""
    handles, labels = ax.get_legend_handles_labels()
    if R > 1:
        handles.append(Patch(color="#7f7f7f", alpha=0.25, lw=0))
        labels.append(BAND.format(n=R))
    ax.legend(handles, labels, fontsize=8)


def finish_spectrum(ax: Axes, k: int | None, R: int) -> None:
    """Zero line, flossed exponents ``k`` marked, labels and a legend that explains the band."""
    ax.axhline(0, color="k", lw=0.8, ls="--")
    if k:
        ax.axvline(k, color="#2ca02c", lw=1, ls=":", label=f"k = {k} (flossed exponents)")
    ax.set(xlabel="exponent index $i$", ylabel=LAMBDA_I)
    legend_with_band(ax, R)


def spectrum_figure(
    spectra: torch.Tensor | Mapping[str, torch.Tensor],
    k: int | None = None,
    title: str | None = None,
) -> Figure:
    """Lyapunov spectrum λ_i vs i: a tensor ``[k]`` or ``[R, k]`` (median over the R
    realizations with their 25–75 % band), or several as ``{label: tensor}``; ``k`` marks the
    flossed exponents."""
    curves = dict(spectra) if isinstance(spectra, Mapping) else {"spectrum": spectra}
    fig, ax = new_figure(6.4, 4.0)
    R = 1
    for (label, lam), color in zip(curves.items(), COLORS * 10, strict=False):
        q25, q50, q75 = quartiles(lam)
        R = max(R, lam.reshape(-1, lam.shape[-1]).shape[0])
        draw_band(ax, torch.arange(1, q50.numel() + 1), q25, q50, q75, color, label)
    finish_spectrum(ax, k, R)
    if title:
        ax.set_title(wrapped(title, fig), fontsize=10)
    return fig


def flossing_figure(
    lambda_1: torch.Tensor, target: float | None = None, title: str | None = None
) -> Figure:
    """λ1 of each flossing epoch ``[E, R]`` (median over realizations, 25–75 % band), with the
    target λ* dashed."""
    fig, ax = new_figure(6.4, 4.0)
    lam = lambda_1.detach().reshape(lambda_1.shape[0], -1)  # [E, R]
    q25, q50, q75 = quartiles(lam.T)
    draw_band(ax, torch.arange(1, lam.shape[0] + 1), q25, q50, q75, COLORS[0], "median", "")
    if target is not None:
        ax.axhline(target, color="k", ls="--", lw=1, label=rf"target $\lambda^*$ = {target:g}")
    ax.set(xlabel="flossing epoch", ylabel=LAMBDA_1)
    handles, labels = ax.get_legend_handles_labels()
    if lam.shape[1] > 1:
        handles.append(Patch(color=COLORS[0], alpha=0.25, lw=0))
        labels.append(BAND.format(n=lam.shape[1]))
    ax.legend(handles, labels, fontsize=8)
    if title:
        ax.set_title(wrapped(title, fig), fontsize=10)
    return fig


# --- one run's folder ------------------------------------------------------------------------
def flossing_phase_epochs(cfg: Mapping[str, Any]) -> list[int]:
    """Training epochs after which a flossing phase ran (``floss=pre_during``)."""
    f, E = cfg.get("floss") or {}, (cfg.get("train") or {}).get("epochs", 0)
    if f.get("name") != "pre_during" or not f.get("k") or not f.get("epochs"):
        return []
    every, times = int(f.get("every", 1)), int(f.get("times", 0))
    return [j * every for j in range(1, times + 1) if j * every < E]


def learning_figure(
    metrics: pd.DataFrame, title: str, phases: Sequence[int] = (), floss_epochs: int = 0
) -> Figure:
    """Test accuracy (test loss, log scale, for a task without an accuracy) of each realization
    (thin) and their median (thick) vs training epoch, next to the median training loss;
    flossing phases marked where they ran."""
    ev = metrics[(metrics.phase == "eval") & (metrics.name == "test_accuracy")]
    accuracy = len(ev) > 0
    if not accuracy:
        ev = metrics[(metrics.phase == "eval") & (metrics.name == "test_loss")]
    tr = metrics[(metrics.phase == "train") & (metrics.name == "loss")]
    fig, (ax1, ax2) = new_figure(10, 4.0, 2)
    for _, g in ev.groupby("realization"):
        ax1.plot(g.epoch, g.value, color="#1f77b4", lw=0.7, alpha=0.35)
    med = ev.groupby("epoch").value.median()
    ax1.plot(med.index, med.values, color="#1f77b4", lw=2.2, label="median")
    if accuracy:
        ax1.axhline(0.5, color="k", ls=":", lw=0.8, label="chance")
        ax1.set(ylabel="test accuracy", ylim=(0.4, 1.02), title="test accuracy")
    else:
        ax1.set(ylabel="test loss (MSE)", yscale="log", title="test loss")
    if len(tr):
        q = tr.groupby("epoch").value.quantile([0.25, 0.5, 0.75]).unstack()
        ax2.fill_between(q.index, q[0.25], q[0.75], color="#ff7f0e", alpha=0.25, lw=0)
        ax2.plot(q.index, q[0.5], color="#ff7f0e", lw=1.5, label="median")
        if (q[0.25] > 0).all():  # log: the late decrease is as visible as the first drop
            ax2.set_yscale("log")
    unit = "(nats/bit)" if accuracy else "(MSE)"
    ax2.set(ylabel=f"training loss {unit}", title="training loss")
    for ax in (ax1, ax2):
        for i, epoch in enumerate(phases):
            what = (
                f"flossing phase ({floss_epochs} flossing epochs)" if floss_epochs else "flossing"
            )
            ax.axvline(epoch, color="#2ca02c", lw=1, ls="--", label=what if i == 0 else None)
        ax.set(xlabel="training epoch")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
    fig.suptitle(wrapped(title, fig), fontsize=10)
    return fig


def run_flossing_figure(metrics: pd.DataFrame, title: str, target: Any = None) -> Figure:
    """λ1 of every flossing epoch (``lambda_1_floss``) vs the running flossing epoch, the
    preflossing and the phases during training in two colours; the target λ* dashed."""
    fig, ax = new_figure(6.4, 4.0)
    lam = metrics[metrics.name == "lambda_1_floss"]
    R = lam.realization.nunique() if len(lam) else 1
    phases = (("prefloss", COLORS[0], "preflossing"),
              ("floss", COLORS[4], "flossing phases during training"))  # fmt: skip
    for phase, color, what in phases:
        g = lam[lam.phase == phase]
        if len(g):
            q = g.groupby("epoch").value.quantile([0.25, 0.5, 0.75]).unstack()
            draw_band(ax, q.index, q[0.25], q[0.5], q[0.75], color, what, "")
    t = target[0] if isinstance(target, list) and target else target  # λ*_1 of a list
    if isinstance(t, int | float):
        ax.axhline(t, color="k", ls="--", lw=1, label=rf"target $\lambda^*$ = {t:g}")
    ax.set(xlabel="flossing epoch (running count)", ylabel=LAMBDA_1)
    legend_with_band(ax, R)
    ax.set_title(wrapped(title, fig), fontsize=10)
    return fig


def run_spectrum_figure(spectra: pd.DataFrame, title: str, k: int | None = None) -> Figure:
    """Full spectrum of a run at each stage (``spectra.csv``): median and 25–75 % band."""
    fig, ax = new_figure(6.4, 4.2)
    R = spectra.realization.nunique() if len(spectra) else 1
    for stage, color in STAGE_COLORS.items():
        s = spectra[spectra.stage == stage]
        if len(s):
            q = s.groupby("index").value.quantile([0.25, 0.5, 0.75]).unstack()
            draw_band(ax, q.index, q[0.25], q[0.5], q[0.75], color, STAGE_LABELS[stage])
    finish_spectrum(ax, k, R)
    ax.set_title(wrapped(title, fig), fontsize=10)
    return fig


def run_config(run_dir: Path) -> dict[str, Any]:
    """The run's composed config as plain containers, resolved ({} without one)."""
    from omegaconf import OmegaConf

    import flossrun.config  # noqa: F401  (registers ${scaled:...}, which presets use)

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return {}
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)  # type: ignore[return-value]


def plot_run(run_dir: Path, title: str) -> Path:
    """Draw a run's plots from its CSVs (``learning_curve.png``, ``flossing.png`` when it
    flossed, ``spectrum.png``); returns the ``plots/`` folder."""
    run_dir = Path(run_dir)
    plots = run_dir / PLOTS_DIR
    plots.mkdir(exist_ok=True)
    cfg = run_config(run_dir)
    f = cfg.get("floss") or {}
    flossed = f.get("name", "none") != "none" and int(f.get("k", 0) or 0) > 0
    metrics = pd.read_csv(run_dir / METRICS_FILE)
    phases = flossing_phase_epochs(cfg)
    fig = learning_figure(metrics, title, phases, int(f.get("epochs", 0) or 0))
    fig.savefig(plots / "learning_curve.png", dpi=120)
    if (metrics.name == "lambda_1_floss").any():
        run_flossing_figure(metrics, title, f.get("target")).savefig(
            plots / "flossing.png", dpi=120
        )
    spectra = pd.read_csv(run_dir / SPECTRA_FILE)
    if len(spectra[spectra.stage != "eval"]):
        k = int(f["k"]) if flossed and int(f["k"]) < spectra["index"].max() else None
        fig = run_spectrum_figure(spectra, title, k)
        fig.savefig(plots / "spectrum.png", dpi=120)
    return plots


def analysis_figure(run_dir: Path, figure: str) -> Path | None:
    """The report's ``figure`` (``orbit_diagram``, ``loss_landscape``) of this one finished run,
    as ``plots/<figure>.png``; None when it has no data for it."""
    import matplotlib as mpl

    from flossrun.report import collect
    from flossrun.report.figures import FIGURES
    from flossrun.report.style import RC

    found = collect([run_dir])
    if not found.experiments:
        return None
    with mpl.rc_context(RC):
        fig = FIGURES[figure](found.subset(found.experiments[0]))
        if fig is None:
            return None
        path = Path(run_dir) / PLOTS_DIR / f"{figure}.png"
        path.parent.mkdir(exist_ok=True)
        fig.savefig(path, dpi=120)
    return path
