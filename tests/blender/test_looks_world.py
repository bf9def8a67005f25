"""Looks with the real bpy: HDRI worlds, photo backplates with shadows, image textures, the asset jitter.

Every medium is made here with numpy/OpenCV (equirect EXR/HDR, photo-like PNGs, texture sets in
Poly Haven and ambientCG naming, an OBJ with its own material). What must hold: each look changes
the images where expected and never the labels (id maps, depth, records' annotations), a photo
shows outside the objects and darkens under their shadows, runs are deterministic and valid, and
bad folders are refused in one line before anything is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
import cv2  # noqa: E402

from blender_instseg.blender.generate import main as generate  # noqa: E402
from blender_instseg.blender.render import output  # noqa: E402
from blender_instseg.blender.scene import builder  # noqa: E402
from blender_instseg.core.genconfig import GeneratorConfig  # noqa: E402
from blender_instseg.core.validation.validate import validate_dataset  # noqa: E402

PHOTO_BGR = (60, 170, 90)  # the backplate's colour (OpenCV order): a green no object or ground has
BASE = ["--num-images", "2", "--seed", "5", "--resolution", "64", "--samples", "2", "--min-objects", "3",
        "--max-objects", "6", "--progress", "none", "--no-preview"]
LOOK_KEYS = ("hdri", "backplate", "textures", "jittered")


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


@pytest.fixture(scope="module", autouse=True)
def fresh_blender():
    builder.reset_blender()
    yield


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """HDRIs, photos, texture sets, an asset with its own material and a steep-camera config."""
    root = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    v = np.linspace(0.0, 1.0, 32, dtype=np.float32)[:, None, None]
    sky = (np.array([0.3, 0.6, 0.9], np.float32) * (1 - v) + np.array([0.4, 0.2, 0.1], np.float32) * v)
    sky = np.repeat(sky, 64, axis=1)
    sky[4:8, 10:14] = 30.0  # a sun
    _write(root / "hdri" / "noon.exr", sky)
    _write(root / "hdri" / "dusk.hdr", sky[::-1] * 0.5)
    for i in range(2):  # a flat colour with a little grain: photo-like, and easy to recognise in the render
        photo = np.full((90, 120, 3), PHOTO_BGR, np.uint8)
        _write(root / "photos" / f"table_{i}.png", photo)
    colour = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    _write(root / "tex" / "wood" / "wood_diff_1k.png", colour)
    _write(root / "tex" / "wood" / "wood_rough_1k.png", colour[..., 0])
    _write(root / "tex" / "wood" / "wood_nor_gl_1k.png", np.full((32, 32, 3), (255, 128, 128), np.uint8))
    _write(root / "tex" / "Bricks001" / "Bricks001_1K-JPG_Color.jpg", colour[::-1])
    (root / "assets").mkdir()
    (root / "assets" / "box.mtl").write_text("newmtl red\nKd 0.8 0.1 0.1\n")
    corners = [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    faces = [(1, 2, 4, 3), (5, 7, 8, 6), (1, 5, 6, 2), (3, 4, 8, 7), (1, 3, 7, 5), (2, 6, 8, 4)]
    (root / "assets" / "box.obj").write_text(
        "mtllib box.mtl\n" + "".join(f"v {x} {y} {z}\n" for x, y, z in corners) + "usemtl red\n"
        + "".join(f"f {a} {b} {c} {d}\n" for a, b, c, d in faces))
    # a camera that looks down steeply enough for a photo on every image (the same for every run)
    (root / "steep.json").write_text(json.dumps({"camera": {"elevation": [55.0, 75.0]},
                                                 "distractors": {"shapes": ["cube"], "max_count": 2}}))
    (root / "zero.json").write_text(json.dumps({
        "camera": {"elevation": [55.0, 75.0]}, "distractors": {"shapes": ["cube"], "max_count": 2},
        "world": {"hdri_probability": 0.0}, "backplate": {"probability": 0.0},
        "textures": {"ground_probability": 0.0, "object_probability": 0.0, "distractor_probability": 0.0}}))
    return root


@pytest.fixture(scope="module")
def runs(media: Path, tmp_path_factory) -> dict[str, Path]:
    """The same seed and scene recipe with no look, each look alone, all of them (twice), and all
    of them switched off by their probabilities."""
    root = tmp_path_factory.mktemp("runs")
    hdri = ["--hdri", str(media / "hdri")]
    plate = ["--backgrounds", str(media / "photos")]
    tex = ["--textures", str(media / "tex")]
    flags = {"off": [], "hdri": hdri, "backplate": plate, "textures": tex, "all": hdri + plate + tex,
             "all_again": hdri + plate + tex}
    out = {}
    for name, extra in flags.items():
        out[name] = root / name
        assert generate(["--out", str(out[name]), *BASE, "--config", str(media / "steep.json"), *extra]) == 0
    out["zero"] = root / "zero"
    assert generate(["--out", str(out["zero"]), *BASE, "--config", str(media / "zero.json"), *hdri, *plate, *tex]) == 0
    return out


def _records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "records").glob("*.json"))]


@pytest.mark.parametrize("look", ["hdri", "backplate", "textures", "all"])
def test_looks_change_the_images_never_the_labels(runs: dict[str, Path], look: str) -> None:
    off, on = tree(runs["off"]), tree(runs[look])
    for i in range(2):
        assert on[f"masks/{i:06d}.png"] == off[f"masks/{i:06d}.png"]
        assert on[f"depth/{i:06d}.exr"] == off[f"depth/{i:06d}.exr"]
        assert on[f"images/{i:06d}.png"] != off[f"images/{i:06d}.png"]
    assert on["annotations.json"] == off["annotations.json"]
    for rec_off, rec_on in zip(_records(runs["off"]), _records(runs[look])):
        assert rec_on["annotations"] == rec_off["annotations"] and rec_on["hidden"] == rec_off["hidden"]
        used = {k for k in LOOK_KEYS if k in rec_on["scene"]}
        assert used == ({"hdri", "backplate", "textures"} if look == "all" else {look})
        assert {k: v for k, v in rec_on["scene"].items() if k not in LOOK_KEYS} == rec_off["scene"]


def test_looks_are_deterministic_and_valid(runs: dict[str, Path]) -> None:
    assert tree(runs["all"]) == tree(runs["all_again"])
    report = validate_dataset(runs["all"])
    assert report.ok, report.errors[:3]


def test_looks_at_probability_zero_render_what_no_looks_render(runs: dict[str, Path]) -> None:
    """The folders alone change nothing: the looks' draws come from streams no other draw uses."""
    off, zero = tree(runs["off"]), tree(runs["zero"])
    assert off.pop("config.json") != zero.pop("config.json")
    assert off == zero


def test_plain_images_render_what_no_looks_render_and_the_others_every_look(media: Path, runs: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    """looks.plain_probability: with the chance between the two images' own draws, one image is plain
    (pixel for pixel the run without look folders, sensor noise included: none) and the other gets
    every look as if plain images did not exist; the labels never change."""
    from blender_instseg.core import plan

    draws = [float(builder.make_rngs(plan.image_seed(5, i))["looks"].uniform()) for i in range(2)]
    assert abs(draws[0] - draws[1]) > 0.01  # (the seed gives two different draws to split)
    steep = json.loads((media / "steep.json").read_text())
    noisy = {**steep, "sensor": {"noise_probability": 1.0}}
    (tmp_path / "noisy.json").write_text(json.dumps(noisy))
    (tmp_path / "mix.json").write_text(json.dumps({**noisy, "looks": {"plain_probability": sum(draws) / 2}}))
    folders = ["--hdri", str(media / "hdri"), "--backgrounds", str(media / "photos"), "--textures", str(media / "tex")]
    for name in ("noisy", "mix"):
        assert generate(["--out", str(tmp_path / name), *BASE, "--config", str(tmp_path / f"{name}.json"), *folders]) == 0
    off, every, mix = tree(runs["off"]), tree(tmp_path / "noisy"), tree(tmp_path / "mix")
    records = _records(tmp_path / "mix")
    plain = [bool(r["scene"].get("plain_look")) for r in records]
    assert sorted(plain) == [False, True] and plain == [d < sum(draws) / 2 for d in draws]
    for i, is_plain in enumerate(plain):
        expected = off if is_plain else every
        for part in ("images", "masks", "depth"):
            suffix = "png" if part != "depth" else "exr"
            assert mix[f"{part}/{i:06d}.{suffix}"] == expected[f"{part}/{i:06d}.{suffix}"], (part, i, is_plain)
        assert ("sensor" in records[i]["scene"]) is not is_plain
        assert not is_plain or not any(k in records[i]["scene"] for k in LOOK_KEYS)
    assert mix["annotations.json"] == off["annotations.json"]
    assert validate_dataset(tmp_path / "mix").ok


def test_backplate_shows_the_photo_outside_the_objects_and_the_shadows_darken_it(media: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "sun.json"
    cfg.write_text(json.dumps({
        "camera": {"elevation": [60.0, 70.0]},
        "lights": {"min_count": 1, "max_count": 1, "types": ["SUN"], "sun_strength": [3.0, 3.0]},
        "world": {"strength": [0.05, 0.05]}}))
    common = ["--num-images", "1", "--seed", "2", "--resolution", "96", "--samples", "8", "--min-objects", "2",
              "--max-objects", "2", "--progress", "none", "--no-preview", "--config", str(cfg)]
    assert generate(["--out", str(tmp_path / "plate"), *common, "--backgrounds", str(media / "photos")]) == 0
    rgb = output.read_rgb(tmp_path / "plate" / "images" / "000000.png").astype(np.int32)
    ids = output.read_id_map(tmp_path / "plate" / "masks" / "000000.png")
    photo = np.array(PHOTO_BGR[::-1], np.int32)
    background = ids == 0
    assert (ids > 0).any() and background.mean() > 0.3
    is_photo = np.abs(rgb - photo).max(axis=2) <= 3
    assert is_photo[background].mean() > 0.5  # most of the frame outside the objects is the photo itself
    assert not is_photo[ids > 0].all()  # the objects are not the photo
    # shadows: photo pixels away from every object's outline (no anti-aliased edge), darker, still green
    away = cv2.dilate((ids > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
    darker = rgb.sum(axis=2) < 0.75 * photo.sum()
    green = (rgb[..., 1] >= rgb[..., 0]) & (rgb[..., 1] >= rgb[..., 2])
    assert (away & darker & green).sum() >= 10
    record = json.loads((tmp_path / "plate" / "records" / "000000.json").read_text())
    assert record["scene"]["backplate"] in ("table_0.png", "table_1.png")


def test_hdri_world_and_textures_are_built_from_the_files_once(media: Path) -> None:
    cfg = GeneratorConfig()
    cfg.world.hdri_dir = str(media / "hdri")
    cfg.world.hdri_strength = [0.7, 0.9]
    cfg.textures.textures_dir = str(media / "tex")
    cfg.textures.object_probability = 1.0
    cfg.distractors.shapes, cfg.distractors.max_count, cfg.distractors.min_count = ["cube"], 2, 1
    cfg.validate()
    for seed in (1, 2):
        built = builder.build_scene(cfg, seed)
        nodes = {n.type: n for n in bpy.context.scene.world.node_tree.nodes}
        assert Path(nodes["TEX_ENVIRONMENT"].image.filepath).name == built.params["hdri"]
        assert 0.7 <= nodes["BACKGROUND"].inputs["Strength"].default_value <= 0.9
        ground = bpy.data.objects["ground"]
        ground_types = {n.type for n in ground.material_slots[0].material.node_tree.nodes}
        # the wood set has an OpenGL normal map, the bricks set none
        assert ground_types >= ({"TEX_IMAGE", "NORMAL_MAP"} if built.params["textures"][0] == "wood/wood_1k"
                                else {"TEX_IMAGE"})
        assert len(ground.data.uv_layers) == 1  # in metres, for the normal map's tangents
        for obj in [o.obj for o in built.objects] + [o for o in bpy.data.objects if o.get("instseg_distractor")]:
            tex = [n for n in obj.material_slots[0].material.node_tree.nodes if n.type == "TEX_IMAGE"]
            assert tex and all(n.projection == "BOX" for n in tex)
        assert len(built.params["textures"]) == 1 + len(built.objects) + sum(
            1 for o in bpy.data.objects if o.get("instseg_distractor"))
    # each file is one Blender image, however many scenes and materials use it
    paths = [bpy.path.abspath(im.filepath) for im in bpy.data.images if im.filepath]
    assert len(paths) == len(set(paths))
    rough = next(im for im in bpy.data.images if "rough" in im.filepath)
    assert rough.colorspace_settings.name == "Non-Color"


def test_assets_keep_their_materials_with_only_a_jitter(media: Path, tmp_path: Path) -> None:
    jitter = tmp_path / "jitter.json"
    jitter.write_text(json.dumps({"textures": {"asset_hue_jitter": 0.2, "asset_value_jitter": 0.3,
                                               "asset_roughness_jitter": 0.2, "object_probability": 1.0}}))
    common = [*BASE, "--assets", str(media / "assets"), "--textures", str(media / "tex")]
    assert generate(["--out", str(tmp_path / "kept"), *common]) == 0
    assert generate(["--out", str(tmp_path / "jit"), *common, "--config", str(jitter)]) == 0
    kept, jit = tree(tmp_path / "kept"), tree(tmp_path / "jit")
    for i in range(2):
        assert kept[f"masks/{i:06d}.png"] == jit[f"masks/{i:06d}.png"]
        assert kept[f"images/{i:06d}.png"] != jit[f"images/{i:06d}.png"]
    for rec in _records(tmp_path / "jit"):
        assert rec["scene"]["jittered"] == rec["num_objects"]
        assert rec["scene"]["textures"] and len(rec["scene"]["textures"]) == 1  # the ground only: assets keep theirs
    cfg = GeneratorConfig.from_dict(json.loads((tmp_path / "jit" / "config.json").read_text())["generator"])
    built = builder.build_scene(cfg, 3)
    obj = built.objects[0].obj
    slot = obj.material_slots[0]
    assert slot.link == "OBJECT" and "_jit_" in slot.material.name
    assert any(n.type == "HUE_SAT" for n in slot.material.node_tree.nodes)
    own = obj.data.materials[0]
    assert own.name.startswith("red") and not any(n.type == "HUE_SAT" for n in own.node_tree.nodes)


def _bad_media(media: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    empty = tmp / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    corrupt = tmp / "corrupt"
    corrupt.mkdir()
    (corrupt / "a.png").write_bytes((media / "photos" / "table_0.png").read_bytes())
    (corrupt / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    no_colour = tmp / "nocolour"
    _write(no_colour / "stone_rough_1k.png", np.zeros((4, 4), np.uint8))
    ranges = tmp / "ranges.json"
    ranges.write_text(json.dumps({"world": {"hdri_strength": [2.0, 1.0]}}))
    return {
        "empty hdri folder": (["--hdri", str(empty)], "holds no HDRI image"),
        "missing folder": (["--backgrounds", str(tmp / "nowhere")], "folder not found"),
        "corrupt photo": (["--backgrounds", str(corrupt)], "cannot read image"),
        "set without colour": (["--textures", str(no_colour)], "has no colour map"),
        "impossible range": (["--hdri", str(media / "hdri"), "--config", str(ranges)], "world.hdri_strength: low"),
    }


def test_bad_look_inputs_exit_2_in_one_line_and_write_nothing(media: Path, tmp_path: Path, capsys) -> None:
    for name, (extra, fragment) in _bad_media(media, tmp_path).items():
        out = tmp_path / "never"
        rc = generate(["--out", str(out), *BASE, *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, name
        assert len(err) == 1 and err[0].startswith("error:") and fragment in err[0], (name, err)
        assert not out.exists(), name


def test_a_file_failing_mid_run_is_named(media: Path, tmp_path: Path) -> None:
    """A file that went bad after the checks (here: never checked) stops the image with its name."""
    tex = tmp_path / "tex"
    (tex).mkdir()
    (tex / "slate_diff.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cfg = GeneratorConfig()
    cfg.textures.textures_dir = str(tex)
    with pytest.raises(RuntimeError, match=r"cannot load image .*slate_diff\.png"):
        builder.build_scene(cfg.validate(), 1)
    hdri = tmp_path / "hdri"
    hdri.mkdir()
    (hdri / "sky.exr").write_bytes(b"v/1\x01 broken")
    cfg = GeneratorConfig()
    cfg.world.hdri_dir = str(hdri)
    with pytest.raises(RuntimeError, match=r"cannot load image .*sky\.exr"):
        builder.build_scene(cfg.validate(), 1)


def test_datasets_from_before_the_looks_resume(media: Path, runs: dict[str, Path], tmp_path: Path) -> None:
    """A config.json written before these settings existed reads as having them off: the resume is
    accepted and renders nothing new; asking for a look on that dataset is refused."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(runs["off"], old)
    conf = json.loads((old / "config.json").read_text())
    gen = conf["generator"]
    for key in ("hdri_dir", "hdri_probability", "hdri_strength", "hdri_rotation"):
        del gen["world"][key]
    del gen["backplate"], gen["textures"]
    (old / "config.json").write_text(json.dumps(conf))
    images = {k: v for k, v in tree(old).items() if not k.startswith("annotations")}
    assert generate(["--out", str(old), *BASE, "--config", str(media / "steep.json")]) == 0
    assert {k: v for k, v in tree(old).items() if not k.startswith("annotations")} == images
    assert generate(["--out", str(old), *BASE, "--config", str(media / "steep.json"), "--hdri", str(media / "hdri")]) == 2
