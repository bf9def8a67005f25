"""The user's images (HDRIs, texture maps) as Blender images: loaded once per process per file.

``bpy.data.images.load(check_existing=True)`` reuses a loaded file; the table here also survives
scene clears (images are never removed between images) and notices a factory reset.
"""

from __future__ import annotations

from pathlib import Path

import bpy

_LOADED: dict[str, str] = {}  # absolute path -> Blender image name


def load(path: Path, *, non_color: bool = False) -> bpy.types.Image:
    """The Blender image of ``path``; ``non_color`` for data maps (roughness, normals).

    ``RuntimeError`` naming the file when Blender cannot read it (a file that went bad after the checks).
    """
    key = str(path)
    name = _LOADED.get(key)
    image = bpy.data.images.get(name) if name is not None else None
    if image is not None and bpy.path.abspath(image.filepath) == key:
        return image
    try:
        image = bpy.data.images.load(key, check_existing=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "unreadable"
        raise RuntimeError(f"cannot load image {path} ({first})") from None
    if image.size[0] == 0 or image.size[1] == 0:  # reading the size decodes the file
        bpy.data.images.remove(image)
        raise RuntimeError(f"cannot load image {path} (corrupt or not an image)")
    if non_color:
        image.colorspace_settings.name = "Non-Color"
    _LOADED[key] = image.name
    return image
