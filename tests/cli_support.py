"""Helpers for the tests of the ``flossrun`` command: the real command in a subprocess, and the
same config pipeline in-process (compose, check, validate, run) where a subprocess would only
add its start-up time (about 4 s of imports each).

The in-process helpers follow :func:`flossrun.cli.main` and :func:`flossrun.cli.job` step for
step; ``test_cli.py`` checks that a subprocess prints exactly the line :func:`config_error` finds.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

FLOSSRUN = str(Path(sys.executable).parent / "flossrun")
TINY = [
    "model.N=12", "task.T=40", "task.delay=4", "train.epochs=30", "train.eval_every=10",
    "train.test_size=32", "train.batch=4", "train.log_every=5", "floss.k=4", "floss.steps=20",
    "floss.transient=5", "floss.pre_epochs=20", "floss.epochs=5", "floss.every=10",
    "diag.steps=60", "diag.transient=10", "device=cpu",
]  # fmt: skip
# a multirun's report callback without figures (test_launchers.py checks what it writes)
SWEEP_TABLES_ONLY = "+hydra.callbacks.report.plots=false"


def flossrun(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The real command in ``cwd``; raises with its output unless it succeeds (or not ``check``).

    The timeout only guards against a hang: on a machine shared with other jobs a tiny sweep has
    taken over 5 minutes."""
    proc = subprocess.run([FLOSSRUN, *args], cwd=cwd, capture_output=True, text=True, timeout=1200)
    if check and proc.returncode != 0:
        raise AssertionError(f"flossrun failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def only_run_dir(root: Path) -> Path:
    """The one run folder under ``root/outputs``."""
    dirs = [p.parent.parent for p in root.glob("outputs/**/.hydra/config.yaml")]
    assert len(dirs) == 1, dirs
    return dirs[0]


def error_lines(stderr: str) -> list[str]:
    """The non-blank lines of a command's stderr."""
    return [ln for ln in stderr.strip().splitlines() if ln.strip()]


def copy_tree(src: Path, dst: Path) -> Path:
    """``src`` (runs made once per module) copied into ``dst``, for one test to change."""
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return dst


def compose_config(*overrides: str) -> DictConfig:
    """The job config ``flossrun <overrides>`` composes (without its ``hydra`` node)."""
    from flossrun.cli import CONFIG_DIR  # registers the resolvers and the schema

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("config", list(overrides))


def config_error(*args: str) -> str:
    """The one line ``flossrun <args>`` prints for a bad config, found in-process: the command
    line checks of :func:`flossrun.cli.main`, then the composed config's validation of
    :func:`flossrun.cli.job`. Fails if the config is accepted."""
    from flossrun import cli
    from flossrun.config import ConfigError, validate

    try:
        cli.check_group_choices(list(args))
        cli.check_keys(list(args), cli.CONFIG_DIR, cli.GROUPS)
        cfg = compose_config(*args)
        validate(cfg)
        cli.check_report(cfg)
    except ConfigError as err:
        return f"flossrun: error: {err}"
    raise AssertionError(f"flossrun {' '.join(args)}: accepted, expected a config error")


def run_in_process(out: Path, *overrides: str, threads: int = 1) -> Path:
    """Validate and execute one job in this process into ``out`` with ``threads`` intra-op
    threads, writing what :func:`flossrun.cli.job` writes for the numbers (metrics.csv,
    spectra.csv, summary.csv and the job's own files; no plots or Hydra record)."""
    from flossrun import io
    from flossrun.config import validate
    from flossrun.contract import SUMMARY_COLUMNS, SUMMARY_FILE
    from flossrun.jobs import make_job

    settings = validate(compose_config(*overrides))
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        job = make_job(settings, out)
        job.execute()
        io.write_csv(out / SUMMARY_FILE, SUMMARY_COLUMNS, job.summary_rows())
    finally:
        torch.set_num_threads(old)
    return out
