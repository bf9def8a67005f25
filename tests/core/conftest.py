"""Fixtures shared by the evaluation tests (test_metrics, test_eval_inputs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.shapes import make_shapes_dataset


@pytest.fixture()
def shapes(tmp_path: Path) -> tuple[Path, dict]:
    """A 12-image drawn dataset (96 px): its COCO file and the loaded dict."""
    path = make_shapes_dataset(tmp_path / "shapes", n_images=12, size=96, seed=1)
    return path, json.loads(path.read_text())
