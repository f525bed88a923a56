"""One look for every report figure: palette, axis labels with units, percentile bands, saving.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas (no pyplot, no global
backend switch), so reports render headless and never leak open figures.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Okabe–Ito (colour-blind safe), then neutral and extra hues; conditions take them in sorted order.
PALETTE = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999999",
    "#8C564B", "#BCBD22",
)  # fmt: skip
LINESTYLES = ("-", "--", ":", "-.")

# PDF font subsetting logs every table at INFO; under Hydra's root logger that floods the log.
logging.getLogger("fontTools").setLevel(logging.WARNING)

RC = {
    "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 7.5,
    "legend.frameon": True, "legend.framealpha": 0.8, "legend.edgecolor": "none",
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "lines.linewidth": 1.6, "lines.markersize": 4, "savefig.dpi": 150, "pdf.fonttype": 42,
}  # fmt: skip

LABELS = {
    "lambda_1": r"$\lambda_1$ (nats/step)",
    "lambda_i": r"$\lambda_i$ (nats/step)",
    "index": "exponent index $i$",
    "epoch": "training epoch",
    "floss_epoch": "flossing epoch",
    "lag": r"lag $\tau$ (steps)",
    "task.delay": "delay $d$ (steps)",
    "task.taps": "taps $m$",
    "task.T": "sequence length $T$ (steps)",
    "floss.k": "flossed exponents $k$",
    "floss.target": r"target $\lambda^*$ (nats/step)",
    "model.N": "hidden size $N$",
    "model.g": "gain $g$",
    "test_accuracy": "test accuracy",
    "final_accuracy": "final test accuracy",
    "success": "success rate",
    "epochs_to_success": "epochs to success",
    "grad_h0_norm": r"$\|\partial L/\partial h_0\|$",
    "log10_condition": r"$\log_{10}\,\sigma_1/\sigma_k$",
    "log_singular_value": r"$\ln\,\sigma_i$ (nats)",
    "error_signal_norm": r"$\|\partial L_t/\partial h_{t-\tau}\|$",
}


def label(key: str) -> str:
    """Axis label with units for a metric or config key (the key itself if unknown)."""
    return LABELS.get(key, key)


def colours(labels: Sequence[str]) -> dict[str, str]:
    """Fixed palette by position: the i-th condition in sorted order gets the i-th colour."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(labels)}


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.2):
    """A headless figure with a ``[nrows, ncols]`` array of axes; call inside ``rc_context(RC)``."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def band(
    ax: Axes,
    df: pd.DataFrame,
    x: str,
    y: str = "value",
    color: str | None = None,
    label: str | None = None,
    lines: bool = False,
    **kwargs,
) -> None:
    """Median of ``y`` over rows sharing ``x`` with its 25–75 % band (non-finite values skipped);
    with ``lines`` every single realization too, as a thin line."""
    df = df.replace([np.inf, -np.inf], np.nan)
    if lines and df.groupby(["run", "realization"]).ngroups > 1:
        for _, g in df.groupby(["run", "realization"]):
            g = g.sort_values(x)
            ax.plot(g[x], g[y], color=color, lw=0.5, alpha=0.3, **kwargs)
    q = df.groupby(x)[y].quantile([0.25, 0.5, 0.75]).unstack()
    if q.empty:
        return
    xs = q.index.to_numpy()
    ax.fill_between(
        xs, q[0.25].to_numpy(float), q[0.75].to_numpy(float), color=color, alpha=0.2, lw=0
    )
    ax.plot(xs, q[0.5].to_numpy(float), color=color, label=label, **kwargs)


def no_data(ax: Axes, what: str = "no data") -> None:
    """Mark an empty panel instead of leaving it blank."""
    ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", color="0.5")


def save(fig: Figure, directory: Path, stem: str) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` atomically (temp file, then ``os.replace``)."""
    directory.mkdir(parents=True, exist_ok=True)
    fig.draw_without_rendering()  # lay out once (constrained), then keep it for both formats
    fig.set_layout_engine("none")
    written = []
    for ext, metadata in (("png", {"Software": None}), ("pdf", {"CreationDate": None})):
        path = directory / f"{stem}.{ext}"
        tmp = directory / f".{stem}.{ext}.{os.getpid()}.tmp"
        try:
            fig.savefig(tmp, format=ext, metadata=metadata)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(path)
    return written
