"""A non-editable install carries everything the command needs, the config groups included.

The wheel is built from this checkout and installed (without dependencies, which this venv
already has) into a folder of its own; ``flossrun`` then runs from another directory with only
that folder on the path, as after ``pip install .`` or ``pip install git+https://...``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import TINY

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy of what a clone holds, so no build/ is left in the checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("flossrun", "configs"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", src],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp / "dist").glob("flossrun-*.whl")
    target = tmp / "site"
    inst = subprocess.run(
        [*pip, "install", "--no-deps", "--target", target, wheel],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert inst.returncode == 0, inst.stderr
    return target


def test_wheel_ships_every_config_group_and_subpackage(installed):
    shipped = {p.relative_to(installed / "flossrun" / "configs") for p in installed.rglob("*.yaml")}
    source = {p.relative_to(ROOT / "configs") for p in (ROOT / "configs").rglob("*.yaml")}
    assert shipped == source
    packages = {p.parent.relative_to(ROOT) for p in (ROOT / "flossrun").rglob("__init__.py")}
    for pkg in packages:
        assert (installed / pkg / "__init__.py").is_file(), f"{pkg} missing from the wheel"
    assert not list(installed.glob("configs")), "configs must not become a top-level package"


def test_installed_command_runs_from_another_directory(installed, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed)}
    code = "import flossrun, sys; print(flossrun.__file__); sys.argv[0] = 'flossrun'; "
    code += "from flossrun.cli import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "floss=none", "task=delayed_copy", *TINY, "train.epochs=5"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith(str(installed))  # not this checkout
    assert "success:" in proc.stdout
    assert list(tmp_path.glob("outputs/default/*/summary.csv"))
    bad = subprocess.run(
        [sys.executable, "-c", code, "floss=nonexistent"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "allowed: none, pre, pre_during" in bad.stderr
