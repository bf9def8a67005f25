"""core.formats.coco against pycocotools' own per-mask encoding and rasteriser."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from blender_instseg.core.formats import coco
from tests.core.coco_fixtures import awkward_id_map, random_id_map, reference_bbox, reference_rle


def _check_against_reference(id_map: np.ndarray, encodings: list[coco.InstanceEncoding]) -> None:
    present = sorted(int(v) for v in np.unique(id_map) if v > 0)
    assert [e.instance_id for e in encodings] == present
    for e in encodings:
        mask = id_map == e.instance_id
        assert e.rle == reference_rle(mask)
        assert e.area == int(mask.sum())
        assert e.bbox == reference_bbox(mask)


def test_awkward_shapes_rle_area_bbox_match_pycocotools() -> None:
    m = awkward_id_map()
    encodings = coco.encode_id_map(m, polygons=True)
    _check_against_reference(m, encodings)
    by_id = {e.instance_id: e for e in encodings}
    assert by_id[7].bbox == [50.0, 50.0, 1.0, 1.0] and by_id[7].area == 1
    assert by_id[5].bbox == [84.0, 84.0, 12.0, 12.0]  # touches bottom-right corner


def test_polygons_rasterise_back_exactly_for_awkward_shapes() -> None:
    m = awkward_id_map()
    for e in coco.encode_id_map(m, polygons=True):
        mask = m == e.instance_id
        assert e.polygons, e.instance_id
        assert all(len(p) >= 6 and len(p) % 2 == 0 for p in e.polygons)
        back = coco.decode_segmentation(e.polygons, *m.shape).astype(bool)
        assert np.array_equal(back, mask), f"id {e.instance_id}: {np.count_nonzero(back != mask)} pixels differ"
        assert e.dropped_fragments == 0


def test_hole_is_kept_inside_one_polygon_and_island_is_separate() -> None:
    m = awkward_id_map()
    by_id = {e.instance_id: e for e in coco.encode_id_map(m, polygons=True)}
    ring = by_id[1]
    assert len(ring.polygons) == 1  # hole bridged into the outer ring, not a second (filled) polygon
    back = coco.decode_segmentation(ring.polygons, *m.shape)
    assert back[30, 30] == 0 and back[30, 12 + 1] == 1
    assert len(by_id[3].polygons) == 2  # disjoint parts stay separate polygons


def test_hole_as_separate_polygon_would_be_filled() -> None:
    """Why bridging is needed: COCO unions a polygon list, so a hole polygon fills the hole."""
    m = (awkward_id_map() == 1).astype(np.uint8)
    import cv2

    contours, _ = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    naive = [c.reshape(-1).astype(float).tolist() for c in contours]
    filled = coco.decode_segmentation(naive, *m.shape)
    assert filled[30, 30] == 1 and m[30, 30] == 0


def test_random_scenes_polygon_iou_and_rle_exact() -> None:
    rng = np.random.default_rng(7)
    ious = []
    for _ in range(6):
        m = random_id_map(rng, 120, 160, 25)
        m[rng.random(m.shape) < 0.001] = 99  # scattered 1-pixel fragments of one id
        encodings = coco.encode_id_map(m, polygons=True)
        _check_against_reference(m, encodings)
        for e in encodings:
            ious.append(coco.polygons_iou(e.polygons, m == e.instance_id))
    assert min(ious) >= 0.98
    assert np.mean(ious) > 0.999


def test_two_hundred_instances() -> None:
    m = np.zeros((256, 256), np.uint16)
    ids = 0
    for y in range(0, 256, 16):
        for x in range(0, 256, 17):
            ids += 1
            m[y + 1:y + 1 + (ids % 13) + 1, x:x + 15 - ids % 5] = ids
    assert ids >= 200
    encodings = coco.encode_id_map(m, polygons=True)
    assert len(encodings) == ids
    _check_against_reference(m, encodings)
    assert all(coco.polygons_iou(e.polygons, m == e.instance_id) == 1.0 for e in encodings)


def test_empty_map_and_ids_filter() -> None:
    assert coco.encode_id_map(np.zeros((10, 12), np.uint16), polygons=True) == []
    m = awkward_id_map()
    subset = coco.encode_id_map(m, ids=[9, 3, 42])  # 42 is absent: skipped
    assert [e.instance_id for e in subset] == [3, 9]
    _check_against_reference(np.where(np.isin(m, [3, 9]), m, 0), subset)
    assert coco.encode_id_map(m, ids=[]) == []


def test_signed_and_large_ids() -> None:
    m = awkward_id_map().astype(np.int64)
    m[0, 0] = -1  # negative = background
    m[m == 4] = 70000  # id beyond 16 bits
    m[m == 5] = 1 << 40  # beyond the lookup-table range
    encodings = coco.encode_id_map(m, ids=[70000, 1 << 40, 1])
    assert [e.instance_id for e in encodings] == [1, 70000, 1 << 40]
    for e in encodings:
        assert e.rle == reference_rle(m == e.instance_id)


def test_instance_reaching_last_pixel() -> None:
    m = np.zeros((5, 6), np.uint8)
    m[3:, 4:] = 1
    m[0, 0] = 2
    (a, b) = coco.encode_id_map(m)
    assert a.rle == reference_rle(m == 1) and b.rle == reference_rle(m == 2)


def test_bad_id_maps() -> None:
    with pytest.raises(ValueError, match="2-D"):
        coco.encode_id_map(np.zeros((2, 3, 4), np.uint16))
    with pytest.raises(ValueError, match="integers"):
        coco.encode_id_map(np.zeros((4, 4), np.float32))


def test_encode_masks_keeps_positions_and_empty_masks() -> None:
    m = awkward_id_map()
    stack = np.stack([m == 1, np.zeros_like(m, bool), m == 3, m == 7])
    encodings = coco.encode_masks(stack, polygons=True)
    assert [e.instance_id for e in encodings] == [1, 2, 3, 4]
    assert encodings[1].area == 0 and encodings[1].bbox == [0.0, 0.0, 0.0, 0.0] and encodings[1].polygons == []
    for e, mask in zip(encodings, stack):
        assert e.rle == reference_rle(mask)
        assert e.area == int(mask.sum()) and e.bbox == reference_bbox(mask)
        if e.area:
            assert coco.polygons_iou(e.polygons, mask) == 1.0
    assert coco.encode_masks(np.zeros((0, 8, 8), bool)) == []
    with pytest.raises(ValueError):
        coco.encode_masks(np.zeros((8, 8), bool))


def test_decode_every_segmentation_form() -> None:
    m = awkward_id_map() == 1
    rle = reference_rle(m)
    h, w = m.shape
    as_bytes = {"size": rle["size"], "counts": rle["counts"].encode()}
    runs = np.diff(np.concatenate([[0], np.flatnonzero(np.diff(m.T.reshape(-1).astype(np.int8))) + 1, [h * w]]))
    counts = ([0] if m.T.reshape(-1)[0] else []) + runs.tolist()
    uncompressed = {"size": [h, w], "counts": counts}
    polygons, _ = coco.mask_to_polygons(m)
    for seg in (rle, as_bytes, uncompressed, polygons):
        out = coco.decode_segmentation(seg, h, w)
        assert out.dtype == np.uint8 and out.shape == (h, w)
        assert np.array_equal(out.astype(bool), m)
    assert coco.decode_segmentation([], h, w).sum() == 0


@pytest.mark.parametrize("seg, match", [
    ({"size": [10, 10], "counts": "PP0"}, "does not match"),
    ({"counts": "abc"}, "counts' and 'size"),
    ({"size": [64, 64], "counts": [5, 3]}, "sum"),
    ({"size": [64, 64], "counts": [-5, 4101]}, "non-negative"),
    ({"size": [64, 64], "counts": ""}, "cover 0 pixels"),  # pycocotools would return garbage memory
    ({"size": [64, 64], "counts": "1"}, "cover 1 pixels"),
    ({"size": [64, 64], "counts": "P"}, "middle of a number"),
    ({"size": [64, 64], "counts": "\x7f"}, "invalid character"),
    ([[1.0, 2.0, 3.0, 4.0]], ">= 6"),
    ([["a", "b", "c", "d", "e", "f"]], "numbers"),
    ("nonsense", "RLE dict or a polygon list"),
])
def test_decode_rejects_malformed(seg: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        coco.decode_segmentation(seg, 64, 64)  # type: ignore[arg-type]


def test_rle_string_counts_matches_the_runs() -> None:
    m = awkward_id_map()
    for inst in (1, 3, 7, 10):
        mask = m == inst
        flat = mask.T.reshape(-1).astype(np.int8)
        change = np.flatnonzero(np.diff(flat)) + 1
        runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
        if flat[0]:
            runs = [0] + runs
        assert coco.rle_string_counts(reference_rle(mask)["counts"].encode()) == runs


def test_mask_to_polygons_and_bbox_of_empty_mask() -> None:
    assert coco.mask_to_polygons(np.zeros((5, 5), bool)) == ([], 0)
    assert coco.bbox_of_mask(np.zeros((5, 5), bool)) == [0.0, 0.0, 0.0, 0.0]
    one = np.zeros((5, 5), bool)
    one[4, 4] = True  # corner pixel
    polys, dropped = coco.mask_to_polygons(one)
    assert dropped == 0 and len(polys) == 1
    assert np.array_equal(coco.decode_segmentation(polys, 5, 5).astype(bool), one)
    # pycocotools' own bbox of the polygon lies inside the pixel
    x, y, bw, bh = mask_utils.toBbox(mask_utils.frPyObjects(polys, 5, 5))[0]
    assert 4 <= x and x + bw <= 5 and 4 <= y and y + bh <= 5
