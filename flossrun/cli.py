"""The ``flossrun`` command (a Hydra app): validate, run or resume one job, summarise.

flossrun task=delayed_xor floss.k=75
flossrun -m seed=0,1,2,3 task.delay=20,40
flossrun experiment=preflossing scale=quick -m
"""

from __future__ import annotations

import hashlib
import logging
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from flossrun import io
from flossrun.config import ConfigError, check_model_keys, register_configs, validate

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
GROUPS = ("task", "model", "floss", "train", "experiment")
HYDRA_FILES = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "flossrun.log")
log = logging.getLogger("flossrun")


MAX_NAME = 96  # characters of a run folder name before it is shortened with a hash


def run_name(override_dirname: str) -> str:
    """Folder name of a job: its overrides (``task.delay=40,seed=1``) or ``base``.

    Long override lists keep their start and get a stable hash of the whole, so distinct
    commands never share a folder (``.hydra/overrides.yaml`` holds the full list).
    """
    name = override_dirname.replace("/", "_") or "base"
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[: MAX_NAME - 12]}..{digest}"
    return name


def run_root(name: str, scale: str) -> str:
    """``outputs/<name>`` for plain runs, ``outputs/<preset>/<scale>`` for experiment presets."""
    return f"outputs/{name}" if name == "default" else f"outputs/{name}/{scale}"


OmegaConf.register_new_resolver("run_name", run_name, replace=True)
OmegaConf.register_new_resolver("run_root", run_root, replace=True)
register_configs()


def check_group_choices(args: list[str]) -> None:
    """Fail fast, in one line, on a config-group choice that does not exist (``task=foo``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        overrides = OverridesParser.create().parse_overrides(
            [a for a in args if "=" in a and not a.startswith("-")]
        )
    except Exception:  # malformed overrides: Hydra's own message is clearer
        return
    for ov in overrides:
        group = ov.key_or_group.lstrip("+~")
        if group not in GROUPS or ov.is_delete():
            continue
        allowed = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
        values = (
            list(ov.sweep_string_iterator())
            if ov.is_sweep_override()
            else [ov.get_value_element_as_str()]
        )
        for v in values:
            if v not in allowed and v != "null":
                raise ConfigError(f"{group}={v}: unknown {group} (allowed: {', '.join(allowed)})")


def discard_hydra_files(out: Path) -> None:
    """Remove what Hydra wrote for a job that never started, so no report mistakes it for a run."""
    for rel in HYDRA_FILES:
        (out / rel).unlink(missing_ok=True)
    for d in (out / ".hydra", out):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()


def set_threads(cfg: DictConfig) -> None:
    """``threads`` if set; otherwise one thread per joblib worker and ``cpus_per_task`` per
    submitit job, so that parallel jobs do not oversubscribe the cores."""
    import torch

    n = cfg.threads
    launcher = HydraConfig.get().launcher
    target = str(launcher.get("_target_", ""))
    if n == 0 and "joblib" in target:
        n = 1
    elif n == 0 and "submitit" in target:
        n = launcher.get("cpus_per_task") or 0
    from flossrun.fast import configure_cpu

    configure_cpu(threads=n if n > 0 else None)  # keeps big buffers in the heap between epochs
    log.info("torch threads: %d", torch.get_num_threads())


def human_summary(out: Path, rows: list[tuple], cfg: DictConfig) -> str:
    """A few lines for the terminal: successes, median accuracy and λ1, where the files are."""
    import statistics

    acc = statistics.median(r[2] for r in rows)
    lam = statistics.median(r[7] for r in rows)
    n_ok, n_div = sum(r[4] for r in rows), sum(r[6] for r in rows)
    t, f, thr = cfg.task, cfg.floss, cfg.train.success_threshold
    diverged = f" ({n_div} diverged)" if n_div else ""
    return "\n".join([
        f"flossrun: {t.name} d={t.delay} T={t.T}, N={cfg.model.N}, floss={f.name} (k={f.k})",
        f"  success: {n_ok}/{len(rows)} realizations reached test accuracy >= {thr}{diverged}",
        f"  median final test accuracy {acc:.3f}, median final λ1 {lam:+.3f} nats/step, "
        f"{rows[0][8]:.0f} s",
        f"  results: {out}/summary.csv (metrics.csv, spectra.csv)",
        f"  plots:   {out}/plots/",
    ])  # fmt: skip


def run_is_finished(out: Path, cfg: DictConfig) -> bool:
    """A finished run of this very config is in ``out`` (cheap: no model is built)."""
    from flossrun.runner import run_config_text

    ck = out / "checkpoint.pt"
    if not ((out / "summary.csv").exists() and ck.exists()):
        return False
    state = io.load_checkpoint(ck)
    return state["state"]["finished"] and state["config"] == run_config_text(cfg)


def job(cfg: DictConfig) -> None:
    """One Hydra job: validate, run or resume, write summary and plots."""
    out = Path(HydraConfig.get().runtime.output_dir)
    try:
        validate(cfg)
    except ConfigError as err:
        print(f"flossrun: error: {err}", file=sys.stderr)
        discard_hydra_files(out)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # this job fails; the sweep's other jobs still run
        sys.exit(2)
    set_threads(cfg)
    from flossrun import plots
    from flossrun.runner import Run, summary_rows

    if run_is_finished(out, cfg):
        print(f"flossrun: {out} already finished; skipped (delete the folder to run it again)")
        return
    (out / io.FAILED_FILE).unlink(missing_ok=True)
    try:
        run = Run(cfg, out)
        if not run.execute():
            print(f"flossrun: {out} already finished; skipped (delete the folder to run it again)")
            return
        rows = summary_rows(run)
        io.write_csv(out / "summary.csv", io.SUMMARY_COLUMNS, rows)
        t = cfg.task
        title = (
            f"{t.name} d={t.delay}, N={cfg.model.N}, floss={cfg.floss.name} k={cfg.floss.k}, "
            f"R={cfg.realizations}"
        )
        plots.plot_run(out, title)
    except ConfigError as err:
        print(f"flossrun: error: {err}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        io.write_text(out / io.FAILED_FILE, "".join(traceback.format_exception(err)))
        raise
    print(human_summary(out, rows, cfg))


_hydra_main = hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")(job)


def main() -> None:
    """Console entry point ``flossrun``."""
    try:
        check_group_choices(sys.argv[1:])
        check_model_keys(sys.argv[1:])
    except ConfigError as err:
        print(f"flossrun: error: {err}", file=sys.stderr)
        sys.exit(2)
    _hydra_main()


if __name__ == "__main__":
    main()
