"""A run's own pictures: learning curve and Lyapunov spectrum before/after (``plots/``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

STAGE_COLORS = {"initial": "#7f7f7f", "preflossed": "#1f77b4", "final": "#d62728"}


def learning_curve(metrics: pd.DataFrame, title: str, path: Path) -> None:
    """Test accuracy (test loss, log scale, for a task without an accuracy) of each realization
    (thin) and their median (thick) vs training epoch, next to the median training loss."""
    ev = metrics[(metrics.phase == "eval") & (metrics.name == "test_accuracy")]
    accuracy = len(ev) > 0
    if not accuracy:
        ev = metrics[(metrics.phase == "eval") & (metrics.name == "test_loss")]
    tr = metrics[(metrics.phase == "train") & (metrics.name == "loss")]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for _, g in ev.groupby("realization"):
        ax1.plot(g.epoch, g.value, color="#1f77b4", lw=0.7, alpha=0.35)
    med = ev.groupby("epoch").value.median()
    ax1.plot(med.index, med.values, color="#1f77b4", lw=2.2, label="median")
    if accuracy:
        ax1.axhline(0.5, color="k", ls=":", lw=0.8)
        ax1.set(ylabel="test accuracy", ylim=(0.4, 1.02), title="test accuracy")
    else:
        ax1.set(ylabel="test loss", yscale="log", title="test loss")
    ax1.set(xlabel="training epoch")
    ax1.legend(loc="best")
    if len(tr):
        q = tr.groupby("epoch").value.quantile([0.25, 0.5, 0.75]).unstack()
        ax2.fill_between(q.index, q[0.25], q[0.75], color="#ff7f0e", alpha=0.25, lw=0)
        ax2.plot(q.index, q[0.5], color="#ff7f0e", lw=1.5)
    unit = "(nats/bit)" if accuracy else "(MSE)"
    ax2.set(xlabel="training epoch", ylabel=f"training loss {unit}", title="training loss")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def spectrum(spectra: pd.DataFrame, title: str, path: Path) -> None:
    """Full Lyapunov spectrum λ_i vs i at each stage (median and 25–75 % band)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8), constrained_layout=True)
    for stage, color in STAGE_COLORS.items():
        s = spectra[spectra.stage == stage]
        if not len(s):
            continue
        q = s.groupby("index").value.quantile([0.25, 0.5, 0.75]).unstack()
        ax.fill_between(q.index, q[0.25], q[0.75], color=color, alpha=0.25, lw=0)
        ax.plot(q.index, q[0.5], color=color, lw=1.5, marker=".", ms=3, label=stage)
    ax.axhline(0, color="k", lw=0.8, ls="--")
    ax.set(xlabel="exponent index i", ylabel="λ_i (nats/step)", title=title)
    ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_run(run_dir: Path, title: str) -> Path:
    """Draw both plots of a run from its CSVs; returns the ``plots/`` folder."""
    run_dir = Path(run_dir)
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    learning_curve(pd.read_csv(run_dir / "metrics.csv"), title, plots / "learning_curve.png")
    spectra = pd.read_csv(run_dir / "spectra.csv")
    if len(spectra[spectra.stage != "eval"]):
        spectrum(spectra, title, plots / "spectrum.png")
    return plots
