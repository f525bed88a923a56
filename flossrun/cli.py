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
from flossrun.config import (
    CONFIG_DIR,
    ConfigError,
    Settings,
    register_configs,
    resolve_device,
    validate,
)
from flossrun.contract import (
    CHECKPOINT_FILE,
    CONFLICT_FILE,
    FAILED_FILE,
    HYDRA_DIR,
    SUMMARY_COLUMNS,
    SUMMARY_FILE,
    flatten,
    read_provenance,
)
from flossrun.interrupt import Interrupted, deferred_sigint
from flossrun.keys import check_keys
from flossrun.provenance import (
    code_provenance,
    describe_code,
    identity_diff,
    same_code,
    write_conflict,
    write_hydra_files,
    write_provenance,
)

GROUPS = ("task", "model", "floss", "train", "analysis", "experiment", "variant")
log = logging.getLogger("flossrun")


MAX_NAME = 96  # characters of a run folder name before it is shortened with a hash
SAFE = str.maketrans({"[": "(", "]": ")", "*": "_", "?": "_"})  # glob characters in names


def run_name(override_dirname: str) -> str:
    """Folder name of a job: its overrides (``task.delay=40,seed=1``) or ``base``; brackets
    become parentheses (``model.g=(0,1)``), so no name holds a glob character.

    Long override lists keep their start and get a stable hash of the whole, so distinct
    commands never share a folder (``.hydra/overrides.yaml`` holds the full list).
    """
    name = override_dirname.replace("/", "_") or "base"
    safe = name.translate(SAFE)  # no glob characters: folders a shell or glob() can name
    if safe != name and ("*" in name or "?" in name):  # not a bracket swap: keep names apart
        safe += f"..{hashlib.sha1(name.encode()).hexdigest()[:10]}"
    name = safe
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


def discard_empty_folder(out: Path) -> None:
    """Remove what Hydra made for a refused job in a folder that holds no run (its log)."""
    if (out / HYDRA_DIR).exists() or (out / CHECKPOINT_FILE).exists():
        return
    (out / f"{HydraConfig.get().job.name}.log").unlink(missing_ok=True)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()


class FolderConflict(ConfigError):
    """The run folder holds a run of another config or another code (``conflict.txt``)."""


def set_threads(cfg: Settings) -> None:
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


def check_folder(out: Path, identity: str, code: dict) -> str:
    """What ``out`` holds for a job of this identity (the text of ``Settings.identity``) and
    code: ``fresh``, ``resume``, ``finished`` (same code), ``finished_other_code``; raises
    :class:`FolderConflict` for another config, or an unfinished run of other code (resuming
    it would mix two codes)."""
    ck_path = out / CHECKPOINT_FILE
    if not ck_path.exists():
        return "fresh"
    ck = io.load_checkpoint(ck_path)
    redo = (
        f"delete {out} to redo it, or give this job its own folder "
        "(hydra.run.dir=..., or hydra.sweep.dir=... with -m)"
    )
    if ck["config"] != identity:
        diff = identity_diff(ck["config"], identity)
        raise FolderConflict(f"{out} holds a run of another config ({diff}); {redo}")
    stored = read_provenance(out)
    finished = ck["state"]["finished"] and (out / SUMMARY_FILE).exists()
    if finished:
        return "finished" if same_code(stored, code) else "finished_other_code"
    if not same_code(stored, code):
        raise FolderConflict(
            f"{out} holds an unfinished run of {describe_code(stored)}, this is "
            f"{describe_code(code)}; resuming would mix two codes in one run: {redo}"
        )
    return "resume"


def refuse(out: Path, err: ConfigError) -> None:
    """Leave the folder as it was and say why, in one line (``conflict.txt`` for conflicts)."""
    print(f"flossrun: error: {err}", file=sys.stderr)
    discard_empty_folder(out)
    if isinstance(err, FolderConflict):
        write_conflict(out, str(err))
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        raise err  # this job fails; the sweep's other jobs still run
    sys.exit(2)


def check_report(cfg: DictConfig) -> None:
    """A preset's ``report:`` node names figures, a summary and config keys the report knows
    (:func:`flossrun.report.check.check_report_node`): a typo fails before any compute."""
    if cfg.get("report") is None:
        return
    from flossrun.report.check import check_report_node

    keys = flatten(OmegaConf.to_container(cfg, resolve=False)).keys()
    node = cfg.report
    node = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    check_report_node(node, keys)


def job(cfg: DictConfig) -> None:
    """One Hydra job: validate the composed config into settings, check the folder, run or
    resume, write summary and plots. ``cfg`` itself is only recorded (``.hydra/``)."""
    out = Path(HydraConfig.get().runtime.output_dir)
    try:
        settings = validate(cfg)
        check_report(cfg)
        code = code_provenance(resolve_device(settings.device).type)
        verdict = check_folder(out, settings.identity, code)
    except ConfigError as err:
        refuse(out, err)
        return
    if verdict.startswith("finished"):
        note = "" if verdict == "finished" else (
            f" by {describe_code(read_provenance(out))}, not this {describe_code(code)}"
        )  # fmt: skip
        print(f"flossrun: {out} already finished{note}; skipped (delete the folder to redo it)")
        return
    if verdict == "resume":
        if code["git_dirty"] is not None:  # dirty if any part of the run ran on a dirty tree
            code["git_dirty"] = code["git_dirty"] or bool(
                (read_provenance(out) or {}).get("git_dirty")
            )
    if verdict == "fresh" and (out / HYDRA_DIR).exists():  # an earlier start left no checkpoint
        print(f"flossrun: {out} holds no checkpoint (an earlier start stopped before its first "
              "one); starting over")  # fmt: skip
    write_hydra_files(out, cfg, HydraConfig.get())
    write_provenance(out, code)
    for name in (FAILED_FILE, CONFLICT_FILE):
        (out / name).unlink(missing_ok=True)
    set_threads(settings)
    from flossrun.jobs import make_job

    try:
        run = make_job(settings, out)  # training, an analysis, or both (docs/design.md §11)
        with deferred_sigint():
            run.execute()
        rows = run.summary_rows()
        io.write_csv(out / SUMMARY_FILE, SUMMARY_COLUMNS, rows)
        run.plot()
    except ConfigError as err:
        print(f"flossrun: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as err:  # Ctrl-C: one line saying how to resume
        print(f"flossrun: {interrupted_line(out, err)}", file=sys.stderr)
        sys.exit(130)
    except Exception as err:
        io.write_text(out / FAILED_FILE, "".join(traceback.format_exception(err)))
        raise
    print(run.describe(rows))


def interrupted_line(out: Path, err: KeyboardInterrupt) -> str:
    """What a Ctrl-C did: the schedule's own line (a checkpoint saved at the interrupt), or,
    for an immediate interrupt, where the last checkpoint on disk resumes."""
    if isinstance(err, Interrupted):
        return str(err)
    ck = out / CHECKPOINT_FILE
    if not ck.exists():
        return "interrupted before the first checkpoint; rerunning the same command starts over"
    st = io.load_checkpoint(ck)["state"]
    if st.get("finished"):
        return f"interrupted after the run finished; rerun the same command to write {out}"
    where = f"training epoch {st['train_done']}" if st.get("pre_done") else "the start"
    return f"interrupted; rerun the same command to resume from {where} (last checkpoint)"


_hydra_main = hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")(job)


def main() -> None:
    """Console entry point ``flossrun``."""
    if any(a in ("--help", "-h") for a in sys.argv[1:]):
        from flossrun.help import help_text

        try:
            print(help_text())
        except BrokenPipeError:  # flossrun --help | head
            sys.stderr.close()
        return
    try:
        check_group_choices(sys.argv[1:])
        check_keys(sys.argv[1:], CONFIG_DIR, GROUPS)
    except ConfigError as err:
        print(f"flossrun: error: {err}", file=sys.stderr)
        sys.exit(2)
    try:
        _hydra_main()
    except KeyboardInterrupt:  # outside a job (start-up, a sweep's report): nothing to resume
        print("flossrun: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
