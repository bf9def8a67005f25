"""The extension as users get it: built by Blender's own CLI, installed into the real bpy of the
Python running the tests (bpy 5.3.0 on Python 3.13 and bpy 5.0.1 on Python 3.11, scripts/run_tests.sh).

Installs run in a child process (one bpy per process, and an add-on left enabled would leak into
other tests) started with ``python -S`` and a PYTHONPATH that holds only bpy and numpy. So cv2 and
pycocotools are NOT importable there until the extension's bundled wheels are installed: the
test proves the zip's wheels work, not the venv's copies. Results come back as JSON on stdout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import build_extension as bx  # noqa: E402
import deps  # noqa: E402

MODULE = "bl_ext.user_default.blender_instseg"


def _isolated_path(tmp: Path, packages: tuple[str, ...]) -> Path:
    """A folder of symlinks to just ``packages`` (and their ``.libs``), for ``python -S`` children."""
    folder = tmp / "isolated-site"
    folder.mkdir(exist_ok=True)
    for name in packages:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.submodule_search_locations, name
        src = Path(next(iter(spec.submodule_search_locations)))
        for path in (src, src.with_name(f"{name}.libs")):
            if path.exists() and not (folder / path.name).exists():
                (folder / path.name).symlink_to(path, target_is_directory=True)
    return folder


def _run_isolated(tmp: Path, script: str, *args: str, packages: tuple[str, ...] | None) -> dict:
    """Run ``script`` in a child Python; ``packages=None`` gives it the full venv instead of ``-S``."""
    path = tmp / "child.py"
    path.write_text(textwrap.dedent(script), encoding="utf-8")
    env = dict(os.environ)
    env["BLENDER_USER_RESOURCES"] = str(tmp / "blender-user")
    flags = []
    if packages is not None:
        env["PYTHONPATH"] = str(_isolated_path(tmp, packages))
        flags = ["-S"]
    proc = subprocess.run(
        [sys.executable, *flags, str(path), *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no RESULT line:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    result["_output"] = proc.stdout + proc.stderr
    return result


@pytest.fixture(scope="module")
def built_zips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Build once per module into a temp folder (wheels are fetched into wheels/ if missing)."""
    tmp = tmp_path_factory.mktemp("ext")
    layout = bx.Layout(stage_dir=tmp / "stage", out_dir=tmp / "dist")
    return bx.build(layout)


@pytest.fixture(scope="module")
def built_zip(built_zips: list[Path]) -> Path:
    """The zip for the Blender running the tests (bpy 5.3 or 5.0)."""
    import bpy

    target = bx.target_for_blender(bpy.app.version)
    assert target is not None, f"bpy {bpy.app.version_string} is outside every build target"
    return built_zips[bx.TARGETS.index(target)]


@pytest.mark.bpy
def test_one_zip_per_blender_python_each_with_its_range_and_wheels(built_zips: list[Path]) -> None:
    manifest = bx.read_manifest(ROOT / bx.MANIFEST_NAME)
    assert [z.name for z in built_zips] == [f"blender_instseg-{manifest['version']}-blender4.2-5.0.zip",
                                            f"blender_instseg-{manifest['version']}-blender5.1-5.3.zip"]
    # the targets tile the repository manifest's declared range with no gap
    assert bx.TARGETS[0].blender_min == manifest["blender_version_min"]
    assert bx.TARGETS[-1].blender_max == manifest["blender_version_max"]
    assert all(a.blender_max == b.blender_min for a, b in zip(bx.TARGETS, bx.TARGETS[1:]))
    assets = sorted(p.name for p in (ROOT / "assets").glob("*") if p.is_file() and p.name != ".keep")
    for built, target in zip(built_zips, bx.TARGETS):
        with zipfile.ZipFile(built) as zf:
            names = set(zf.namelist())
            inner = tomllib.loads(zf.read("blender_manifest.toml").decode("utf-8"))
        assert {"blender_manifest.toml", "__init__.py", "blender/__init__.py", "blender/preferences.py",
                "core/__init__.py", "core/fileio.py"} <= names
        assert (inner["blender_version_min"], inner["blender_version_max"]) == (target.blender_min, target.blender_max)
        wheels = {n for n in names if n.startswith("wheels/")}
        assert wheels == {entry[2:] for entry in inner["wheels"]}
        # exactly one pycocotools (the one this Python loads) and the abi3 OpenCV
        assert sorted(w.split("-")[0] for w in wheels) == ["wheels/opencv_python_headless", "wheels/pycocotools"]
        assert all(deps.wheel_fits_python(w[len("wheels/"):], target.version) for w in wheels)
        assert {f"assets/{a}" for a in assets} <= names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith("tests/")]
        # Blender's validator accepts the zip on its own too (build() already ran it on folder and zip).
        bx.validate([built])
    index = json.loads((built_zips[0].parent / "index.json").read_text())
    listed = {(d["archive_url"][2:], d["blender_version_min"], d["blender_version_max"]) for d in index["data"]}
    assert listed == {(z.name, t.blender_min, t.blender_max) for z, t in zip(built_zips, bx.TARGETS)}


@pytest.mark.bpy
def test_validator_rejects_a_bad_manifest(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    text = (ROOT / bx.MANIFEST_NAME).read_text(encoding="utf-8")
    bad = "\n".join(
        'tagline = "A tagline that is far too long for Blender to accept in its manifest."'
        if line.startswith("tagline") else line
        for line in text.splitlines()
    )
    (root / bx.MANIFEST_NAME).write_text(bad, encoding="utf-8")
    (root / "blender_instseg").mkdir()
    (root / "blender_instseg" / "__init__.py").write_text("def register():\n    pass\n", encoding="utf-8")
    layout = bx.Layout(root=root, wheels_dir=ROOT / "wheels", stage_dir=tmp_path / "stage", out_dir=tmp_path / "dist")
    bx.ensure_wheels(bx.Layout())
    staged = bx.stage(layout)
    with pytest.raises(bx.BuildError, match="tagline"):
        bx.validate([staged])


def test_wheels_folder_and_manifest_must_agree(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "extra-1.0-py3-none-any.whl").write_bytes(b"")
    layout = bx.Layout(wheels_dir=wheels)
    manifest = bx.read_manifest(ROOT / bx.MANIFEST_NAME)
    with pytest.raises(bx.BuildError) as err:
        bx.check_wheels_match(layout, manifest)
    message = str(err.value)
    assert "extra-1.0-py3-none-any.whl" in message and "not listed" in message
    assert "pycocotools" in message and "not in" in message


def test_cli_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "build_extension.py"
    proc = subprocess.run([sys.executable, str(script), "validate", str(tmp_path / "missing.zip")],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "nothing to validate" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, str(script), "bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "wheels" in proc.stdout and "validate" in proc.stdout


INSTALL_SCRIPT = r"""
import importlib, importlib.util, json, os, sys
zip_path, mod_name, python_ok = sys.argv[1], sys.argv[2], sys.argv[3]
import bpy
import addon_utils  # after bpy: bpy puts Blender's scripts/modules on sys.path

out = {"cv2_before": importlib.util.find_spec("cv2") is not None,
       "pycocotools_before": importlib.util.find_spec("pycocotools") is not None}
OWNERS = ("Scene", "WindowManager", "Object", "Collection", "Material", "Image", "ViewLayer")
def rna_props():
    return {o: sorted(getattr(bpy.types, o).bl_rna.properties.keys()) for o in OWNERS}
props_before = rna_props()
out["install"] = sorted(bpy.ops.extensions.package_install_files(
    filepath=zip_path, repo="user_default", enable_on_install=True))
out["enabled"] = mod_name in bpy.context.preferences.addons
pkg = sys.modules[mod_name]
framework = importlib.import_module(mod_name + ".blender")
prefs_mod = importlib.import_module(mod_name + ".blender.preferences")
classes = framework.registered_classes()
bases = ("Operator", "Panel", "Menu", "UIList", "AddonPreferences", "PropertyGroup", "Gizmo", "GizmoGroup")
out["classes"] = {c.__name__: [b for b in bases if issubclass(c, getattr(bpy.types, b))] for c in classes}
out["all_registered"] = all(c.is_registered for c in classes)
out["submodules"] = list(framework.SUBMODULES)
ops = {}
for c in classes:
    if issubclass(c, bpy.types.Operator):
        cat, name = c.bl_idname.split(".")
        ops[c.bl_idname] = name in dir(getattr(bpy.ops, cat))
out["operators"] = ops

# Bundled wheels, installed by Blender from the zip into its own site folder.
import cv2, numpy as np, pycocotools.mask as mask_util
user = os.environ["BLENDER_USER_RESOURCES"]
out["cv2_file"], out["pycocotools_file"] = cv2.__file__, mask_util.__file__
m = np.zeros((16, 16), np.uint8, order="F"); m[3:9, 4:12] = 1
out["rle_area"] = int(mask_util.area(mask_util.encode(m)))
out["contours"] = len(cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)[0])

# Preferences: found under the add-on's real package name, outputs in the extension user folder.
prefs = prefs_mod.get_preferences(bpy.context)
out["prefs_type"] = type(prefs).__name__ if prefs is not None else None
out["output_dir"] = prefs_mod.resolve_output_dir(bpy.context)
prefs.python_path = "/nonexistent/bin/python"
try:
    bpy.ops.instseg.check_python()
    out["bad_python"] = "no error"
except RuntimeError as exc:
    out["bad_python"] = str(exc)
out["last_check"] = prefs.last_check
prefs.python_path = python_ok
out["good_python"] = sorted(bpy.ops.instseg.check_python())
out["good_message"] = prefs.last_check

# Disable: nothing of ours may stay registered or hooked.
props_during = rna_props()
bpy.ops.preferences.addon_disable(module=mod_name)
out["after_disable_enabled"] = mod_name in bpy.context.preferences.addons
out["after_disable_classes"] = [c.__name__ for c in framework.registered_classes()]
out["after_disable_still_registered"] = [c.__name__ for c in classes if c.is_registered]
out["after_disable_ops"] = [i for i in ops if i.split(".")[1] in dir(getattr(bpy.ops, i.split(".")[0]))]
leftover = []
for name in dir(bpy.app.handlers):
    handlers = getattr(bpy.app.handlers, name)
    if isinstance(handlers, list):
        leftover += [f"{name}:{f}" for f in handlers if getattr(f, "__module__", "").startswith(mod_name)]
out["after_disable_handlers"] = leftover
out["props_added"] = sum(len(v) for v in props_during.values()) - sum(len(v) for v in props_before.values())
out["after_disable_props"] = {o: sorted(set(rna_props()[o]) - set(props_before[o])) for o in OWNERS}
framework.unregister()  # a second unregister is a no-op

repos = [r.module for r in bpy.context.preferences.extensions.repos]
ext_dir = os.path.join(bpy.context.preferences.extensions.repos[repos.index("user_default")].directory, "blender_instseg")
out["installed_dir_before"] = os.path.isdir(ext_dir)
out["uninstall"] = sorted(bpy.ops.extensions.package_uninstall(
    repo_index=repos.index("user_default"), pkg_id="blender_instseg"))
out["installed_dir_after"] = os.path.isdir(ext_dir)
print("RESULT " + json.dumps(out))
"""


@pytest.mark.bpy
def test_install_enable_disable_uninstall_in_real_bpy(built_zip: Path, tmp_path: Path, torch_python: str) -> None:
    r = _run_isolated(tmp_path, INSTALL_SCRIPT, str(built_zip), MODULE, torch_python,
                      packages=("bpy", "numpy"))
    user = str(tmp_path / "blender-user")
    # The child really lacked the third-party modules before the install ...
    assert not r["cv2_before"] and not r["pycocotools_before"]
    assert r["install"] == ["FINISHED"] and r["enabled"]
    # ... and got them from the zip's wheels, unpacked by Blender into the isolated user folder.
    assert r["cv2_file"].startswith(user) and r["pycocotools_file"].startswith(user)
    assert r["rle_area"] == 6 * 8 and r["contours"] == 1
    # Every class the framework registered is live; operators are callable as bpy.ops.instseg.*.
    assert r["all_registered"] and r["classes"]
    assert r["classes"]["InstsegPreferences"] == ["AddonPreferences"]
    assert r["classes"]["INSTSEG_OT_check_python"] == ["Operator"]
    assert r["operators"] and all(r["operators"].values()), r["operators"]
    assert r["submodules"][0] == "preferences"
    panels = [n for n, base in r["classes"].items() if base == ["Panel"]]
    if "ui" in r["submodules"]:
        assert panels, "a ui submodule is registered but no Panel class is"
    assert r["prefs_type"] == "InstsegPreferences"
    assert r["output_dir"].startswith(user) and "blender_instseg" in r["output_dir"]
    assert "Python not found" in r["bad_python"] and "Python not found" in r["last_check"]
    assert r["good_python"] == ["FINISHED"] and r["good_message"].startswith("torch ")
    # Disable leaves nothing behind; uninstall removes the files.
    assert not r["after_disable_enabled"]
    assert r["after_disable_classes"] == [] and r["after_disable_still_registered"] == []
    assert r["after_disable_ops"] == [] and r["after_disable_handlers"] == []
    if "props" in r["submodules"]:  # the add-on did attach properties, so the check above has teeth
        assert r["props_added"] > 0
    assert r["after_disable_props"] == {o: [] for o in r["after_disable_props"]}, r["after_disable_props"]
    assert r["installed_dir_before"] and r["uninstall"] == ["FINISHED"] and not r["installed_dir_after"]


FRAMEWORK_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import bpy
import blender_instseg
from blender_instseg import blender as fw

calls = []
def on_load(*args): calls.append(args)
def tick(): return 1.0

out = {}
blender_instseg.register()
fw.add_handler("load_post", on_load)
fw.add_timer(tick, first_interval=10.0)
out["registered"] = [c.__name__ for c in fw.registered_classes()]
out["handler_in"] = on_load in bpy.app.handlers.load_post
out["timer_in"] = bpy.app.timers.is_registered(tick)
blender_instseg.register()  # re-register (script reload) must not double-register
out["after_reregister"] = [c.__name__ for c in fw.registered_classes()]
blender_instseg.unregister()
blender_instseg.unregister()
out["after"] = [c.__name__ for c in fw.registered_classes()]
out["handler_after"] = on_load in bpy.app.handlers.load_post
out["timer_after"] = bpy.app.timers.is_registered(tick)
out["op_after"] = "check_python" in dir(bpy.ops.instseg)
print("RESULT " + json.dumps(out))
"""


@pytest.mark.bpy
def test_framework_register_unregister_twice_leaves_nothing(tmp_path: Path) -> None:
    r = _run_isolated(tmp_path, FRAMEWORK_SCRIPT, str(ROOT), packages=None)
    assert {"INSTSEG_OT_check_python", "InstsegPreferences"} <= set(r["registered"])
    assert r["after_reregister"] == r["registered"]
    assert r["handler_in"] and r["timer_in"]
    assert r["after"] == [] and not r["handler_after"] and not r["timer_after"] and not r["op_after"]


DEPS_SCRIPT = r"""
import importlib.util, json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import deps
out = {"before": [m for m in ("cv2", "pycocotools") if importlib.util.find_spec(m) is not None]}
deps.ensure_third_party(wheels_dir=Path(sys.argv[2]), site_dir=Path(sys.argv[3]))
import cv2, numpy as np, pycocotools.mask as mask_util
m = np.zeros((10, 10), np.uint8, order="F"); m[1:4, 1:4] = 1; m[6:9, 6:9] = 1
out["cv2"], out["pycocotools"] = cv2.__file__, mask_util.__file__
out["area"] = int(mask_util.area(mask_util.encode(m)))
out["parts"] = len(cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)[0])
deps.ensure_third_party(wheels_dir=Path(sys.argv[2]), site_dir=Path(sys.argv[3]))  # idempotent
out["sys_path_count"] = sys.path.count(sys.argv[3])
print("RESULT " + json.dumps(out))
"""


def test_deps_unpacks_bundled_wheels_for_a_python_without_them(tmp_path: Path) -> None:
    """Stands in for a Blender binary's Python: numpy only, no cv2/pycocotools."""
    bx.ensure_wheels(bx.Layout())
    site = tmp_path / "blender-site"
    r = _run_isolated(tmp_path, DEPS_SCRIPT, str(ROOT / "scripts"), str(ROOT / "wheels"), str(site),
                      packages=("numpy",))
    assert r["before"] == []
    assert r["cv2"].startswith(str(site)) and r["pycocotools"].startswith(str(site))
    assert r["area"] == 18 and r["parts"] == 2 and r["sys_path_count"] == 1
    fitting = sorted(p.name for p in (ROOT / "wheels").glob("*.whl") if deps._wheel_fits(p.name))
    assert len(fitting) == 2  # pycocotools for this Python, and the abi3 OpenCV
    assert json.loads((site / deps.STAMP).read_text()) == fitting


def test_deps_without_wheels_says_to_run_make_wheels(tmp_path: Path) -> None:
    with pytest.raises(deps.DependencyError, match="make wheels"):
        deps.ensure_third_party(wheels_dir=tmp_path / "none", site_dir=tmp_path / "site",
                                modules=("instseg_no_such_module",))
    assert not (tmp_path / "site").exists()


def test_deps_rejects_wheels_for_another_python(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    other = "cp310" if sys.version_info[:2] != (3, 10) else "cp39"
    (wheels / f"pycocotools-2.0.11-{other}-{other}-manylinux2014_x86_64.whl").write_bytes(b"")
    with pytest.raises(deps.DependencyError, match="--python-version"):
        deps.ensure_third_party(wheels_dir=wheels, site_dir=tmp_path / "site", modules=("instseg_no_such_module",))
    assert not (tmp_path / "site").exists()


def test_deps_corrupt_wheel_leaves_no_half_unpacked_site(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    (wheels / f"broken-1.0-{tag}-{tag}-manylinux2014_x86_64.whl").write_bytes(b"not a zip")
    with pytest.raises(deps.DependencyError, match="corrupt wheel"):
        deps.ensure_third_party(wheels_dir=wheels, site_dir=tmp_path / "site", modules=("instseg_no_such_module",))
    assert list(tmp_path.iterdir()) == [wheels]


@pytest.mark.bpy
def test_check_python_tells_missing_torch_from_wrong_path(tmp_path: Path, torch_python: str) -> None:
    from blender_instseg.blender.preferences import check_python

    good = check_python(torch_python)
    assert good.ok and good.torch_version and good.device in {"cpu", "cuda", "mps"}
    wrong = check_python(str(tmp_path / "nope" / "python"))
    assert not wrong.ok and "Python not found" in wrong.message
    # A real Python that lacks torch: the venv's interpreter without its site-packages.
    no_torch = tmp_path / "python-no-torch"
    no_torch.write_text(f'#!/bin/sh\nexec "{torch_python}" -S "$@"\n', encoding="utf-8")
    no_torch.chmod(0o755)
    missing = check_python(str(no_torch))
    assert not missing.ok and "torch is not importable" in missing.message and "pip install torch" in missing.message
    not_python = tmp_path / "not-python"
    not_python.write_text("#!/bin/sh\necho hello; exit 3\n", encoding="utf-8")
    not_python.chmod(0o755)
    bad = check_python(str(not_python))
    assert not bad.ok and "not a working Python" in bad.message


def test_deps_cli_one_line_error_and_success(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "deps.py"
    env = dict(os.environ, PYTHONPATH=str(_isolated_path(tmp_path, ("numpy",))))
    proc = subprocess.run([sys.executable, "-S", str(script), "--wheels", str(tmp_path / "none"),
                           "--site", str(tmp_path / "site")], capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "make wheels" in proc.stderr
    bx.ensure_wheels(bx.Layout())
    proc = subprocess.run([sys.executable, "-S", str(script), "--site", str(tmp_path / "site")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"cv2: {tmp_path / 'site'}" in proc.stdout and f"pycocotools: {tmp_path / 'site'}" in proc.stdout


NO_WHEELS_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import bpy
import blender_instseg
from blender_instseg import blender as fw

out = {}
blender_instseg.register()  # no cv2, no pycocotools in this Python: must not raise
out["registered"] = [c.__name__ for c in fw.registered_classes()]
out["problem"] = fw.DEPENDENCY_PROBLEM
out["ops"] = sorted(n for n in dir(bpy.ops.instseg) if not n.startswith("_"))
blender_instseg.unregister()
out["after"] = [c.__name__ for c in fw.registered_classes()]
print("RESULT " + json.dumps(out))
"""


@pytest.mark.bpy
def test_without_its_bundled_modules_only_the_preferences_register_with_one_line_why(tmp_path: Path) -> None:
    """A Blender whose Python has no bundled wheel (another platform or Python): registering must
    not fail with a traceback; the preferences say why in one line and nothing else registers."""
    r = _run_isolated(tmp_path, NO_WHEELS_SCRIPT, str(ROOT), packages=("bpy", "numpy"))
    assert set(r["registered"]) == {"INSTSEG_OT_check_python", "InstsegPreferences"}
    assert r["ops"] == ["check_python"]
    problem = r["problem"]
    assert problem.startswith("pycocotools does not import in this Blender (Python ") and "\n" not in problem
    assert "3.11 (Blender 4.2-5.0) and 3.13 (Blender 5.1-5.3)" in problem and "docs/extension.md" in problem
    assert r["after"] == []


OTHER_ZIP_SCRIPT = r"""
import json, os, sys
zip_path, mod_name = sys.argv[1], sys.argv[2]
import bpy
out = {}
try:
    out["install"] = sorted(bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True))
except RuntimeError as exc:
    out["install"] = ["RuntimeError"]
    out["error"] = str(exc)
out["enabled"] = mod_name in bpy.context.preferences.addons
repos = [r.module for r in bpy.context.preferences.extensions.repos]
repo_dir = bpy.context.preferences.extensions.repos[repos.index("user_default")].directory
out["installed"] = os.path.isdir(os.path.join(repo_dir, "blender_instseg"))
print("RESULT " + json.dumps(out))
"""


@pytest.mark.bpy
def test_blender_refuses_the_zip_built_for_the_other_series(built_zips: list[Path], built_zip: Path,
                                                            tmp_path: Path) -> None:
    """An artist who picks the wrong zip gets Blender's own refusal (its version range), never a
    registration that fails half-way: nothing is installed or enabled."""
    import bpy

    other = next(z for z in built_zips if z != built_zip)
    target = bx.TARGETS[built_zips.index(other)]
    r = _run_isolated(tmp_path, OTHER_ZIP_SCRIPT, str(other), MODULE, packages=("bpy", "numpy"))
    assert not r["enabled"] and not r["installed"], r
    bound = target.blender_max if bpy.app.version[:2] >= (5, 1) else target.blender_min
    said = [line for line in r["_output"].splitlines() if "This Blender version (" in line]
    assert len(said) == 1 and f"({bound})" in said[0], r["_output"][-2000:]
