"""A run folder holds one run of one config and one code, through the real ``flossrun`` command.

A job whose config or code differs from what its folder holds fails alone with one line (and
``conflict.txt``), other jobs of the sweep run, and the folder's results stay as they were; a
finished run of other code is skipped visibly; ``scale`` does not change a plain run's identity;
``provenance.json`` records the code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import torch
from cli_support import SWEEP_TABLES_ONLY, TINY, copy_tree, only_run_dir
from cli_support import flossrun as run_flossrun

import flossrun
from flossrun import contract, io
from flossrun.contract import CONFLICT_FILE, PROVENANCE_FILE
from flossrun.report import report

ARGS = [*TINY, "train.epochs=10", "floss.every=5", "floss.times=1"]  # run once (``shared_run``)
SUBDIR = "hydra.sweep.subdir=s${seed}"  # folder named by seed only: a new config lands in it


def snapshot(run: Path) -> dict[str, bytes]:
    """Every result file of a run folder, byte for byte (not the log or conflict.txt)."""
    names = ["summary.csv", "metrics.csv", "spectra.csv", "checkpoint.pt", PROVENANCE_FILE]
    names += [f".hydra/{n}" for n in ("config.yaml", "overrides.yaml", "hydra.yaml")]
    return {n: (run / n).read_bytes() for n in names if (run / n).exists()}


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("flossrun: error:")]


@pytest.fixture
def finished(tmp_path, shared_run) -> Path:
    """A copy of the finished run of ``ARGS`` in ``tmp_path``: its run folder."""
    copy_tree(shared_run(*ARGS)[0], tmp_path)
    return only_run_dir(tmp_path)


def test_provenance_records_the_code(shared_run):
    p = json.loads((only_run_dir(shared_run(*ARGS)[0]) / PROVENANCE_FILE).read_text())
    assert p["flossrun_version"] == metadata.version("flossrun") == flossrun.__version__
    assert p["torch_version"] == torch.__version__ and p["device"] == "cpu"
    root = Path(flossrun.__file__).resolve().parent.parent
    if (root / ".git").exists():
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True)
        assert p["git_commit"] == head.stdout.decode().strip()
        assert isinstance(p["git_dirty"], bool)
    else:
        assert p["git_commit"] is None


def test_the_commands_files_are_the_contracts(shared_run):
    """The folder of a real ``flossrun`` run: the contract's files, each table with its columns,
    and a provenance record with its keys in order."""
    run = only_run_dir(shared_run(*ARGS)[0])
    for name, columns in (
        (contract.METRICS_FILE, contract.METRICS_COLUMNS),
        (contract.SPECTRA_FILE, contract.SPECTRA_COLUMNS),
        (contract.SUMMARY_FILE, contract.SUMMARY_COLUMNS),
    ):
        assert (run / name).read_text().splitlines()[0] == ",".join(columns), name
    for name in (contract.CHECKPOINT_FILE, contract.CONFIG_FILE, contract.OVERRIDES_FILE):
        assert (run / name).is_file(), name
    assert (run / contract.PLOTS_DIR).is_dir() and not (run / contract.FAILED_FILE).exists()
    assert tuple(json.loads((run / PROVENANCE_FILE).read_text())) == contract.PROVENANCE_KEYS


def test_scale_does_not_change_a_plain_run(tmp_path, finished):
    """``flossrun scale=paper`` is the same plain run as ``flossrun``: finished, so skipped."""
    run = finished
    before = snapshot(run)
    proc = run_flossrun(tmp_path, *ARGS, "scale=paper")
    assert "already finished; skipped" in proc.stdout
    assert snapshot(run) == before


@pytest.mark.slow  # three runs (~12 s): make test-slow, CI
def test_a_changed_config_fails_alone_and_leaves_the_old_results(tmp_path):
    """A sweep whose config changed (here task.delay, as an edited preset would) lands in the
    folders of an earlier sweep: those jobs fail in one line naming what differs, the new seed
    runs, and the old results are untouched."""
    run_flossrun(tmp_path, "-m", *ARGS, "seed=0,1", SUBDIR, SWEEP_TABLES_ONLY)
    root = tmp_path / "outputs" / "default"
    before = {s: snapshot(root / s) for s in ("s0", "s1")}
    proc = run_flossrun(
        tmp_path, "-m", *ARGS, "task.delay=6", "seed=0,1,2", SUBDIR, SWEEP_TABLES_ONLY, check=False
    )
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert len(lines) == 2, proc.stderr
    for s in ("s0", "s1"):
        assert snapshot(root / s) == before[s]  # results and their .hydra record untouched
        (line,) = (root / s / CONFLICT_FILE).read_text().splitlines()
        assert "task.delay 4 → 6" in line and f"delete {root / s}" in line
        assert f"flossrun: error: {line}" in lines
    assert (root / "s2" / "summary.csv").exists()  # the other job ran
    result = report([root], out=tmp_path / "report", plots=False)  # lists both refusals
    assert result["counts"]["conflict"] == 2 and result["counts"]["finished"] == 3
    refused = result["problems"].query("status == 'conflict'")
    assert all("task.delay 4 → 6" in reason for reason in refused.reason), refused


def test_device_is_part_of_a_runs_identity(tmp_path, finished):
    """A folder that holds a GPU run is refused to a CPU job (and the other way round)."""
    run = finished
    ck = io.load_checkpoint(run / "checkpoint.pt")
    ck["config"] = ck["config"].replace("device: cpu", "device: cuda")
    io.save_checkpoint(run / "checkpoint.pt", ck)  # as if this run had been on a GPU
    before = snapshot(run)
    proc = run_flossrun(tmp_path, *ARGS, check=False)
    assert proc.returncode == 2 and len(error_lines(proc)) == 1, proc.stderr
    assert "device cuda → cpu" in error_lines(proc)[0]
    assert snapshot(run) == before


def fake_other_code(run: Path) -> None:
    p = json.loads((run / PROVENANCE_FILE).read_text())
    p.update(git_commit="0123456789abcdef", git_dirty=False, flossrun_version="0.0.9")
    (run / PROVENANCE_FILE).write_text(json.dumps(p))


def test_finished_run_of_other_code_is_skipped_visibly(tmp_path, finished):
    run = finished
    fake_other_code(run)
    before = snapshot(run)
    proc = run_flossrun(tmp_path, *ARGS)
    assert "already finished by flossrun 0.0.9 @ 0123456, not this flossrun" in proc.stdout
    assert snapshot(run) == before


@pytest.mark.parametrize("provenance", ["other code", "none recorded"])
def test_unfinished_run_of_other_code_is_not_resumed(tmp_path, finished, provenance):
    """Resuming would mix two codes in one run: refused, with the way to redo it."""
    run = finished
    ck = io.load_checkpoint(run / "checkpoint.pt")
    ck["state"]["finished"] = False
    io.save_checkpoint(run / "checkpoint.pt", ck)  # as if killed before the end
    (run / "summary.csv").unlink()
    if provenance == "other code":
        fake_other_code(run)
    else:
        (run / PROVENANCE_FILE).unlink()  # a folder from before provenance.json
    before = snapshot(run)
    proc = run_flossrun(tmp_path, *ARGS, check=False)
    assert proc.returncode == 2 and len(error_lines(proc)) == 1, proc.stderr
    assert "resuming would mix two codes in one run" in error_lines(proc)[0]
    assert snapshot(run) == before and (run / CONFLICT_FILE).exists()
    # the way out the message gives: delete the folder, and the job runs
    shutil.rmtree(run)
    run_flossrun(tmp_path, *ARGS)
    assert (run / "summary.csv").exists() and not (run / CONFLICT_FILE).exists()
