"""Generate a dataset: ``python scripts/generate.py ARGS`` or ``blender -b -P scripts/generate.py -- ARGS``.

A thin entry point: it puts the repository root on ``sys.path``, makes pycocotools/OpenCV
importable inside a Blender binary's own Python (scripts/deps.py), and calls
``blender_instseg.blender.generate.main`` with the arguments after ``--`` (or all of them).
Run with ``--help`` for the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def script_args(argv: list[str], in_blender_binary: bool = False) -> list[str]:
    """Arguments meant for us: after "--" (Blender binary style, or module style with "--"), else all.

    Inside a Blender binary without "--" every argument is Blender's own, so none are ours.
    """
    if "--" in argv:
        return argv[argv.index("--") + 1:]
    return [] if in_blender_binary else argv[1:]


def main(module: str = "blender_instseg.blender.generate", script: str = "scripts/generate.py") -> int:
    """Run ``module``'s ``main`` with our arguments (scripts/annotate_scene.py shares this entry)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from blender_instseg.core.protocol import reserve_stdout_for_events

    reserve_stdout_for_events()  # before bpy: its C code must not write into the events stream
    try:
        import bpy  # noqa: F401
    except ImportError:
        print("error: bpy is not importable: run with a Python that has the bpy module (e.g. .venv/bin/python) "
              f"or as blender -b -P {script} -- ARGS", file=sys.stderr)
        return 2
    try:
        sys.path.insert(0, str(HERE))
        import deps

        deps.ensure_third_party()
    except ImportError:
        pass  # no deps helper: the interpreter must already have pycocotools and cv2
    except Exception as exc:  # deps.DependencyError: one line with the fix
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if sys.path and sys.path[0] == str(HERE):
            sys.path.pop(0)
    import importlib

    from blender_instseg.blender.children import running_in_blender_binary

    return importlib.import_module(module).main(script_args(sys.argv, running_in_blender_binary()))


if __name__ == "__main__":
    sys.exit(main())
