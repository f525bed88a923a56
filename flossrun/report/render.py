"""Choose and draw the figures of every experiment in a collection (PNG and PDF)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib as mpl

from flossrun.report.collect import Collection
from flossrun.report.conditions import as_keys
from flossrun.report.figures import FIGURES
from flossrun.report.style import RC, save


def figures_for(experiment: str, settings: dict[str, Any]) -> list[str]:
    """The preset's ``report.figures``, else the figure named like the preset, else ``generic``."""
    listed = as_keys(settings.get("figures"))
    if listed:
        return listed
    return [experiment] if experiment in FIGURES else ["generic"]


def render_figures(collection: Collection, directory: Path) -> tuple[list[Path], list[str]]:
    """Draw each experiment's figures from its finished runs into ``directory``.

    Files are ``<figure>.png/.pdf`` (``<experiment>_<figure>`` when the names differ). Returns
    the files written and notes on figures skipped (no data, unknown name) or failed; a figure
    that raises is reported there, never propagated.
    """
    written: list[Path] = []
    notes: list[str] = []
    for experiment in collection.experiments:
        exp = collection.subset(experiment)
        if exp.runs.empty:
            notes.append(f"{experiment}: no finished runs, no figures")
            continue
        for name in figures_for(experiment, collection.settings.get(experiment, {})):
            draw = FIGURES.get(name)
            if draw is None:
                notes.append(f"{experiment}: unknown figure {name!r} (known: {', '.join(FIGURES)})")
                continue
            stem = name if name == experiment else f"{experiment}_{name}"
            try:
                with mpl.rc_context(RC):
                    fig = draw(exp)
                    if fig is None:
                        notes.append(f"{experiment}: figure {name!r} skipped, no data for it")
                        continue
                    written += save(fig, directory, stem)
            except Exception as e:  # one broken figure must not cost the others
                notes.append(f"{experiment}: figure {name!r} failed: {type(e).__name__}: {e}")
    return written, notes
