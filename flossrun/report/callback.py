"""Hydra callback that writes the report of a multirun's own jobs (each appends its folder to a
list the multirun starts) into its sweep directory when it ends. Enable it in a config::

    hydra:
      callbacks:
        report:
          _target_: flossrun.report.callback.ReportCallback
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
JOBS_ENV = "FLOSSRUN_MULTIRUN_JOBS"  # the file listing this multirun's job folders


def sweep_dir_of(config: DictConfig) -> Path:
    """``hydra.sweep.dir``, relative to where the user launched the multirun."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    cwd = OmegaConf.select(config, "hydra.runtime.cwd", default=None)
    if not sweep_dir.is_absolute() and cwd:
        sweep_dir = Path(str(cwd)) / sweep_dir
    return sweep_dir


def multirun_jobs(jobs_file: Path) -> list[Path]:
    """The job folders listed in ``jobs_file`` that exist, once each, in launch order."""
    if not jobs_file.is_file():
        return []
    lines = jobs_file.read_text().splitlines()
    return [Path(p) for p in dict.fromkeys(lines) if p and Path(p).is_dir()]


class ReportCallback(Callback):
    """Runs :func:`flossrun.report.report` on this multirun's jobs after it; never raises."""

    def __init__(self, plots: bool = True) -> None:
        self.plots = plots

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            sweep_dir = sweep_dir_of(config)
            sweep_dir.mkdir(parents=True, exist_ok=True)
            jobs_file = sweep_dir / f".flossrun-jobs-{os.getpid()}"
            jobs_file.write_text("")
            os.environ[JOBS_ENV] = str(jobs_file)  # jobs run here or in child processes
        except Exception as e:
            log.warning("flossrun-report: cannot list this multirun's jobs: %s", e)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        jobs_file = os.environ.get(JOBS_ENV)
        if not jobs_file or OmegaConf.select(config, "hydra.mode") != RunMode.MULTIRUN:
            return
        try:
            with open(jobs_file, "a") as fh:  # one short line per job: an atomic append
                fh.write(f"{os.path.abspath(str(config.hydra.runtime.output_dir))}\n")
        except OSError as e:
            log.warning("flossrun-report: cannot record this job: %s", e)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            from flossrun.report.cli import format_report, report

            sweep_dir = sweep_dir_of(config)
            if not sweep_dir.is_dir():
                log.warning("flossrun-report: no sweep directory %s, nothing to report", sweep_dir)
                return
            jobs_file = Path(os.environ.pop(JOBS_ENV, "") or sweep_dir / ".none")
            jobs = multirun_jobs(jobs_file)
            jobs_file.unlink(missing_ok=True)
            # jobs that ran where this process cannot see their list: the whole sweep folder
            result = report(jobs or [sweep_dir], out=sweep_dir, plots=self.plots)
            log.info("flossrun-report %s\n%s", sweep_dir, format_report(result))
        except Exception as e:  # a report must never turn a finished sweep into a failure
            log.warning("flossrun-report after the multirun failed: %s: %s", type(e).__name__, e)
