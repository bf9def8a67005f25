"""An Asset Folder's categories in the panel, and their per-category settings.

The panel shows one box per category the folder gives (``generator.sources.scan_assets``) and keeps
its settings on the scene (``Scene.instseg.asset_categories``, one item per category name, saved with
the .blend). Items of categories the folder no longer gives are kept, not written: switching back to
an earlier folder finds its settings again. Generate writes the non-default ones as
``objects.per_category`` (``chosen``); Load Config fills them back (``fill``).

The folder's scan is cached per folder until its time stamp changes: the panel redraws often and a
folder of scans is not small.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bpy

from ..generator.sources import scan_assets

# folder -> (its time stamp, its shapes or the one-line reason it cannot be used)
_SCANS: dict[str, tuple[float, dict[str, str] | str]] = {}


def folder_path(folder: str) -> Path:
    """The Asset Folder setting as an absolute path (Blender's ``//`` relative paths resolved)."""
    return Path(bpy.path.abspath(folder.strip()))


def scan(folder: str) -> dict[str, str]:
    """The folder's ``{"file:<path>": category}`` as the generator reads it (cached); ``ValueError``
    (one line) when it is missing or holds no asset file."""
    path = folder_path(folder)
    try:
        stamp = os.stat(path).st_mtime
    except OSError:
        stamp = -1.0
    cached = _SCANS.get(str(path))
    if cached is None or cached[0] != stamp:
        try:
            found: dict[str, str] | str = scan_assets(path)
        except ValueError as exc:
            found = str(exc)
        cached = _SCANS[str(path)] = (stamp, found)
    if isinstance(cached[1], str):
        raise ValueError(cached[1])
    return cached[1]


def folder_categories(folder: str) -> list[str]:
    """The folder's categories, sorted as the generator sorts them; none for an empty setting or a
    folder that cannot be used (the summary says why)."""
    if not folder.strip():
        return []
    try:
        return sorted(set(scan(folder).values()))
    except ValueError:
        return []


def sync(s: Any) -> None:
    """An item (all defaults) for every category of the Asset Folder that has none yet; items of
    other categories stay. Runs when the folder or the source changes, and from the panel's button
    for categories added to the folder since."""
    if s.object_source != "FOLDER":
        return
    for category in folder_categories(s.assets_dir):
        if s.asset_categories.get(category) is None:
            s.asset_categories.add().name = category


def settings_of(item: Any) -> dict[str, Any]:
    """The item's non-default settings in ``objects.per_category`` form (keys of PER_CATEGORY_KEYS)."""
    over: dict[str, Any] = {}
    if item.own_count:
        over["count"] = [int(item.count[0]), int(item.count[1])]
    if item.placement != "DEFAULT":
        over["placement"] = item.placement
    if item.size != "DEFAULT":
        over["real_size"] = item.size == "ON"
    if item.physics != "DEFAULT":
        over["physics"] = item.physics == "ON"
    return over


def chosen(s: Any) -> dict[str, dict[str, Any]]:
    """``objects.per_category`` of the Asset Folder's boxes: the categories the folder gives whose
    settings are not all Default (items of other folders' categories are left out)."""
    if s.object_source != "FOLDER":
        return {}
    out: dict[str, dict[str, Any]] = {}
    for category in folder_categories(s.assets_dir):
        item = s.asset_categories.get(category)
        over = settings_of(item) if item is not None else {}
        if over:
            out[category] = over
    return out


def merged(s: Any, base: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``base`` (a Base Config's ``objects.per_category``) with the folder's categories decided by
    the boxes alone: a box set back to Default must not keep a value of the file (Load Config shows
    the file's values in the boxes)."""
    mine = set(folder_categories(s.assets_dir)) if s.object_source == "FOLDER" else set()
    out = {category: dict(over) for category, over in base.items() if category not in mine}
    out.update(chosen(s))
    return out


def fill(s: Any, per_category: dict[str, dict[str, Any]]) -> None:
    """Load Config: every box of the Asset Folder's categories (and of the categories ``per_category``
    names) from ``per_category``, Default where it says nothing."""
    sync(s)
    names = set(folder_categories(s.assets_dir)) | set(per_category)
    for category in sorted(names):
        item = s.asset_categories.get(category)
        if item is None:
            item = s.asset_categories.add()
            item.name = category
        over = per_category.get(category, {})
        item.own_count = "count" in over
        if "count" in over:
            item.count = (int(over["count"][0]), int(over["count"][1]))
        item.placement = over.get("placement", "DEFAULT")
        item.size = "DEFAULT" if "real_size" not in over else ("ON" if over["real_size"] else "OFF")
        item.physics = "DEFAULT" if "physics" not in over else ("ON" if over["physics"] else "OFF")
