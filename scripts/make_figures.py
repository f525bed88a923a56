"""Run every experiment preset and draw every figure (``make figures [SCALE=quick|medium|paper]``).

For each preset: ``flossrun -m experiment=<preset> scale=<scale>`` (finished runs are skipped,
so a second call only redraws and an interrupted one continues), then ``flossrun-report`` into
``outputs/figures/<scale>/<preset>/``, and finally ``outputs/figures/<scale>/index.md``: per
preset its claim, setting, measured numbers, success comparisons with 95 % intervals and
Fisher's exact test, rank tests of the median claims, code versions and figures
(:mod:`flossrun.report.index`); both tables also as ``comparisons.csv`` and
``median_comparisons.csv`` there.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from flossrun.config import SCALES
from flossrun.io import write_text
from flossrun.report import report
from flossrun.report.claims import CLAIMS, summarize
from flossrun.report.index import index_markdown, preset_section, write_tables

ROOT = Path(__file__).resolve().parent.parent
FLOSSRUN = str(Path(sys.executable).parent / "flossrun")


def run_preset(preset: str, scale: str, extra: list[str]) -> tuple[int, float]:
    """Run one preset's sweep (the report callback is off: we report below). Returns
    (exit code, seconds)."""
    cmd = [
        FLOSSRUN,
        "-m",
        f"experiment={preset}",
        f"scale={scale}",
        "~hydra.callbacks.report",
        *extra,
    ]
    print(f"\n=== {preset} ({scale}): {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    code = subprocess.call(cmd, cwd=ROOT)
    return code, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", choices=list(SCALES), default="quick")
    ap.add_argument("--only", nargs="*", default=list(CLAIMS), help="presets to run (default: all)")
    ap.add_argument("--no-run", action="store_true", help="only redraw from existing results")
    ap.add_argument("extra", nargs="*", help="overrides passed to every flossrun call")
    args = ap.parse_args()
    out_root = ROOT / "outputs" / "figures" / args.scale
    sections = []
    failures = []
    for preset in args.only:
        code, secs = (0, 0.0) if args.no_run else run_preset(preset, args.scale, args.extra)
        if code != 0:
            failures.append(preset)
        res = report([ROOT / "outputs" / preset / args.scale], out=out_root / preset)
        sections.append(preset_section(preset, res, out_root, secs / 60 if secs else None))
        write_text(out_root / "index.md", index_markdown(args.scale, sections))  # after each
        write_tables(out_root, sections)
        print(f"--- {preset}: {summarize(preset, res['collection'].subset(preset))}", flush=True)
    print(f"\nfigures and index: {out_root / 'index.md'}")
    if failures:
        print(f"presets with failed jobs: {', '.join(failures)}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
