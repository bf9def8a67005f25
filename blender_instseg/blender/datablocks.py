"""Datablocks made once per process and kept across scenes (fake user): the label-render override
material, the masks-only clay world. A factory reset (``builder.reset_blender``) removes them, so
each is looked up again before use and rebuilt when it is gone."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


def kept(cache: list[T], collection: Any) -> T | None:
    """The datablock held in ``cache`` (a one-item list) if it still exists in ``collection``
    (e.g. ``bpy.data.worlds``), else None, with the stale entry dropped."""
    if cache:
        try:
            item: Any = cache[0]
            if item.name in collection:
                return cache[0]
        except ReferenceError:  # removed: its Python object points at freed memory
            pass
        cache.clear()
    return None
