"""Camera and sensor looks ([lens], [sensor]) and glass / alpha-cut materials with the real bpy.

Each look on and off, same seed: the RGB changes where it should (DOF blurs the edges of objects
away from the focus, motion blur smears around moving objects, the sensor changes brightness,
colour balance and noise, JPEG files are written and read by validate, export-yolo and the model's
data loader), while the id maps, depth maps and annotations stay byte for byte the same, with
anti-aliasing on and off. The transparency policies are checked against the geometric footprint
(the amodal mask of a lone object).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.bpy

import bpy  # noqa: E402,F401

from blender_instseg.blender.generate import main as generate  # noqa: E402
from blender_instseg.blender.scene import builder  # noqa: E402
from blender_instseg.core.formats import coco  # noqa: E402
from blender_instseg.core.validation.validate import validate_dataset  # noqa: E402

ARGS = ["--num-images", "2", "--seed", "5", "--resolution", "80", "--samples", "8", "--progress", "none",
        "--no-preview", "--min-objects", "3", "--max-objects", "6"]
LOOKS = {
    "base": {},
    "dof": {"lens": {"dof_probability": 1.0, "fstop": [0.01, 0.01]}},
    "blur": {"lens": {"motion_blur_probability": 1.0, "shutter": [1.0, 1.0], "object_motion": [0.6, 0.6],
                      "camera_motion": [0.0, 0.0]}},
    "sensor": {"sensor": {"noise_probability": 1.0, "noise": [0.1, 0.1], "exposure_probability": 1.0,
                          "exposure": [-1.0, -1.0], "white_balance_probability": 1.0, "white_balance": [0.3, 0.3]}},
    "jpeg": {"sensor": {"jpeg_probability": 0.5, "jpeg_quality": [50, 90]}},
    "all": {"lens": {"dof_probability": 1.0, "motion_blur_probability": 1.0},
            "sensor": {"noise_probability": 1.0, "exposure_probability": 1.0, "white_balance_probability": 1.0,
                       "jpeg_probability": 1.0}},
}


def _generate(root: Path, name: str, config: dict, *extra: str) -> Path:
    cfg = root / f"{name}.json"
    cfg.write_text(json.dumps(config))
    out = root / name
    assert generate(["--out", str(out), *ARGS, "--config", str(cfg), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    builder.reset_blender()
    root = tmp_path_factory.mktemp("looks")
    out = {name: _generate(root, name, cfg) for name, cfg in LOOKS.items()}
    aliased = {"render": {"antialias": False}}
    out["base_aliased"] = _generate(root, "base_aliased", aliased)
    out["all_aliased"] = _generate(root, "all_aliased", {**LOOKS["all"], **aliased})
    return out


def _records(ds: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((ds / "records").glob("*.json"))]


def _rgb(ds: Path, record: dict) -> np.ndarray:
    return cv2.imread(str(ds / record["file_name"]), cv2.IMREAD_COLOR)[..., ::-1].astype(np.float64)


def _ids(ds: Path, record: dict) -> np.ndarray:
    return cv2.imread(str(ds / record["mask_file"]), cv2.IMREAD_UNCHANGED)


def _edge_sharpness(rgb: np.ndarray, ids: np.ndarray, instance: int) -> float:
    grey = rgb.mean(axis=2)
    mag = np.hypot(cv2.Sobel(grey, cv2.CV_64F, 1, 0), cv2.Sobel(grey, cv2.CV_64F, 0, 1))
    edge = cv2.morphologyEx((ids == instance).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    return float(mag[edge].mean())


def test_labels_are_identical_with_every_look_on_or_off_and_every_set_validates(sets: dict[str, Path]) -> None:
    base = _records(sets["base"])
    for name, ds in sets.items():
        report = validate_dataset(ds)
        assert report.ok, (name, report.errors[:3])
        for rec, ref in zip(_records(ds), base):
            for key in ("annotations", "hidden", "seed", "num_objects"):
                assert rec[key] == ref[key], (name, key)
            assert (ds / rec["mask_file"]).read_bytes() == (sets["base"] / ref["mask_file"]).read_bytes(), name
            assert (ds / rec["depth_file"]).read_bytes() == (sets["base"] / ref["depth_file"]).read_bytes(), name
            same_rgb = np.array_equal(_rgb(ds, rec), _rgb(sets["base"], ref))
            # a look shows in the RGB; an image that drew none of them is the plain image, bit for bit
            plain = name == "base" or (name == "jpeg" and rec["file_name"].endswith(".png"))
            assert same_rgb == plain, name


def test_depth_of_field_blurs_the_edges_away_from_the_focus_only(sets: dict[str, Path]) -> None:
    recs, base = _records(sets["dof"]), _records(sets["base"])
    far_ratios = []
    for rec, ref in zip(recs, base):
        focus = rec["scene"]["lens"]["dof"]["focus_instance"]
        assert rec["scene"]["lens"]["dof"]["fstop"] == 0.01
        ids = _ids(sets["base"], ref)
        depth = cv2.imread(str(sets["base"] / ref["depth_file"]), cv2.IMREAD_UNCHANGED)
        z_focus = float(np.median(depth[ids == focus]))
        sharp, blurred = _rgb(sets["base"], ref), _rgb(sets["dof"], rec)
        ratio = {a["instance_id"]: _edge_sharpness(blurred, ids, a["instance_id"])
                 / _edge_sharpness(sharp, ids, a["instance_id"]) for a in ref["annotations"]}
        off_focus = {i: abs(float(np.median(depth[ids == i])) - z_focus) for i in ratio}
        far = max(ratio, key=lambda i: off_focus[i])
        # the focused object keeps its edges better than any object a metre or more off its plane
        assert all(ratio[focus] > ratio[i] for i in ratio if off_focus[i] >= 1.0), (focus, ratio, off_focus)
        far_ratios.append(ratio[far])
    assert min(far_ratios) < 0.6  # the object farthest from the focus plane loses its edges


def test_motion_blur_smears_around_the_moving_objects(sets: dict[str, Path]) -> None:
    for rec, ref in zip(_records(sets["blur"]), _records(sets["base"])):
        assert rec["scene"]["lens"]["motion_blur"]["shutter"] == 1.0
        ids = _ids(sets["base"], ref) > 0
        kernel = np.ones((7, 7), np.uint8)
        ring = (cv2.dilate(ids.astype(np.uint8), kernel) > 0) & ~ids  # just outside the objects (at the centre)
        away = ~(cv2.dilate(ids.astype(np.uint8), np.ones((21, 21), np.uint8)) > 0)
        diff = np.abs(_rgb(sets["blur"], rec) - _rgb(sets["base"], ref)).mean(axis=2)
        assert diff[ring].mean() > 8.0
        assert diff[ring].mean() > 2.0 * diff[away].mean()  # the smear is at the objects, not everywhere


def test_sensor_effects_change_brightness_colour_balance_and_noise(sets: dict[str, Path]) -> None:
    for rec, ref in zip(_records(sets["sensor"]), _records(sets["base"])):
        assert rec["scene"]["sensor"] == {"noise": 0.1, "exposure": -1.0, "white_balance": 0.3}
        look, plain = _rgb(sets["sensor"], rec), _rgb(sets["base"], ref)
        assert look.mean() < plain.mean() - 10  # -1 EV
        red_blue = lambda im: im[..., 0].mean() / max(im[..., 2].mean(), 1.0)  # noqa: E731
        assert red_blue(look) > 1.1 * red_blue(plain)  # warmer
        hf = lambda im: np.abs(cv2.Laplacian(im.mean(axis=2), cv2.CV_64F)).mean()  # noqa: E731
        assert hf(look) > 1.5 * hf(plain)  # grain, although 1 EV darker


def test_jpeg_images_are_written_and_read_by_validate_yolo_and_the_model_loader(
        sets: dict[str, Path], tmp_path: Path, torch_python: str) -> None:
    ds = sets["jpeg"]
    recs = _records(ds)
    names = sorted(p.name for p in (ds / "images").iterdir())
    assert names == sorted(Path(r["file_name"]).name for r in recs)
    assert {Path(n).suffix for n in names} == {".jpg", ".png"}  # probability 0.5: a mixed dataset
    for r in recs:
        data = (ds / r["file_name"]).read_bytes()
        if r["file_name"].endswith(".jpg"):
            assert data[:2] == b"\xff\xd8" and 50 <= r["scene"]["sensor"]["jpeg_quality"] <= 90
        else:
            assert data[:4] == b"\x89PNG" and "sensor" not in r["scene"]
    merged = json.loads((ds / "annotations.json").read_text())
    assert [im["file_name"] for im in merged["images"]] == [r["file_name"] for r in recs]
    assert subprocess.run([sys.executable, "-m", "blender_instseg.core", "export-yolo", str(ds), "--out",
                           str(tmp_path / "yolo")], capture_output=True).returncode == 0
    assert sorted(p.name for p in (tmp_path / "yolo" / "images").rglob("*.*")) == names
    script = ("import sys; from blender_instseg.ml.data import load_coco_source, InstanceDataset\n"
              "src = load_coco_source(sys.argv[1]); ds = InstanceDataset(src, src.category_ids, 64, 0)\n"
              "for i in range(len(ds)):\n"
              "    img, t = ds[(i, 0)]; print(src.records[i].path.suffix, tuple(img.shape), len(t['labels']))\n")
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([torch_python, "-c", script, str(ds / "annotations.json")], capture_output=True,
                          text=True, cwd=repo, timeout=300)
    assert proc.returncode == 0, proc.stderr[-500:]
    lines = proc.stdout.split("\n")[:len(recs)]
    assert [line.split(" ")[0] for line in lines] == [Path(r["file_name"]).suffix for r in recs]
    assert all("(3, 64, 64)" in line for line in lines)


def test_looks_are_deterministic_per_seed_and_exact_without_antialiasing(sets: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    again = _generate(tmp_path, "all", LOOKS["all"])
    files = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(sets["all"]) for p in sets["all"].rglob("*") if p.is_file())
    assert all((again / f).read_bytes() == (sets["all"] / f).read_bytes() for f in files)
    assert all(r["file_name"].endswith(".jpg") and "lens" in r["scene"] for r in _records(again))
    # antialias off: one render would give RGB and labels, but with DOF / blur the labels get their own
    # sharp render, so they are those of the anti-aliased sets
    for rec, ref in zip(_records(sets["all_aliased"]), _records(sets["base_aliased"])):
        assert rec["annotations"] == ref["annotations"]
        assert (sets["all_aliased"] / rec["mask_file"]).read_bytes() == (sets["base"] / ref["mask_file"]).read_bytes()


def test_impossible_ranges_exit_2_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ({"lens": {"fstop": [0.0, 1.0]}}, {"sensor": {"jpeg_quality": [0, 80]}},
                {"lens": {"motion_blur_probability": 1.5}}, {"materials": {"transparency_labels": "some"}},
                {"looks": {"plain_probability": -0.1}}):
        cfg = tmp_path / "bad.json"
        cfg.write_text(json.dumps(bad))
        assert generate(["--out", str(tmp_path / "out"), *ARGS, "--config", str(cfg)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:"), err
        assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------
# transparency: one object alone, so its geometric footprint is its amodal mask


def _lone(tmp_path: Path, name: str, materials: dict, antialias: bool = True) -> list[dict]:
    cfg = {"objects": {"min_count": 1, "max_count": 1, "shapes": {"cube": "cube", "sphere": "sphere"}},
           "materials": materials, "render": {"antialias": antialias}}
    ds = tmp_path / name
    shutil.rmtree(ds, ignore_errors=True)
    (tmp_path / f"{name}.json").write_text(json.dumps(cfg))
    assert generate(["--out", str(ds), "--num-images", "3", "--seed", "2", "--resolution", "64", "--samples", "4",
                     "--progress", "none", "--no-preview", "--config", str(tmp_path / f"{name}.json")]) == 0
    assert validate_dataset(ds).ok
    out = []
    for rec in _records(ds):
        ids = _ids(ds, rec)
        for a in rec["annotations"]:
            visible = coco.decode_segmentation(a["segmentation"], rec["height"], rec["width"]).astype(bool)
            amodal = coco.decode_segmentation(a["amodal_segmentation"], rec["height"], rec["width"]).astype(bool)
            assert np.array_equal(visible, ids == a["instance_id"])
            out.append({"visible": visible, "amodal": amodal, "scene": rec["scene"]})
    return out


def test_transparency_policies_against_the_geometric_footprint(tmp_path: Path) -> None:
    alpha = {"alpha_cut_probability": 1.0}
    footprint = _lone(tmp_path, "fp", {**alpha, "transparency_labels": "footprint"})
    # without anti-aliasing the RGB render would let the rays through the holes: the labels get their own render
    aliased = _lone(tmp_path, "fp_aliased", {**alpha, "transparency_labels": "footprint"}, antialias=False)
    opaque = _lone(tmp_path, "op", {**alpha, "transparency_labels": "opaque"})
    assert len(footprint) == 3 and all(o["scene"]["transparency"] == {"glass": 0, "alpha_cut": 1} for o in footprint)
    for fp, op, al in zip(footprint, opaque, aliased, strict=True):
        assert np.array_equal(fp["visible"], fp["amodal"])
        assert np.array_equal(al["visible"], fp["visible"])  # footprint: every pixel of the geometry
        assert np.array_equal(op["amodal"], fp["amodal"])  # the same object in the same place
        assert not (op["visible"] & ~op["amodal"]).any()
        holes = 1.0 - op["visible"].sum() / op["amodal"].sum()
        assert 0.02 < holes < 0.9  # opaque: the holes are left out (through one, the back face may show)
    # glass refracts, it has no alpha: its footprint under both policies (as measured in Cycles)
    for policy in ("footprint", "opaque"):
        for g in _lone(tmp_path, f"glass_{policy}", {"glass_probability": 1.0, "transparency_labels": policy}):
            assert g["scene"]["transparency"] == {"glass": 1, "alpha_cut": 0}
            assert np.array_equal(g["visible"], g["amodal"])
