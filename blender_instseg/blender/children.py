"""This Blender's own children: the warm model server kept while Blender runs, and generators started from here.

The child machinery itself is bpy-free (``procs``); what needs this process is here: the one
``ServerPool`` that lives as long as the add-on (stopped by ``ops.jobs.shutdown()`` when the add-on
is disabled or Blender quits), and which program a generator child runs (this Blender executable,
or this Python when bpy is a module).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import bpy

from ..procs import argv
from ..procs.server import ServerPool

SERVERS = ServerPool()  # module-level: lives across operator calls; stopped by ops.jobs.shutdown()


def blender_binary() -> str:
    """This Blender executable, or '' for the bpy module in a normal Python (whose binary_path is '' or a Python)."""
    path = bpy.app.binary_path or ""
    return path if path and not Path(path).name.startswith("python") else ""


def running_in_blender_binary() -> bool:
    """True inside a Blender executable; False for the bpy module in a normal Python."""
    return bool(blender_binary())


def panel_generator_argv(args: Sequence[str], *, binary_path: str | None = None,
                         module: str = argv.GENERATOR_MODULE) -> list[str]:
    """The generator started by the panel (Generate, and the mining loop's ``--generator-cmd``).

    This Blender in background mode with the user's preferences, so the installed extension and its
    bundled wheels load as in the UI, importing the add-on under its real module name; in module mode
    (``binary_path`` '') this Python. ``scripts/`` is not in an installed extension, so the child runs
    the package's own generator, never the checkout's script. ``module``: another entry started the same
    way (``argv.ANNOTATE_MODULE``, Annotate This Scene).
    """
    binary = blender_binary() if binary_path is None else binary_path
    return argv.generator_argv(binary or sys.executable, args, blender=bool(binary), package=argv.package_name(),
                               factory_startup=False, module=module)


def worker_generator_argv(args: Sequence[str]) -> list[str]:
    """One ``--workers`` child of the generator running in this process: the same program, factory settings.

    The child gets the folders that hold pycocotools and cv2 put on ``sys.path``, since a Blender
    binary ignores PYTHONPATH and only this process knows where scripts/deps.py unpacked them.
    """
    import cv2
    import pycocotools

    extra = [str(Path(mod.__file__ or "").resolve().parents[1]) for mod in (pycocotools, cv2)]
    binary = blender_binary()
    return argv.generator_argv(binary or sys.executable, args, blender=bool(binary), extra_path=extra)
