"""Copy the figures of one ``make figures`` scale into ``docs/figures/`` as small PNGs (for the
README), together with the index's comparison tables.

    .venv/bin/python scripts/docs_figures.py --scale medium

Each ``outputs/figures/<scale>/<preset>/figures/<preset>.png`` (by default of the presets the
README shows, claims 1–5) is scaled to at most
``--width`` pixels and saved with a 256-colour palette as ``docs/figures/<preset>_<scale>.png``
(typically 60–150 kB instead of 300 kB); ``comparisons.csv``, ``median_comparisons.csv`` and
``summaries.csv`` are copied as ``docs/figures/<name>_<scale>.csv``. Into the default ``--out``,
the generated tables of README.md and PAPER_MAP.md are then rewritten from those CSVs
(``scripts/docs_numbers.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from pathlib import Path

import pandas as pd
from PIL import Image

from flossrun.config import SCALES
from flossrun.report.presets import presets

ROOT = Path(__file__).resolve().parent.parent
README_FIGURES = ["lyapunov_control", "jacobian", "preflossing", "during_training", "k_sweep"]
TABLES = ("comparisons", "median_comparisons", "summaries")  # the CSVs of make_figures.py


def docs_numbers():
    """``scripts/docs_numbers.py`` as a module (scripts/ is not a package)."""
    path = Path(__file__).resolve().parent / "docs_numbers.py"
    spec = importlib.util.spec_from_file_location("docs_numbers", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def shrink(src: Path, dst: Path, width: int) -> int:
    """``src`` scaled to at most ``width`` pixels wide, palette PNG at ``dst``; returns bytes."""
    with Image.open(src) as im:
        im = im.convert("RGB")
        if im.width > width:
            im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        im.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)
    return dst.stat().st_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", choices=list(SCALES), default="medium")
    ap.add_argument("--width", type=int, default=1400, help="maximum width in pixels")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    ap.add_argument("--only", nargs="*", choices=presets(), default=README_FIGURES)
    args = ap.parse_args()
    src_root = ROOT / "outputs" / "figures" / args.scale
    if not (src_root / "index.md").is_file():
        print(f"no {src_root / 'index.md'}: run make figures SCALE={args.scale}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for preset in args.only:
        src = src_root / preset / "figures" / f"{preset}.png"
        if src.is_file():
            size = shrink(src, args.out / f"{preset}_{args.scale}.png", args.width)
            print(f"{preset}: {size / 1e3:.0f} kB")
    covered = (
        set(pd.read_csv(src_root / "summaries.csv").preset)
        if (src_root / "summaries.csv").is_file()
        else set()
    )
    if covered != set(presets()):  # a `make_figures.py --only` call: its tables hold only those
        print(
            f"{src_root} holds the tables of a partial make figures call "
            f"({', '.join(sorted(covered)) or 'no summaries.csv'}): tables not copied; "
            f"run make figures SCALE={args.scale} for every preset first",
            file=sys.stderr,
        )
        print(f"-> {args.out} (figures only)")
        return 1
    for table in TABLES:
        if (src_root / f"{table}.csv").is_file():
            shutil.copyfile(src_root / f"{table}.csv", args.out / f"{table}_{args.scale}.csv")
    print(f"-> {args.out}")
    if args.out.resolve() == (ROOT / "docs" / "figures").resolve():
        for changed in docs_numbers().update(ROOT):
            print(f"rewrote {changed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
