"""Run every experiment preset and draw every figure (``make figures [SCALE=quick|medium|paper]``).

For each preset: ``flossrun -m experiment=<preset> scale=<scale>`` (finished runs are skipped,
so a second call only redraws and an interrupted one continues), then ``flossrun-report`` into
``outputs/figures/<scale>/<preset>/``, and finally ``outputs/figures/<scale>/index.md``: per
preset its claim, setting, measured numbers, success comparisons with 95 % intervals and
Fisher's exact test, rank tests of the median claims, code versions and figures
(:mod:`flossrun.report.index`); both tables also as ``comparisons.csv`` and
``median_comparisons.csv`` there, and each preset's claim, wall time and one sentence of
measured numbers as ``summaries.csv`` (``scripts/docs_figures.py`` copies the CSVs into
``docs/figures/``, and ``scripts/docs_numbers.py`` renders the docs' tables from them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from flossrun.config import SCALES
from flossrun.io import write_text
from flossrun.report import report
from flossrun.report.index import index_markdown, preset_section, write_tables
from flossrun.report.presets import Claim, presets

ROOT = Path(__file__).resolve().parent.parent
FLOSSRUN = str(Path(sys.executable).parent / "flossrun")


def cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def launcher(jobs: int, extra: list[str]) -> list[str]:
    """Overrides that run a sweep's jobs ``jobs`` at a time (Hydra's joblib launcher, one
    thread per job), none for ``jobs`` ≤ 1 or when ``extra`` picks a launcher itself. The
    numbers do not change: a realization's numbers do not depend on threads or launcher
    (docs/design.md §6, "The guarantee")."""
    if jobs <= 1 or any(e.startswith(("hydra/launcher=", "hydra.launcher.")) for e in extra):
        return []
    return ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]


def run_preset(preset: str, scale: str, extra: list[str], jobs: int = 1) -> tuple[int, float]:
    """Run one preset's sweep, ``jobs`` jobs at a time (the report callback is off: we report
    below). Returns (exit code, seconds)."""
    cmd = [
        FLOSSRUN,
        "-m",
        f"experiment={preset}",
        f"scale={scale}",
        "~hydra.callbacks.report",
        *launcher(jobs, extra),
        *extra,
    ]
    print(f"\n=== {preset} ({scale}): {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    code = subprocess.call(cmd, cwd=ROOT)
    return code, time.perf_counter() - t0


WALL_TIMES = "wall_times.json"  # minutes per preset of the last call that ran it


def wall_times(out_root: Path) -> dict[str, float]:
    """Minutes per preset of the last ``make figures`` call that ran it (``--no-run`` redraws
    keep them in ``index.md``; a rerun that only skips finished jobs records its own, short,
    time)."""
    path = out_root / WALL_TIMES
    return json.loads(path.read_text()) if path.is_file() else {}


SUMMARIES = "summaries.csv"  # claim, preset, wall_minutes, result of each preset of the call


def write_summaries(out_root: Path, rows: list[dict[str, object]]) -> Path:
    """``summaries.csv`` next to ``index.md``: per preset of this call its claim number, wall
    minutes of the call that ran it (empty if unknown) and the report's sentence of measured
    numbers (:func:`flossrun.report.claims.summarize`)."""
    columns = ["claim", "preset", "wall_minutes", "result"]
    path = out_root / SUMMARIES
    write_text(path, pd.DataFrame(rows, columns=columns).to_csv(index=False))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", choices=list(SCALES), default="quick")
    ap.add_argument(
        "--only",
        nargs="*",
        default=presets(),
        choices=presets(),
        metavar="PRESET",
        help="presets to run (default: every one of configs/experiment/, by report.order); "
        "put overrides before --only",
    )
    ap.add_argument("--no-run", action="store_true", help="only redraw from existing results")
    ap.add_argument(
        "--jobs",
        type=int,
        default=cores(),
        help="jobs of a sweep run at a time, one thread each (default: the cores, here "
        f"{cores()}; 1: one after the other with the preset's threads); numbers do not change",
    )
    ap.add_argument("extra", nargs="*", help="overrides passed to every flossrun call")
    args = ap.parse_args()
    out_root = ROOT / "outputs" / "figures" / args.scale
    times = wall_times(out_root)
    sections = []
    summaries: list[dict[str, object]] = []
    failures = []
    for preset in args.only:
        if args.no_run:
            code = 0
        else:
            code, secs = run_preset(preset, args.scale, args.extra, args.jobs)
            times[preset] = secs / 60
            write_text(out_root / WALL_TIMES, json.dumps(times, indent=1) + "\n")
        if code != 0:
            failures.append(preset)
        res = report([ROOT / "outputs" / preset / args.scale], out=out_root / preset)
        section = preset_section(preset, res, out_root, times.get(preset))
        sections.append(section)
        write_text(out_root / "index.md", index_markdown(args.scale, sections))  # after each
        write_tables(out_root, sections)
        claim = Claim.of(res["collection"].report_node(preset))
        row = {"claim": claim.number if claim else "", "preset": preset, "result": section.summary}
        summaries.append({**row, "wall_minutes": times.get(preset)})
        write_summaries(out_root, summaries)
        print(f"--- {preset}: {section.summary}", flush=True)
    if not args.no_run:
        total = sum(times[p] for p in args.only)
        print(f"\nwall time of this call: {total:.1f} min ({len(args.only)} presets)")
    print(f"figures and index: {out_root / 'index.md'}")
    if failures:
        print(f"presets with failed jobs: {', '.join(failures)}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
