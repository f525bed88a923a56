"""Hydra callback that writes the report of a multirun into its sweep directory when it ends.

Enable it in a config (or ``+hydra.callbacks.report._target_=...`` on the command line)::

    hydra:
      callbacks:
        report:
          _target_: flossrun.report.callback.ReportCallback
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class ReportCallback(Callback):
    """Runs :func:`flossrun.report.report` on ``hydra.sweep.dir`` after a multirun; never raises."""

    def __init__(self, plots: bool = True) -> None:
        self.plots = plots

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            from flossrun.report.cli import format_report, report

            sweep_dir = Path(str(config.hydra.sweep.dir))
            cwd = OmegaConf.select(config, "hydra.runtime.cwd", default=None)
            if not sweep_dir.is_absolute() and cwd:  # relative to where the user launched
                sweep_dir = Path(str(cwd)) / sweep_dir
            if not sweep_dir.is_dir():
                log.warning("flossrun-report: no sweep directory %s, nothing to report", sweep_dir)
                return
            result = report([sweep_dir], out=sweep_dir, plots=self.plots)
            log.info("flossrun-report %s\n%s", sweep_dir, format_report(result))
        except Exception as e:  # a report must never turn a finished sweep into a failure
            log.warning("flossrun-report after the multirun failed: %s: %s", type(e).__name__, e)
