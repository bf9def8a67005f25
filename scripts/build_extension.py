#!/usr/bin/env python3
"""Build and validate the Blender extension zip, and fetch the wheels it bundles.

The manifest lives at the repository root while the add-on package is ``blender_instseg/``, so the
extension is *staged* first: the manifest, the contents of ``blender_instseg/`` (its ``__init__.py``
becomes the add-on's ``__init__.py``, and relative imports keep working under
``bl_ext.<repo>.blender_instseg``) and the bundled ``wheels/``. Blender's own extension CLI
(``bl_pkg/cli/blender_ext.py``, shipped inside the ``bpy`` wheel and runnable on plain Python 3.11+)
then builds the zip and validates both the staged folder and the zip, so what we check is exactly
what Blender checks on install.

One zip per Blender Python (``TARGETS``): Blender derives the Pythons an extension supports from
its wheels' tags, and pycocotools has no wheel that loads in both 3.11 and 3.13 (cp311 vs
cp312-abi3), so one zip listing both would be taken as 3.11-only and refused by Blender 5.1+. Each
zip carries the manifest narrowed to its Blender range and its wheels; ``index.json`` beside them
(Blender's ``server-generate``) makes the output folder a repository from which Blender picks the
zip that fits.

    python scripts/build_extension.py wheels             # pip download into wheels/ (skipped when present)
    python scripts/build_extension.py build --out dist   # wheels + stage + zips + index.json + validate
    python scripts/build_extension.py validate           # validate the staged folders and the zips

Importable too (tests use it): ``ensure_wheels()``, ``stage()``, ``build()``, ``validate()``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from deps import wheel_fits_python  # noqa: E402
MANIFEST_NAME = "blender_manifest.toml"
PACKAGE_DIR = "blender_instseg"
# Mesh assets the scene builder loads; shipped at the extension root (next to blender/, core/).
ASSETS_DIR = "assets"
# Never shipped inside the zip: caches, editor droppings and anything test-only.
STAGE_IGNORE = ("__pycache__", "*.pyc", "*.pyo", ".mypy_cache", ".pytest_cache", "tests", ".keep", "*.orig", "*~")
# The wheels the manifest lists are the Linux x86_64 builds for Blender 4.2-5.0's Python 3.11 and
# Blender 5.1-5.3's Python 3.13; Blender installs the ones that fit the Python it runs.
DEFAULT_PLATFORMS = ("manylinux2014_x86_64",)


@dataclass(frozen=True)
class Target:
    """One zip: the Blender series that run one Python version. ``blender_max`` is exclusive, as in
    the manifest; the repository manifest's own min/max must span every target."""

    python: str
    blender_min: str
    blender_max: str

    @property
    def label(self) -> str:
        """'4.2-5.0': the Blender series of this zip, as artists name them."""
        last = self.blender_max.split(".")
        first = ".".join(self.blender_min.split(".")[:2])
        minor = int(last[1]) - 1
        return f"{first}-{last[0]}.{minor}" if minor >= 0 else first

    @property
    def version(self) -> tuple[int, int]:
        major, minor = self.python.split(".")
        return int(major), int(minor)


TARGETS = (Target("3.11", "4.2.0", "5.1.0"), Target("3.13", "5.1.0", "5.4.0"))
DEFAULT_PYTHON_VERSIONS = tuple(t.python for t in TARGETS)

log = logging.getLogger("build_extension")


class BuildError(RuntimeError):
    """A problem the user can fix; reported as one line, never as a traceback."""


@dataclass
class Layout:
    """Where things live; every path can be overridden so tests build into a temp dir."""

    root: Path = ROOT
    wheels_dir: Path = field(default_factory=lambda: ROOT / "wheels")
    stage_dir: Path = field(default_factory=lambda: ROOT / "build" / "extension")
    out_dir: Path = field(default_factory=lambda: ROOT / "dist")
    requirements: Path = field(default_factory=lambda: ROOT / "requirements" / "wheels.txt")

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_NAME

    @property
    def package(self) -> Path:
        return self.root / PACKAGE_DIR

    @property
    def assets(self) -> Path:
        return self.root / ASSETS_DIR


def read_manifest(path: Path) -> dict:
    """Parse the manifest; a broken manifest is a user error, not a crash."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise BuildError(f"manifest not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"manifest is not valid TOML: {path} ({exc})") from None


def zip_name(manifest: dict, target: Target) -> str:
    return f"{manifest['id']}-{manifest['version']}-blender{target.label}.zip"


def target_for_blender(version: tuple[int, ...]) -> Target | None:
    """The target whose Blender range holds ``version`` (e.g. bpy.app.version), else None."""
    for target in TARGETS:
        lo = tuple(int(p) for p in target.blender_min.split("."))
        hi = tuple(int(p) for p in target.blender_max.split("."))
        if lo <= tuple(version[:3]) < hi:
            return target
    return None


def target_manifest_text(text: str, target: Target, wheels: list[str]) -> str:
    """The repository manifest narrowed to one target: its Blender range and only its wheels."""
    text = re.sub(r'^blender_version_min = ".*"$', f'blender_version_min = "{target.blender_min}"', text, flags=re.M)
    text = re.sub(r'^blender_version_max = ".*"$', f'blender_version_max = "{target.blender_max}"', text, flags=re.M)
    block = "wheels = [\n" + "".join(f'  "./wheels/{name}",\n' for name in wheels) + "]"
    text, n = re.subn(r"^wheels = \[.*?^\]", lambda _: block, text, flags=re.M | re.S)
    if n != 1:
        raise BuildError(f"{MANIFEST_NAME}: expected one `wheels = [...]` block, found {n}")
    return text


def target_wheels(names: list[str], target: Target) -> list[str]:
    fitting = [n for n in names if wheel_fits_python(n, target.version)]
    if not fitting:
        raise BuildError(f"no wheel in {MANIFEST_NAME} fits Python {target.python}")
    return fitting


def manifest_wheels(manifest: dict) -> list[str]:
    """Wheel file names listed in the manifest (the manual requires ``./wheels/<name>.whl``)."""
    names = []
    for entry in manifest.get("wheels", []):
        if not entry.startswith("./wheels/") or "/" in entry[len("./wheels/"):]:
            raise BuildError(f"manifest wheel path must be ./wheels/<file>.whl, found {entry!r}")
        names.append(entry[len("./wheels/"):])
    return names


def check_wheels_match(layout: Layout, manifest: dict) -> list[str]:
    """The folder and the manifest must list the same wheels: a stale or missing file would ship a
    zip that Blender refuses, or one that silently bundles an extra binary."""
    listed = set(manifest_wheels(manifest))
    present = {p.name for p in layout.wheels_dir.glob("*.whl")} if layout.wheels_dir.is_dir() else set()
    missing = sorted(listed - present)
    extra = sorted(present - listed)
    problems = []
    if missing:
        problems.append(f"listed in {MANIFEST_NAME} but not in {layout.wheels_dir}: {', '.join(missing)}")
    if extra:
        problems.append(f"in {layout.wheels_dir} but not listed in {MANIFEST_NAME} wheels: {', '.join(extra)}")
    if problems:
        raise BuildError("wheels and manifest disagree; " + "; ".join(problems))
    return sorted(listed)


def requirement_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BuildError(f"requirements file not found: {path}") from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [line for line in lines if line]


def ensure_wheels(
    layout: Layout | None = None,
    *,
    platforms: tuple[str, ...] = DEFAULT_PLATFORMS,
    python_versions: tuple[str, ...] = DEFAULT_PYTHON_VERSIONS,
    force: bool = False,
) -> list[Path]:
    """Download the bundled wheels (every platform x Python asked) unless every wheel the manifest
    lists is already there.

    Only PyPI's unmodified binary wheels are used (``--only-binary=:all:``), as the extension
    guidelines ask; ``--no-deps`` because numpy comes with Blender.
    """
    layout = layout or Layout()
    manifest = read_manifest(layout.manifest)
    listed = manifest_wheels(manifest)
    have_all = layout.wheels_dir.is_dir() and all((layout.wheels_dir / n).is_file() for n in listed)
    if force or not have_all:
        reqs = requirement_lines(layout.requirements)
        if not reqs:
            raise BuildError(f"no requirements in {layout.requirements}")
        layout.wheels_dir.mkdir(parents=True, exist_ok=True)
        # pip writes into a private folder; finished wheels are renamed into wheels/, so an
        # interrupted download never leaves a truncated .whl that looks present.
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=layout.wheels_dir))
        try:
            for platform in platforms:
                for python_version in python_versions:
                    cmd = [
                        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--only-binary=:all:", "--implementation", "cp",
                        "--python-version", python_version, "--platform", platform,
                        "--dest", str(tmp), *reqs,
                    ]
                    log.info("downloading wheels for %s / Python %s", platform, python_version)
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    if proc.returncode != 0:
                        detail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                        raise BuildError(f"pip download failed for {platform} / Python {python_version}: {detail}")
            for wheel in tmp.glob("*.whl"):
                os.replace(wheel, layout.wheels_dir / wheel.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        log.info("wheels already present in %s", layout.wheels_dir)
    names = check_wheels_match(layout, manifest)
    return [layout.wheels_dir / n for n in names]


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard links keep staging the 50 MB of wheels instant; copy across file systems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def stage(layout: Layout | None = None, target: Target = TARGETS[-1]) -> Path:
    """Assemble one target's extension source folder (``stage_dir/python<X.Y>``): its manifest +
    the package contents + assets + the listed wheels that fit its Python."""
    layout = layout or Layout()
    manifest = read_manifest(layout.manifest)
    if not (layout.package / "__init__.py").is_file():
        raise BuildError(f"add-on package not found: {layout.package}/__init__.py")
    wheels = target_wheels(check_wheels_match(layout, manifest), target)
    dest = layout.stage_dir / f"python{target.python}"
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(layout.package, dest, ignore=shutil.ignore_patterns(*STAGE_IGNORE))
    text = layout.manifest.read_text(encoding="utf-8")
    (dest / MANIFEST_NAME).write_text(target_manifest_text(text, target, wheels), encoding="utf-8")
    if layout.assets.is_dir():
        if (dest / ASSETS_DIR).exists():
            raise BuildError(f"{PACKAGE_DIR}/{ASSETS_DIR} would clash with the repository's {ASSETS_DIR}/")
        shutil.copytree(layout.assets, dest / ASSETS_DIR, ignore=shutil.ignore_patterns(*STAGE_IGNORE))
    if wheels:
        (dest / "wheels").mkdir()
        for name in wheels:
            _link_or_copy(layout.wheels_dir / name, dest / "wheels" / name)
    log.info("staged %s", dest)
    return dest


def blender_ext_cli() -> Path:
    """Blender's extension CLI inside the installed ``bpy`` package (found without importing bpy)."""
    override = os.environ.get("BLENDER_EXT_CLI")
    if override:
        path = Path(override)
        if not path.is_file():
            raise BuildError(f"BLENDER_EXT_CLI does not exist: {path}")
        return path
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.origin:
        raise BuildError("bpy is not installed in this Python; run `make venv` (or set BLENDER_EXT_CLI)")
    bpy_dir = Path(spec.origin).parent
    found = sorted(bpy_dir.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise BuildError(f"blender_ext.py not found under {bpy_dir}")
    return found[-1]


def _run_cli(args: list[str]) -> str:
    cmd = [sys.executable, str(blender_ext_cli()), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        raise BuildError(f"blender_ext.py {args[0]} failed: {' | '.join(lines[-4:]) or 'no output'}")
    return out


def validate(paths: list[Path]) -> None:
    """Run Blender's validator on each path (a staged folder or a zip)."""
    for path in paths:
        if not path.exists():
            raise BuildError(f"nothing to validate at {path}")
        _run_cli(["validate", str(path)])
        log.info("valid: %s", path)


def build(layout: Layout | None = None) -> list[Path]:
    """wheels -> per target: stage, Blender's build, validate folder and zip -> index.json.
    Returns the zips in ``TARGETS`` order."""
    layout = layout or Layout()
    ensure_wheels(layout)
    manifest = read_manifest(layout.manifest)
    layout.out_dir.mkdir(parents=True, exist_ok=True)
    zips = []
    for target in TARGETS:
        staged = stage(layout, target)
        zip_path = layout.out_dir / zip_name(manifest, target)
        # Build next to the zip and rename, so a failed build never leaves a half-written zip behind.
        partial = layout.out_dir / f".{zip_path.name}.partial.zip"
        partial.unlink(missing_ok=True)
        try:
            _run_cli(["build", "--source-dir", str(staged), "--output-filepath", str(partial)])
            validate([staged])
            _run_cli(["validate", str(partial)])
            os.replace(partial, zip_path)
            log.info("valid: %s", zip_path)
        finally:
            partial.unlink(missing_ok=True)
        log.info("built %s (%.1f MB)", zip_path, zip_path.stat().st_size / 1e6)
        zips.append(zip_path)
    # Blender's repository listing of the folder: a user who adds it as a repository gets the zip
    # whose Blender range and Python fit, without choosing.
    _run_cli(["server-generate", "--repo-dir", str(layout.out_dir)])
    return zips


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="build_extension.py",
        description="Fetch the bundled wheels, build the Blender extension zip, and validate it "
        "with Blender's own extension CLI.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{wheels,build,validate}")

    w = sub.add_parser("wheels", help="download requirements/wheels.txt into wheels/ and check the manifest lists them")
    w.add_argument("--platform", action="append", dest="platforms", metavar="TAG",
                   help=f"pip platform tag, repeatable (default: {DEFAULT_PLATFORMS[0]})")
    w.add_argument("--python-version", action="append", dest="python_versions", metavar="X.Y",
                   help="target Python of Blender, repeatable (3.11 for Blender 4.2-5.0, 3.13 for 5.1-5.3; "
                   f"default: {' and '.join(DEFAULT_PYTHON_VERSIONS)})")
    w.add_argument("--force", action="store_true", help="download even when the listed wheels are present")

    b = sub.add_parser("build", help="wheels, stage build/extension, build one zip per Blender Python, validate "
                       "folders and zips, write index.json")
    b.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder for the zip (default: dist)")
    b.add_argument("--stage", type=Path, default=ROOT / "build" / "extension",
                   help="staging folder, recreated on each build (default: build/extension)")

    v = sub.add_parser("validate", help="validate the staged folders (re-staged) and the built zips, or given paths")
    v.add_argument("paths", nargs="*", type=Path,
                   help="folders or zips to validate (default: re-stage build/extension/python<X.Y> and "
                   "validate them, plus the dist/ zips that exist)")
    p.add_argument("-q", "--quiet", action="store_true", help="only print errors")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        if args.command == "wheels":
            platforms = tuple(args.platforms) if args.platforms else DEFAULT_PLATFORMS
            pythons = tuple(args.python_versions) if args.python_versions else DEFAULT_PYTHON_VERSIONS
            # Another platform or Python is never "already present": the manifest lists Linux x86_64.
            explicit = platforms != DEFAULT_PLATFORMS or pythons != DEFAULT_PYTHON_VERSIONS
            ensure_wheels(platforms=platforms, python_versions=pythons, force=args.force or explicit)
        elif args.command == "build":
            for zip_path in build(Layout(stage_dir=args.stage.resolve(), out_dir=args.out.resolve())):
                print(zip_path)
        else:
            paths = [p.resolve() for p in args.paths]
            if not paths:
                layout = Layout()
                manifest = read_manifest(layout.manifest)
                for target in TARGETS:
                    paths.append(stage(layout, target))
                    zip_path = layout.out_dir / zip_name(manifest, target)
                    if zip_path.exists():
                        paths.append(zip_path)
                    else:
                        log.info("no %s yet (run `make build`); validated the staged folder only", zip_path)
            validate(paths)
    except BuildError as exc:
        print(f"build_extension: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("build_extension: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
