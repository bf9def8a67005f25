"""The user's asset folder as the generator's label map: which files are assets, and their categories.

``scripts/generate.py --assets DIR`` reads DIR with this module, before Blender imports anything:
every file Blender can import (``ASSET_FILE_SUFFIXES``) is one asset, i.e. one instance template;
a file in a subfolder belongs to the category named after its first-level subfolder, a file at the
top of DIR to the category named after its stem. So a folder of per-class folders
(``chairs/oak.glb``, ``chairs/pine.glb``, ``mugs/blue.obj``) gives two categories, and a flat folder of
scans gives one category per file. A config whose ``objects.shapes`` already names ``file:`` assets
keeps that mapping (the override for any other grouping).

No bpy here: the scan, its checks and its errors happen before the generator writes anything.
"""

from __future__ import annotations

from pathlib import Path

from ..core.genconfig import ASSET_FILE_SUFFIXES, FILE_PREFIX, GeneratorConfig

# Files that belong to an asset without being one: a .gltf's buffers and textures, Blender's backups.
_SKIP_SUFFIXES = (".bin", ".blend1", ".mtl")


def scan_assets(folder: Path) -> dict[str, str]:
    """``{"file:<path relative to folder>": category}`` for every importable file under ``folder``.

    Raises ``ValueError`` (one line, naming the folder) when it is missing or holds no asset file.
    Hidden files and folders (``.name``) are skipped; the order is sorted, so ids are stable.
    """
    if not folder.is_dir():
        raise ValueError(f"asset folder not found: {folder}")
    shapes: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if not path.name.lower().endswith(ASSET_FILE_SUFFIXES) or path.name.lower().endswith(_SKIP_SUFFIXES):
            continue
        category = rel.parts[0] if len(rel.parts) > 1 else path.stem
        shapes[FILE_PREFIX + rel.as_posix()] = category
    if not shapes:
        raise ValueError(f"asset folder {folder} holds no file Blender can import "
                         f"({', '.join(ASSET_FILE_SUFFIXES)})")
    return shapes


def use_asset_folder(cfg: GeneratorConfig, folder: Path) -> None:
    """Point ``cfg`` at ``folder``: its files become the objects (one category per subfolder or file),
    unless the config already maps ``file:`` assets itself, which then keeps its own label map."""
    cfg.objects.assets_dir = str(folder.resolve())
    if cfg.file_shapes():
        return
    shapes = scan_assets(folder)
    cfg.objects.shapes = shapes
    cfg.categories = sorted(set(shapes.values()))


def use_distractor_folder(cfg: GeneratorConfig, folder: Path) -> None:
    """Every asset file under ``folder`` becomes a distractor shape (categories do not matter);
    with no count set yet, 0..3 distractors per scene."""
    cfg.distractors.assets_dir = str(folder.resolve())
    cfg.distractors.shapes = sorted(scan_assets(folder))
    if cfg.distractors.max_count == 0:
        cfg.distractors.max_count = 3


def check_asset_files(cfg: GeneratorConfig) -> None:
    """Every ``file:`` shape (objects and distractors) exists in its folder; ``ValueError`` naming the
    first missing one."""
    for section, shapes, root in (("objects", cfg.file_shapes(), cfg.objects.assets_dir),
                                  ("distractors", cfg.distractor_file_shapes(), cfg.distractors.assets_dir)):
        for shape in shapes:
            path = Path(root) / shape[len(FILE_PREFIX):]
            if not path.is_file():
                raise ValueError(f"{section}.shapes names {shape!r} but {path} does not exist")


def asset_file(cfg: GeneratorConfig, shape: str) -> Path:
    """The file of a ``file:`` shape key."""
    return Path(cfg.objects.assets_dir) / shape[len(FILE_PREFIX):]
