"""Add-on preferences: which Python runs the model, and where outputs go.

torch cannot be bundled in an extension (hundreds of MB, and no runtime pip installs are allowed),
so training and prediction run in a separate interpreter that has torch. This module finds that
interpreter and checks it without ever importing torch into Blender.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy

from .. import __package__ as base_package
from . import OperatorReturn

log = logging.getLogger(__name__)

# The repository root when running from a checkout (blender_instseg/blender/preferences.py -> repo).
_CHECKOUT_ROOT = Path(__file__).resolve().parents[2]
CHECK_TIMEOUT_S = 60.0

# Runs in the *other* interpreter. It reports "no torch" as data rather than a traceback so the
# operator can tell a wrong path apart from a Python that lacks torch.
_CHECK_CODE = """\
import json, sys
info = {"python": sys.version.split()[0], "executable": sys.executable}
try:
    import torch
except Exception as exc:
    info["error"] = "%s: %s" % (type(exc).__name__, exc)
else:
    cuda = bool(torch.cuda.is_available())
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    info.update(torch=torch.__version__, cuda=cuda, cuda_version=torch.version.cuda,
                device="cuda" if cuda else ("mps" if mps else "cpu"))
print(json.dumps(info))
"""


@dataclass
class PythonCheck:
    """What ``check_python`` found; ``message`` is ready for ``Operator.report``."""

    ok: bool
    message: str
    python: str
    torch_version: str | None = None
    device: str | None = None


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def default_python() -> str:
    """The project's ``.venv`` when running from a checkout, else ``python3`` on PATH."""
    candidate = _venv_python(_CHECKOUT_ROOT / ".venv")
    if candidate.is_file():
        return str(candidate)
    for name in ("python3", "python"):
        found = shutil.which(name)
        if found:
            return found
    return "python3"


def get_preferences(context: Any = None) -> Any | None:
    """This add-on's preferences, or None when it is not enabled as an add-on (e.g. tests that call
    ``register()`` directly in module mode)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(base_package)
    return addon.preferences if addon is not None else None


def resolve_python(context: Any = None) -> str:
    """The interpreter to run ``python -m blender_instseg.ml``: the preference, or auto-detected."""
    prefs = get_preferences(context)
    path = getattr(prefs, "python_path", "") if prefs is not None else ""
    if path.strip():
        return os.path.expanduser(bpy.path.abspath(path.strip()))
    return default_python()


def default_output_dir() -> str:
    """Blender's per-extension user folder (kept across upgrades, removed on uninstall); in module
    mode or a legacy add-on, where that does not exist, a folder under the user's DATAFILES."""
    try:
        return bpy.utils.extension_path_user(base_package, path="", create=True)
    except (ValueError, RuntimeError):
        pass
    try:
        path = bpy.utils.user_resource("DATAFILES", path=base_package.rpartition(".")[2], create=True)
        if path:
            return path
    except (ValueError, RuntimeError):
        pass
    fallback = Path(tempfile.gettempdir()) / "blender_instseg"
    fallback.mkdir(parents=True, exist_ok=True)
    return str(fallback)


def resolve_output_dir(context: Any = None) -> str:
    """The folder for datasets, runs and reports: the preference, or ``default_output_dir()``."""
    prefs = get_preferences(context)
    path = getattr(prefs, "output_dir", "") if prefs is not None else ""
    if path.strip():
        return os.path.expanduser(bpy.path.abspath(path.strip()))
    return default_output_dir()


def foreign_python_env() -> dict[str, str]:
    """This process's environment minus what points a Python at this Python's modules.

    The Python with torch is usually another interpreter (3.11 beside Blender 5.1+'s 3.13): a
    PYTHONPATH or PYTHONHOME meant for Blender's Python would hand it numpy built for another ABI.
    """
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def check_python(python: str, timeout: float = CHECK_TIMEOUT_S) -> PythonCheck:
    """Run ``python`` to see whether it can import torch, and on which device. Never raises."""
    fix = "set Preferences > Add-ons > Instance Segmentation Studio > Python to an interpreter with torch"
    try:
        proc = subprocess.run(
            [python, "-c", _CHECK_CODE], capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL, env=foreign_python_env(),
        )
    except FileNotFoundError:
        return PythonCheck(False, f"Python not found: {python!r}; {fix}", python)
    except PermissionError:
        return PythonCheck(False, f"not executable: {python!r}; {fix}", python)
    except subprocess.TimeoutExpired:
        return PythonCheck(False, f"{python!r} did not answer within {timeout:.0f} s", python)
    except OSError as exc:
        return PythonCheck(False, f"cannot run {python!r}: {exc.strerror or exc}; {fix}", python)
    info: dict[str, Any] | None = None
    for line in reversed(proc.stdout.splitlines()):
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            info = parsed
            break
    if proc.returncode != 0 or info is None:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return PythonCheck(False, f"{python!r} is not a working Python ({tail}); {fix}", python)
    if "error" in info:
        return PythonCheck(
            False,
            f"torch is not importable in {python} (Python {info.get('python')}): {info['error']}; "
            f"install it there (`{python} -m pip install torch`) or {fix}",
            python,
        )
    device = str(info.get("device", "cpu"))
    return PythonCheck(
        True,
        f"torch {info.get('torch')} on {device} (Python {info.get('python')}, {python})",
        python,
        torch_version=str(info.get("torch")),
        device=device,
    )


_LAST_CHECK: list[str] = [""]  # the last Check Python message of this session (InstsegPreferences.last_check)


class INSTSEG_OT_check_python(bpy.types.Operator):
    """Check that the configured Python can import torch, and show its version and device"""

    bl_idname = "instseg.check_python"
    bl_label = "Check Python"
    bl_options = {"INTERNAL"}

    def execute(self, context: bpy.types.Context) -> set[OperatorReturn]:
        result = check_python(resolve_python(context))
        prefs = get_preferences(context)
        if prefs is not None:
            prefs.last_check = result.message
        if result.ok:
            self.report({"INFO"}, result.message)
            return {"FINISHED"}
        log.warning("%s", result.message)
        self.report({"ERROR"}, result.message)
        return {"CANCELLED"}


class InstsegPreferences(bpy.types.AddonPreferences):
    bl_idname = base_package

    python_path: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Python",
        description="Interpreter with torch that trains and predicts (empty: the project .venv "
        "next to a checkout, else python3 on PATH)",
        subtype="FILE_PATH",
        default="",
    )
    output_dir: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Output Folder",
        description="Where datasets, training runs and reports are written (empty: the "
        "extension's own user folder)",
        subtype="DIR_PATH",
        default="",
    )
    # Read and written through get/set on a module variable: the property stores nothing, so saving
    # the preferences never writes it (SKIP_SAVE only applies to operator properties) and a restart
    # or a re-enabled add-on starts without a stale result.
    last_check: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Last Check",
        description="Result of the last Python check (this session only)",
        get=lambda self: _LAST_CHECK[0],
        set=lambda self, value: _LAST_CHECK.__setitem__(0, value),
    )

    def draw(self, context: bpy.types.Context) -> None:
        from . import DEPENDENCY_PROBLEM

        layout = self.layout
        if DEPENDENCY_PROBLEM:
            box = layout.box()
            box.alert = True
            box.label(text="The add-on's panel is off: its bundled modules do not load here", icon="ERROR")
            box.label(text=DEPENDENCY_PROBLEM)
        col = layout.column()
        col.prop(self, "python_path")
        if not self.python_path.strip():
            col.label(text=f"Auto: {default_python()}", icon="INFO")
        row = col.row()
        row.operator(INSTSEG_OT_check_python.bl_idname, icon="CHECKMARK")
        if self.last_check:
            col.label(text=self.last_check)
        col.separator()
        col.prop(self, "output_dir")
        if not self.output_dir.strip():
            col.label(text="Default: the extension's user folder", icon="INFO")


classes: tuple[type, ...] = (INSTSEG_OT_check_python, InstsegPreferences)


def unregister() -> None:
    _LAST_CHECK[0] = ""  # a re-enabled add-on shows no result of its previous life
