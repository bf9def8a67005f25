#!/usr/bin/env python3
"""Make pycocotools and OpenCV importable inside a Blender binary's own Python.

``blender -b -P scripts/generate.py`` runs on Blender's bundled Python, which has numpy but not
pycocotools or cv2. Installing into Blender's Python at run time is what the extension rules
forbid, so instead the same wheels the extension bundles (``wheels/``, fetched by ``make wheels``)
are unpacked once into ``build/blender-site-pyXY/`` (per Python version) and that folder is put on ``sys.path``. In the
project's own venv (module-mode bpy) both imports already work and nothing happens.

Use from a script that runs inside Blender, before importing the package::

    sys.path.insert(0, str(Path(__file__).resolve().parent))   # scripts/
    import deps
    deps.ensure_third_party()        # raises deps.DependencyError with a one-line message

``python scripts/deps.py`` does the same and prints where the modules come from.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS_DIR = ROOT / "wheels"
# One folder per Python version: the wheels that fit 3.11 and 3.13 differ (pycocotools is cp311 vs
# cp312-abi3), and two Blenders sharing one checkout must not unpack over each other.
SITE_DIR = ROOT / "build" / f"blender-site-py{sys.version_info[0]}{sys.version_info[1]}"
MODULES = ("pycocotools", "cv2")
STAMP = ".wheels.json"

log = logging.getLogger("deps")


class DependencyError(RuntimeError):
    """A missing or unusable third-party dependency, explained in one line with the fix."""


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def wheel_fits_python(name: str, version: tuple[int, int]) -> bool:
    """Whether a wheel file name's Python and ABI tags load in CPython ``version`` (e.g. (3, 13)):
    ``cp311-cp311`` only in 3.11, ``cp312-abi3`` in 3.12 and newer, ``py3-none`` in any."""
    parts = name[:-4].split("-")
    if len(parts) < 5:
        return False
    py_tags, abi_tags = parts[-3].split("."), parts[-2].split(".")
    if "abi3" in abi_tags:
        return any(t.startswith("cp3") and int(t[3:] or 0) <= version[1] for t in py_tags)
    return f"cp{version[0]}{version[1]}" in py_tags or "py3" in py_tags


def _wheel_fits(name: str) -> bool:
    """Whether a wheel file name's tags can load in this interpreter (python/abi and OS/arch).

    A light check on purpose: plain Blender Pythons have no ``packaging``. It exists so that a
    cp311 wheel under Blender 5.1's Python 3.13 fails with a clear message, not an ImportError
    from deep inside cv2.
    """
    parts = name[:-4].split("-")
    if len(parts) < 5:
        return False
    plat_tags = parts[-1].split(".")
    py_ok = wheel_fits_python(name, (sys.version_info[0], sys.version_info[1]))
    machine = platform.machine().lower()
    arch_aliases = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "arm64", "aarch64": "aarch64"}
    arch = arch_aliases.get(machine, machine)
    system = sys.platform
    def plat_ok(tag: str) -> bool:
        if tag == "any":
            return True
        if system.startswith("linux"):
            return "linux" in tag and tag.endswith(arch)
        if system == "darwin":
            return tag.startswith("macosx") and (tag.endswith(arch) or tag.endswith("universal2"))
        if system == "win32":
            return tag == ("win_amd64" if arch == "x86_64" else f"win_{arch}")
        return False
    return py_ok and any(plat_ok(t) for t in plat_tags)


def unpack_wheels(wheels: list[Path], site_dir: Path) -> Path:
    """Extract the wheels into ``site_dir`` atomically: a temp folder renamed into place, so an
    interrupted unpack never leaves a folder that looks complete."""
    site_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{site_dir.name}.", dir=site_dir.parent))
    try:
        for wheel in wheels:
            try:
                with zipfile.ZipFile(wheel) as zf:
                    zf.extractall(tmp)
            except zipfile.BadZipFile:
                raise DependencyError(f"corrupt wheel {wheel}; delete it and run `make wheels`") from None
        (tmp / STAMP).write_text(json.dumps(sorted(w.name for w in wheels)), encoding="utf-8")
        if site_dir.exists():
            shutil.rmtree(site_dir)
        os.replace(tmp, site_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return site_dir


def _stamp_matches(site_dir: Path, wheels: list[Path]) -> bool:
    try:
        return json.loads((site_dir / STAMP).read_text(encoding="utf-8")) == sorted(w.name for w in wheels)
    except (OSError, ValueError):
        return False


def ensure_third_party(
    wheels_dir: Path = WHEELS_DIR,
    site_dir: Path = SITE_DIR,
    modules: tuple[str, ...] = MODULES,
) -> None:
    """Make ``modules`` importable, unpacking the bundled wheels only when an import is missing.

    Raises DependencyError (one line, with the fix) when the wheels are absent, do not fit this
    Python, or still do not import (e.g. a Python without numpy).
    """
    missing = _missing(modules)
    if not missing:
        return
    wheels = sorted(wheels_dir.glob("*.whl")) if wheels_dir.is_dir() else []
    if not wheels:
        raise DependencyError(
            f"{', '.join(missing)} not importable in this Python ({sys.executable}) and no wheels in "
            f"{wheels_dir}; run `make wheels` in {ROOT} first"
        )
    usable = [w for w in wheels if _wheel_fits(w.name)]
    if not usable:
        raise DependencyError(
            f"none of the wheels in {wheels_dir} fit Python {sys.version_info[0]}.{sys.version_info[1]} on "
            f"{sys.platform}/{platform.machine()}; run `python scripts/build_extension.py wheels "
            f"--python-version {sys.version_info[0]}.{sys.version_info[1]} --platform <tag>` (see docs/extension.md)"
        )
    if not _stamp_matches(site_dir, usable):
        log.info("unpacking %d wheels into %s", len(usable), site_dir)
        unpack_wheels(usable, site_dir)
    # Appended, not prepended: whatever this Python already has (numpy above all) keeps priority.
    if str(site_dir) not in sys.path:
        sys.path.append(str(site_dir))
    importlib.invalidate_caches()
    for name in missing:
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, or a numpy ABI error raised from the extension module
            raise DependencyError(
                f"{name} from {site_dir} does not import in {sys.executable}: {type(exc).__name__}: {exc}"
            ) from None


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        description="Make pycocotools and cv2 importable in this Python (e.g. a Blender binary's) "
        "from the bundled wheels, and print where they come from."
    )
    parser.add_argument("--wheels", type=Path, default=WHEELS_DIR, help="wheel folder (default: %(default)s)")
    parser.add_argument("--site", type=Path, default=SITE_DIR, help="unpack target (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        ensure_third_party(args.wheels, args.site)
    except DependencyError as exc:
        print(f"deps: error: {exc}", file=sys.stderr)
        return 1
    for name in MODULES:
        module = importlib.import_module(name)
        print(f"{name}: {getattr(module, '__file__', '?')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
