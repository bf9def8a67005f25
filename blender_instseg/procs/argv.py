"""Every child process's command line, and the environment it runs in.

One builder per child: the generator (a Python with the bpy module, or a Blender executable), the
model process (``-m blender_instseg.ml``), the bpy-free tools (``-m blender_instseg.core``) and the
pipeline (``-m blender_instseg.pipeline``). Callers only choose the interpreter and the arguments.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

#: the generator's entry point, relative to the top-level package: ``main(argv) -> exit code``
GENERATOR_MODULE = "blender.generate"
#: annotate-scene's entry point (the artist's own scene), started the same way as the generator
ANNOTATE_MODULE = "blender.annotate_scene"


def package_dir() -> Path:
    """The folder of the top-level package (``blender_instseg`` in a checkout, also inside an installed extension)."""
    return Path(__file__).resolve().parents[1]


def package_name() -> str:
    """The importable name of the top-level package, e.g. ``bl_ext.user_default.blender_instseg``."""
    return __name__.rsplit(".", 2)[0]


def child_env(extra_path: Sequence[str | os.PathLike[str]] = (), env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child: this package's parent folder (and ``extra_path``) as its PYTHONPATH,
    unbuffered output.

    An installed extension's folder is still named ``blender_instseg`` (inside bl_ext/<repo>/), so
    putting its parent on PYTHONPATH makes ``python -m blender_instseg.ml`` work for any interpreter.
    The parent's own PYTHONPATH and PYTHONHOME are not passed on: the child is often another Python
    (the one with torch is 3.11 beside Blender 5.1+'s 3.13), and paths meant for this interpreter
    would hand it modules built for another ABI.
    """
    env = {k: v for k, v in (os.environ if env is None else env).items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    parts = [str(package_dir().parent), *(str(p) for p in extra_path)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _module_argv(python: str, layer: str, command: str, args: Sequence[str]) -> list[str]:
    return [python, "-u", "-m", f"{package_dir().name}.{layer}", command, *[str(a) for a in args]]


def ml_argv(python: str, command: str, args: Sequence[str]) -> list[str]:
    """``<python> -u -m blender_instseg.ml <command> ARGS`` (the model process)."""
    return _module_argv(python, "ml", command, args)


def core_argv(python: str, command: str, args: Sequence[str]) -> list[str]:
    """``<python> -u -m blender_instseg.core <command> ARGS`` (bpy-free tools such as evaluate)."""
    return _module_argv(python, "core", command, args)


def pipeline_argv(python: str, command: str, args: Sequence[str]) -> list[str]:
    """``<python> -u -m blender_instseg.pipeline <command> ARGS`` (multi-stage jobs such as the mining loop)."""
    return _module_argv(python, "pipeline", command, args)


def is_blender_executable(program: str) -> bool:
    """A Blender executable (``blender``, ``Blender``, ``blender-5.0``...), as opposed to a Python with bpy."""
    return Path(program).name.lower().startswith("blender")


def checkout_generate_script() -> Path | None:
    """``scripts/generate.py`` of a checkout, or None inside an installed extension (scripts/ is not shipped).

    The script also makes pycocotools/OpenCV importable in a Blender binary's own Python (scripts/deps.py).
    """
    script = package_dir().parent / "scripts" / "generate.py"
    return script if script.is_file() else None


def generator_bootstrap(package: str | None = None, extra_path: Sequence[str | os.PathLike[str]] = (),
                        module: str = GENERATOR_MODULE) -> str:
    """Python source that runs the generator's ``main`` (or ``module``'s: annotate-scene) with the arguments
    after ``--`` and exits with its code.

    This package's parent folder and ``extra_path`` go first on ``sys.path`` (a Blender binary ignores
    PYTHONPATH). ``package`` is the add-on's real module name (e.g. ``bl_ext.user_default.blender_instseg``),
    imported when the child has the extension enabled; else the package is imported by its folder's name.
    """
    folder = package_dir()
    paths = list(dict.fromkeys([str(folder.parent), *(str(p) for p in extra_path)]))
    names = list(dict.fromkeys([package or folder.name, folder.name]))
    lines = [
        "import importlib, sys",
        f"sys.path[:0] = [p for p in {paths!r} if p not in sys.path]",
        "a = sys.argv[sys.argv.index('--') + 1:] if '--' in sys.argv else sys.argv[1:]",
    ]
    if len(names) == 2:
        lines += ["try:", f"    m = importlib.import_module({names[0] + '.' + module!r})",
                  "except ImportError:", f"    m = importlib.import_module({names[1] + '.' + module!r})"]
    else:
        lines.append(f"m = importlib.import_module({names[0] + '.' + module!r})")
    lines.append("sys.exit(m.main(a))")
    return "\n".join(lines)


def generator_argv(program: str, args: Sequence[str], *, blender: bool | None = None,
                   script: str | os.PathLike[str] | None = None, package: str | None = None,
                   extra_path: Sequence[str | os.PathLike[str]] = (), factory_startup: bool = True,
                   module: str = GENERATOR_MODULE) -> list[str]:
    """The generator as a child process: the one place its command line is built.

    ``program`` is a Python with the bpy module or a Blender executable (``blender`` says which; by
    default it is guessed from the file name). The child runs ``script`` when one is given (the
    checkout's ``scripts/generate.py``), else ``generator_bootstrap(package, extra_path)``; a Blender
    executable runs it in background mode, exiting non-zero when the script fails, with factory
    settings unless ``factory_startup`` is False (the user's preferences then load, so an installed
    extension and the wheels it bundles are importable). ``module`` picks another entry with the same
    ``main(argv)`` contract (``ANNOTATE_MODULE``).
    """
    blender = is_blender_executable(program) if blender is None else blender
    if script is not None:
        run = ["-P", str(script)] if blender else [str(script)]
    else:
        boot = generator_bootstrap(package, extra_path, module)
        run = ["--python-expr", boot] if blender else ["-c", boot]
    if blender:
        head = [program, "-b", *(["--factory-startup"] if factory_startup else []), "--python-exit-code", "1", *run]
    else:
        head = [program, "-u", *run]
    return [*head, "--", *[str(a) for a in args]]
