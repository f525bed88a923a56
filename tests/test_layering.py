"""The package's import layering (docs/design.md §12): no import cycle, and no module imports
from a layer above its own.

Imports are read from the source with ``ast``, at any depth: a function-level (lazy) import is
a dependency like any other, because it still runs before the function can return and it still
ties the two modules together. Imports under ``if TYPE_CHECKING:`` are left out: they never run
(annotations only), so they cannot take part in the order in which modules are initialised.
An import names a module (``from flossrun.models import base`` names ``flossrun.models.base``,
``from flossrun.models import build_model`` the package ``flossrun.models``); the parent package
that Python initialises first is not counted as a dependency.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

import flossrun

PACKAGE = Path(flossrun.__file__).resolve().parent
DESIGN = PACKAGE.parent / "docs" / "design.md"

# Bottom first. A module may import from its own layer and the layers below it. An entry is a
# module name, or a package name followed by ``.*`` for every module inside it.
# fmt: off
LAYERS: list[tuple[str, list[str]]] = [
    ("floor", ["flossrun.errors", "flossrun.registry", "flossrun.seeding", "flossrun.contract",
               "flossrun.io", "flossrun.provenance", "flossrun.interrupt"]),
    ("kernels", ["flossrun.fast", "flossrun.fast.*"]),
    ("dynamics", ["flossrun.models", "flossrun.models.*", "flossrun.tasks", "flossrun.tasks.*"]),
    ("numerics", ["flossrun.lyapunov", "flossrun.flossing", "flossrun.diagnostics",
                  "flossrun.product_svd", "flossrun.training"]),
    ("analyses", ["flossrun.analyses", "flossrun.analyses.*"]),
    ("config", ["flossrun.config", "flossrun.keys", "flossrun.help"]),
    ("report", ["flossrun.report", "flossrun.report.*"]),
    ("jobs", ["flossrun.runner", "flossrun.jobs", "flossrun.plots", "flossrun.api"]),
    ("interfaces", ["flossrun", "flossrun.cli"]),
]
# fmt: on


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of the package at ``root``."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith(
        "TYPE_CHECKING"
    )


def imported_modules(module: str, source: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``module`` (its ``source``) imports anywhere in its body."""
    here = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            for child in node.orelse:  # the ``else:`` branch of ``if TYPE_CHECKING`` does run
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: ``from . import x``, ``from ..fast import ops``
                up = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return {m for m in found if m in known and m != module}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: the package's modules it imports}``."""
    names = module_names(root)
    known = set(names)
    return {
        m: imported_modules(m, p.read_text(), p.name == "__init__.py", known)
        for m, p in names.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle ``[a, b, …, a]``, or ``[]`` if the graph has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str]:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return [*path[path.index(n) :], n]
            if n not in state and (cycle := visit(n)):
                return cycle
        state[m] = 2
        path.pop()
        return []

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return []


def layer_of(module: str) -> list[int]:
    """The indices of the layers whose entries match ``module``."""
    return [
        i
        for i, (_, entries) in enumerate(LAYERS)
        if any(fnmatch.fnmatchcase(module, e) if e.endswith(".*") else module == e
               for e in entries)
    ]  # fmt: skip


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``a (layer) -> b (higher layer)`` for every import from a lower layer to a higher one."""
    bad = []
    for m, imports in sorted(graph.items()):
        for n in sorted(imports):
            (lm,), (ln,) = layer_of(m), layer_of(n)
            if ln > lm:
                bad.append(f"{m} ({LAYERS[lm][0]}) -> {n} ({LAYERS[ln][0]})")
    return bad


# --- the package --------------------------------------------------------------------------------
def test_every_module_is_in_exactly_one_layer():
    names = module_names()
    assert len(names) > 40  # the package was found
    misplaced = {m: [LAYERS[i][0] for i in layer_of(m)] for m in names if len(layer_of(m)) != 1}
    assert not misplaced, f"add each module to exactly one layer of LAYERS: {misplaced}"
    for _, entries in LAYERS:
        for entry in entries:
            assert any(
                fnmatch.fnmatchcase(m, entry) if entry.endswith(".*") else m == entry for m in names
            ), f"LAYERS lists {entry}, which matches no module"


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_from_a_higher_layer():
    bad = upward_imports(import_graph())
    assert not bad, "imports from a lower layer to a higher one:\n" + "\n".join(bad)


def test_the_floor_imports_nothing_from_flossrun():
    graph = import_graph()
    assert graph["flossrun.errors"] == set()
    assert graph["flossrun.contract"] <= {"flossrun.errors"}  # the run-folder contract
    assert "flossrun" not in graph["flossrun.provenance"]  # the version via importlib.metadata


def test_design_doc_lists_the_same_layers():
    """docs/design.md §12 lists the layers in the same order, each with the same entries."""
    text = DESIGN.read_text()
    section = text[text.index("## §12") :]
    rows = re.findall(r"^\d+\. \*\*(\w+)\*\*: (.+)$", section, flags=re.M)
    documented = [(name, re.findall(r"`([\w.*]+)`", entries)) for name, entries in rows]
    assert documented == LAYERS


# --- the checks themselves can fail -------------------------------------------------------------
def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "flossrun"
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root


def test_lazy_and_relative_imports_count_and_type_checking_ones_do_not(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "errors.py": "",
            "config.py": "def f():\n    from flossrun.models import base\n",
            "models/__init__.py": "from .base import x\n",
            "models/base.py": (
                "from typing import TYPE_CHECKING\n"
                "from .. import errors\n"
                "if TYPE_CHECKING:\n    from flossrun import config\n"
                "else:\n    import flossrun.io\n"
            ),
            "io.py": "",
        },
    )
    graph = import_graph(root)
    assert graph["flossrun.config"] == {"flossrun.models.base"}
    assert graph["flossrun.models"] == {"flossrun.models.base"}
    assert graph["flossrun.models.base"] == {"flossrun.errors", "flossrun.io"}


def test_a_lazy_import_back_up_is_a_cycle_and_an_upward_import():
    graph = {
        "flossrun.config": {"flossrun.models.base"},
        "flossrun.models.base": {"flossrun.fast.ops", "flossrun.config"},
        "flossrun.fast.ops": set(),
    }
    assert find_cycle(graph) == ["flossrun.config", "flossrun.models.base", "flossrun.config"]
    assert upward_imports(graph) == ["flossrun.models.base (dynamics) -> flossrun.config (config)"]
    del graph["flossrun.models.base"]
    assert find_cycle(graph) == []


@pytest.mark.parametrize("module", ["flossrun.fast.qr", "flossrun.report.stats", "flossrun"])
def test_layer_entries_match_modules_and_packages(module):
    assert len(layer_of(module)) == 1
    assert layer_of("flossrun.nonexistent") == []
