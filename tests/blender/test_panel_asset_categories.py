"""An Asset Folder's per-category settings in the panel (Objects & Source), through to the generator.

The asset folder is written by the test in a child bpy process through Blender's own exporters (a
1 m pole as OBJ in ``poles/``, a ball as PLY at the top): categories ``ball`` and ``poles``. The
checks: Generate's config holds exactly the non-default boxes as ``objects.per_category`` (a
category the folder does not give is not written), a bad count is refused in one line before
anything is written, the boxes survive a .blend save and reload and a Save / Load Config round
trip, and a dataset generated from the panel has two upright poles per image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

MAKE_ASSETS = r"""
import sys
from pathlib import Path
import bpy

out = Path(sys.argv[1])
(out / "poles").mkdir(parents=True, exist_ok=True)
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.mesh.primitive_cylinder_add(radius=0.1, depth=1.0, vertices=12)  # a pole: tall along +z
bpy.ops.wm.obj_export(filepath=str(out / "poles" / "pole.obj"), export_materials=False)
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.mesh.primitive_ico_sphere_add(radius=0.3, subdivisions=2)
bpy.ops.wm.ply_export(filepath=str(out / "ball.ply"))
"""

# a child bpy: the scenes of a generated dataset built again from its config.json and each record's
# seed (the generator's own builder, masks-only as rendered): per object its name, shape and up axis
REBUILD = r"""
import json, sys
from pathlib import Path
from blender_instseg.blender.scene import builder
from blender_instseg.core.formats import dataset
from blender_instseg.core.genconfig import GeneratorConfig

root = Path(sys.argv[1])
cfg = GeneratorConfig.from_dict(dataset.read_dataset_config(root)["generator"]).validate()
builder.reset_blender()
out = {}
for path in sorted((root / "records").glob("*.json")):
    record = json.loads(path.read_text())
    built = builder.build_scene(cfg, record["seed"], build_appearance=False)
    out[record["index"]] = [{"name": so.obj.name, "shape": so.shape,
                             "up": list(so.obj.matrix_world.to_3x3().normalized().col[2])} for so in built.objects]
print(json.dumps(out))
"""

READ_BACK = r"""
import json, sys
import bpy, addon_utils
assert addon_utils.enable("blender_instseg", default_set=True) is not None
bpy.ops.wm.open_mainfile(filepath=sys.argv[1], load_ui=False)
s = bpy.context.scene.instseg
print(json.dumps({i.name: [i.own_count, list(i.count), i.placement, i.size, i.physics] for i in s.asset_categories}))
"""


def _child(script: str, *args: str, home: Path) -> str:
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(home / ".blender-user"))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def assets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("panel_assets") / "assets"
    _child(MAKE_ASSETS, str(out), home=out.parent)
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["ball.ply", "pole.obj"]
    return out


@pytest.fixture()
def panel(addon, assets_dir: Path, tmp_path: Path):
    from blender_instseg.blender import config_props

    s = bpy.context.scene.instseg
    config_props.reset(s.generator)
    s.config_file, s.distractors_dir, s.placement, s.real_size = "", "", "free", False
    s.num_images, s.seed, s.resolution, s.resolution_height = 2, 3, 32, 0
    s.min_objects, s.max_objects, s.masks_only, s.val_fraction = 1, 1, True, 0.0
    s.asset_categories.clear()
    s.object_source, s.assets_dir = "FOLDER", str(assets_dir)
    s.dataset_dir = str(tmp_path / "ds")
    bpy.context.preferences.addons["blender_instseg"].preferences.output_dir = str(tmp_path / "out")
    yield s
    s.object_source, s.assets_dir, s.config_file = "BUILTIN", "", ""
    s.asset_categories.clear()
    s.masks_only, s.val_fraction = False, 0.1
    state = bpy.context.window_manager.instseg_job
    state.last_error = state.summary = state.kind = ""


def _set_poles(s: Any, count: tuple[int, int] = (2, 2)) -> None:
    poles = s.asset_categories["poles"]
    poles.own_count, poles.count, poles.placement = True, count, "upright"


def test_generate_writes_exactly_the_boxes_set_and_refuses_a_bad_count_in_one_line(panel, assets_dir: Path) -> None:
    from blender_instseg.blender.ops.dataset import config_overrides, config_path, generate_args, panel_config
    from blender_instseg.core.genconfig import load_config

    s = panel
    assert sorted(item.name for item in s.asset_categories) == ["ball", "poles"]
    assert config_overrides(bpy.context) == {}  # every box at Default: nothing to write, --assets alone
    _set_poles(s)
    s.asset_categories["ball"].size, s.asset_categories["ball"].physics = "OFF", "ON"
    gone = s.asset_categories.add()  # the box of a category of another folder: kept, never written
    gone.name, gone.placement = "chairs", "upright"
    data = config_overrides(bpy.context)
    assert data["objects"]["per_category"] == {"poles": {"count": [2, 2], "placement": "upright"},
                                               "ball": {"real_size": False, "physics": True}}
    # a config is checked on its own when the generator loads it: it names the folder's categories
    assert data["categories"] == ["ball", "poles"] and data["objects"]["assets_dir"] == str(assets_dir)
    assert panel_config(bpy.context).objects.per_category == data["objects"]["per_category"]
    args = generate_args(bpy.context)
    assert args[args.index("--config") + 1] == str(config_path())
    config_path().write_text(json.dumps(data))
    assert load_config(config_path()).objects.per_category == data["objects"]["per_category"]
    config_path().unlink()
    from blender_instseg.blender.ops.preview import preview_args  # Preview Labels: Generate's own config

    _args, preview_data = preview_args(bpy.context, 0, config_path())
    assert preview_data["objects"]["per_category"] == data["objects"]["per_category"]
    # back to Default: the category is not written any more
    s.asset_categories["ball"].size = s.asset_categories["ball"].physics = "DEFAULT"
    assert list(config_overrides(bpy.context)["objects"]["per_category"]) == ["poles"]
    # low > high: refused in the panel's words, one line, nothing written
    s.asset_categories["poles"].count = (3, 1)
    with pytest.raises(ValueError, match=r"Objects & Source > poles > Count must be \[low, high\]") as info:
        generate_args(bpy.context)
    assert "\n" not in str(info.value) and "per_category" not in str(info.value)
    with pytest.raises(RuntimeError):
        bpy.ops.instseg.generate_dataset()
    assert "Objects & Source > poles > Count" in bpy.context.window_manager.instseg_job.last_error
    assert not Path(s.dataset_dir).exists()


def test_the_boxes_survive_a_blend_save_and_reload(panel, tmp_path: Path) -> None:
    s = panel
    _set_poles(s, (1, 4))
    s.asset_categories["ball"].physics = "OFF"
    saved = tmp_path / "project.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(saved), copy=True, check_existing=False)
    read = json.loads(_child(READ_BACK, str(saved), home=tmp_path))
    assert read == {"ball": [False, [1, 3], "DEFAULT", "DEFAULT", "OFF"],
                    "poles": [True, [1, 4], "upright", "DEFAULT", "DEFAULT"]}


def test_save_and_load_config_round_trip_the_boxes(panel, tmp_path: Path) -> None:
    s = panel
    _set_poles(s, (2, 3))
    s.asset_categories["ball"].size = "ON"
    saved = tmp_path / "mine.toml"
    assert bpy.ops.instseg.save_config(filepath=str(saved)) == {"FINISHED"}
    for item in s.asset_categories:  # everything back to Default, another source chosen
        item.own_count, item.placement, item.size, item.physics = False, "DEFAULT", "DEFAULT", "DEFAULT"
    s.object_source, s.assets_dir = "BUILTIN", ""
    assert bpy.ops.instseg.load_config(filepath=str(saved)) == {"FINISHED"}
    assert s.object_source == "FOLDER" and s.config_file == str(saved)
    poles, ball = s.asset_categories["poles"], s.asset_categories["ball"]
    assert (poles.own_count, tuple(poles.count), poles.placement, poles.size) == (True, (2, 3), "upright", "DEFAULT")
    assert (ball.own_count, ball.placement, ball.size, ball.physics) == (False, "DEFAULT", "ON", "DEFAULT")
    # the boxes decide the folder's categories, not the Base Config: a box set back to Default counts
    ball.size = "DEFAULT"
    from blender_instseg.blender.ops.dataset import config_overrides

    assert config_overrides(bpy.context)["objects"]["per_category"] == {"poles": {"count": [2, 3],
                                                                                  "placement": "upright"}}


def test_generate_from_the_panel_gives_two_upright_poles_per_image(panel, tmp_path: Path) -> None:
    s = panel
    _set_poles(s)
    assert bpy.ops.instseg.generate_dataset() == {"FINISHED"}
    state = bpy.context.window_manager.instseg_job
    assert state.last_error == "" and state.summary == f"dataset: 2 images in {tmp_path / 'ds'}"
    out = tmp_path / "ds"
    generator = json.loads((out / "config.json").read_text())["generator"]
    assert generator["objects"]["per_category"] == {"poles": {"count": [2, 2], "placement": "upright"}}
    rebuilt = json.loads(_child(REBUILD, str(out), home=tmp_path))
    assert len(rebuilt) == 2
    for index, objects in rebuilt.items():
        record = json.loads((out / "records" / f"{int(index):06d}.json").read_text())
        recorded = sorted(a["object_name"] for a in [*record["annotations"], *record["hidden"]])
        assert recorded == sorted(o["name"] for o in objects)  # the rebuilt scene is the rendered one
        poles = [o for o in objects if o["shape"] == "file:poles/pole.obj"]
        assert len(poles) == 2
        for pole in poles:  # turned about the vertical axis only: the up axis stays +z
            assert pole["up"] == pytest.approx([0.0, 0.0, 1.0], abs=1e-6)
        assert len(objects) == 3  # and Min/Max Objects 1 for the other categories
