"""Shared test setup.

BLENDER_USER_RESOURCES is pointed at a throw-away folder before anything can import bpy, so no
test writes to the user's Blender configuration.

The suite runs on two Pythons, as the product does (scripts/run_tests.sh): the Blender side on
Blender 5.3's Python 3.13, and the model side (torch) on Python 3.11. Tests that import torch in
their own process are marked ``torch`` (every test under tests/ml is); tests that only start the
model side as a child process take the ``torch_python`` fixture instead, so they run on the
Blender side's Python exactly as the add-on does.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_USER_RESOURCES = tempfile.mkdtemp(prefix="instseg-blender-user-")
os.environ["BLENDER_USER_RESOURCES"] = _USER_RESOURCES

# scripts/run_tests.sh sets it: a skipped test then fails, since a skip there means a broken
# install (no bpy, no torch) that would otherwise leave the run green with half the suite unrun.
NO_SKIP = os.environ.get("INSTSEG_NO_SKIP") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ml_dir = ROOT / "tests" / "ml"
    for item in items:
        if ml_dir in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.torch)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if NO_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and skips are failures in this run (INSTSEG_NO_SKIP=1): {reason}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A whole module skipped at collection (``pytest.importorskip`` at the top) never reaches
    pytest_runtest_makereport: count those here."""
    if not NO_SKIP:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        where = ", ".join(sorted({str(getattr(r, "nodeid", "") or getattr(r, "fspath", "?")) for r in skipped}))
        sys.stderr.write(f"error: {len(skipped)} skipped in a run where skips are failures (INSTSEG_NO_SKIP=1): {where}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def find_torch_python() -> str:
    """The Python the model side runs on: INSTSEG_TORCH_PYTHON when set (make test sets it), else
    this interpreter if it has torch, else the checkout's .venv (as the add-on's default), else ''."""
    chosen = os.environ.get("INSTSEG_TORCH_PYTHON", "")
    if chosen:
        # absolute, not resolved: children start in other folders, and a venv's python is a symlink
        return os.path.abspath(chosen)
    if importlib.util.find_spec("torch") is not None:
        return sys.executable
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else ""


@pytest.fixture(scope="session")
def torch_python() -> str:
    """Path of a Python with torch (the add-on's "Python with torch" preference); fails when none is."""
    python = find_torch_python()
    if not python:
        pytest.fail("no Python with torch: set INSTSEG_TORCH_PYTHON or run `make venv` (it creates .venv)")
    probe = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        pytest.fail(f"INSTSEG_TORCH_PYTHON={python} cannot import torch: {probe.stderr.strip()[-300:]}")
    return python


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture()
def shapes_dataset(tmp_path: Path) -> Path:
    """A small drawn-shapes COCO dataset (8 images, 64x64); returns its annotations.json."""
    from tests.shapes import make_shapes_dataset

    return make_shapes_dataset(tmp_path / "shapes", n_images=8, size=64, seed=0)
