"""The run-folder contract (``flossrun.contract``, docs/design.md §7) is the one place that names
a run folder's files and columns: no other module of the package spells them, the files a real
run writes have its columns, its identity keys are one list, and the rows are typed."""

from __future__ import annotations

import ast
import csv
import json
import sys
from pathlib import Path

from cli_support import TINY, run_in_process

import flossrun
from flossrun import contract, io
from flossrun.contract import (
    NOT_NETWORK_IDENTITY,
    NOT_RUN_IDENTITY,
    PROVENANCE_KEYS,
    in_network_identity,
    read_provenance,
)

PACKAGE = Path(flossrun.__file__).resolve().parent
FILES = {v for k, v in vars(contract).items() if k.endswith(("_FILE", "_CSV", "_PT"))}
COLUMNS = {k: v for k, v in vars(contract).items() if k.endswith("_COLUMNS")}


def string_constants(tree: ast.AST) -> list[ast.Constant]:
    """Every string constant of a module that is not a docstring (f-string parts included)."""
    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    ]


def spelled_outside_the_contract(root: Path) -> list[str]:
    """``path:line: what`` for every file name or column list of the contract written out in a
    module of the package at ``root`` other than the contract itself."""
    column_sets = {frozenset(cols): name for name, cols in COLUMNS.items()}
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "contract.py" and path.parent == root:
            continue
        tree, where = ast.parse(path.read_text()), path.relative_to(root.parent)
        for node in string_constants(tree):
            for name in FILES:
                if name in node.value:
                    found.append(f"{where}:{node.lineno}: {name!r} in {node.value!r}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Tuple | ast.List) and len(node.elts) >= 3:
                words = [e.value for e in node.elts if isinstance(e, ast.Constant)]
                if frozenset(words) in column_sets and len(words) == len(node.elts):
                    what = column_sets[frozenset(words)]
                    found.append(f"{where}:{node.lineno}: a copy of {what}")
    return found


def test_no_module_spells_a_file_name_or_column_list_of_the_contract():
    assert not spelled_outside_the_contract(PACKAGE), "\n".join(
        spelled_outside_the_contract(PACKAGE)
    )


def test_the_spelling_check_can_fail(tmp_path):
    root = tmp_path / "flossrun"
    root.mkdir()
    (root / "writer.py").write_text(
        '"""Writes summary.csv (a docstring may say so)."""\n'
        'NAME = "summary.csv"\n'
        'COLS = ("realization", "seed", "phase", "epoch", "name", "value")\n'
        'MSG = f"{out}/metrics.csv"\n'
    )
    found = spelled_outside_the_contract(root)
    assert len(found) == 3, found
    assert "METRICS_COLUMNS" in found[2]


def test_the_contract_module_imports_only_the_standard_library():
    tree = ast.parse((PACKAGE / "contract.py").read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    outside = [
        n
        for n in names
        if n.split(".")[0] not in sys.stdlib_module_names and n not in ("flossrun.errors",)
    ]
    assert not outside


def test_column_tuples_are_the_ones_the_files_have_always_had():
    """The headers of existing run folders: changing them breaks the report on old runs."""
    assert ",".join(contract.SUMMARY_COLUMNS) == (
        "realization,seed,test_accuracy,test_loss,success,epochs_to_success,diverged,lambda_1,"
        "wall_seconds"
    )
    assert ",".join(contract.METRICS_COLUMNS) == "realization,seed,phase,epoch,name,value"
    assert ",".join(contract.SPECTRA_COLUMNS) == "realization,seed,stage,epoch,index,value"
    assert ",".join(contract.DIAGNOSTICS_COLUMNS) == "realization,seed,stage,lag,index,name,value"
    assert contract.RATE_COLUMNS[4:10] == contract.LAMBDA_COLUMNS
    assert contract.WINDOW_COLUMNS[-6:] == contract.LAMBDA_COLUMNS


def _header(path: Path) -> tuple[str, ...]:
    with path.open() as fh:
        return tuple(next(csv.reader(fh)))


def test_a_run_writes_the_contracts_columns_and_plain_tuples_in_its_checkpoint(tmp_path):
    """An in-process run with ``diag.jacobian`` (every table of a training run): each header is
    the contract's, the summary's rows are ``SummaryRow``\\ s read by field, and the checkpoint's
    logs are plain tuples (``weights_only`` loading refuses row classes)."""
    out = run_in_process(
        tmp_path, *TINY, "train.epochs=4", "floss.pre_epochs=2", "floss.every=2", "realizations=2",
        "diag.jacobian=true", "diag.lags=[1,3]", "diag.steps=40", "diag.transient=5",
    )  # fmt: skip
    for name, columns in (
        (contract.METRICS_FILE, contract.METRICS_COLUMNS),
        (contract.SPECTRA_FILE, contract.SPECTRA_COLUMNS),
        (contract.DIAGNOSTICS_FILE, contract.DIAGNOSTICS_COLUMNS),
        (contract.SUMMARY_FILE, contract.SUMMARY_COLUMNS),
    ):
        assert _header(out / name) == columns, name
    ck = io.load_checkpoint(out / contract.CHECKPOINT_FILE)
    for rows in (ck["logs"]["metrics"], ck["logs"]["spectra"], ck["logs"]["diagnostics"]):
        assert rows and all(type(r) is tuple for r in rows)
    diag = [contract.DiagnosticsRow._make(r) for r in ck["logs"]["diagnostics"]]
    assert {r.name for r in diag} == {
        "log_singular_value", "log10_condition", "log_singular_value_error", "error_signal_norm",
    }  # fmt: skip
    assert {r.lag for r in diag} == {1, 3} and {r.realization for r in diag} == {0, 1}
    spectra = map(contract.SpectrumRow._make, ck["logs"]["spectra"])
    lam_1 = {s.realization: s.value for s in spectra if s.stage == "final" and s.index == 1}
    with (out / contract.SUMMARY_FILE).open() as fh:
        summary = list(csv.DictReader(fh))
    assert [float(row["lambda_1"]) for row in summary] == [lam_1[0], lam_1[1]]


def test_network_identity_is_the_run_identity_less_the_realization_keys():
    """One list: the report's network identity leaves out everything a run's identity leaves
    out, plus the keys that pick or count realizations, the device and the log cadence."""
    assert NOT_NETWORK_IDENTITY[: len(NOT_RUN_IDENTITY)] == NOT_RUN_IDENTITY
    for key in ("task.delay", "floss.k", "model.g", "train.lr", "analysis.name", "diag.lags"):
        assert in_network_identity(key), key
    outside = [
        "name", "scale", "threads", "seed", "realizations", "device", "train.log_every",
        "train.checkpoint_every", "report.condition", "report.x", "hydra.run.dir",
    ]  # fmt: skip
    assert not [k for k in outside if in_network_identity(k)]


def test_run_identity_drops_exactly_the_keys_that_place_a_run():
    from cli_support import compose_config

    from flossrun.provenance import run_identity

    cfg = compose_config()
    identity = run_identity(cfg, "cpu")
    assert not set(NOT_RUN_IDENTITY) & set(identity)
    assert {"seed", "realizations", "device", "train"} <= set(identity)
    assert identity["train"]["log_every"] == cfg.train.log_every


def test_flatten_keeps_values_or_writes_lists_as_json():
    node = {"task": {"delay": 40, "taps": [1, 2]}, "seed": 0, "empty": {}}
    assert contract.flatten(node) == {"task.delay": 40, "task.taps": [1, 2], "seed": 0}
    assert contract.flatten(node, json_lists=True)["task.taps"] == "[1, 2]"


def test_read_provenance_is_none_for_absent_garbage_or_non_objects(tmp_path):
    assert read_provenance(tmp_path) is None
    path = tmp_path / contract.PROVENANCE_FILE
    for text in ("{not json", "[1, 2]"):
        path.write_text(text)
        assert read_provenance(tmp_path) is None
    record = dict.fromkeys(PROVENANCE_KEYS, "x")
    path.write_text(json.dumps(record))
    assert read_provenance(tmp_path) == record


def test_the_provenance_record_has_the_contracts_keys_in_order():
    from flossrun.provenance import code_provenance

    assert tuple(code_provenance("cpu")) == PROVENANCE_KEYS
    assert set(contract.CODE_KEYS) <= set(PROVENANCE_KEYS)
