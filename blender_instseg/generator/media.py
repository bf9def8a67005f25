"""The user's look folders: which files are HDRIs, photos and texture sets, and whether they can be read.

``scripts/generate.py --hdri DIR``, ``--backgrounds DIR`` and ``--textures DIR`` (config
``world.hdri_dir``, ``backplate.photos_dir``, ``textures.textures_dir``) name folders of the user's
own files. This module lists them (sorted, hidden files and folders skipped, any depth), groups
texture maps into sets by the naming of the two common sources, and decodes every file once with
OpenCV before the generator writes anything, so a folder with no usable image, a corrupt file or a
set without a colour map is refused in one line. No bpy here: the Blender side reads the same
lists (``hdri_files``, ``photo_files``, ``texture_sets``) while rendering.

Texture sets: Poly Haven names its maps ``<name>_diff_2k.jpg``, ``<name>_rough_2k.jpg``,
``<name>_nor_gl_2k.exr``; ambientCG ``<Name>_1K-JPG_Color.jpg``, ``..._Roughness.jpg``,
``..._NormalGL.jpg``. A map's role is the token that names it; the file name without that token
(in its folder) is its set. Files with no known role (displacement, AO, packed ARM, DirectX normals,
previews) are not used.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..core.genconfig import GeneratorConfig

# (config section, key) of the three folders, in the order of the --hdri, --backgrounds, --textures flags
LOOK_FOLDERS = (("world", "hdri_dir"), ("backplate", "photos_dir"), ("textures", "textures_dir"))
HDRI_SUFFIXES = (".hdr", ".exr", ".png", ".jpg", ".jpeg")
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
TEXTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".exr", ".tif", ".tiff")

# role -> the name tokens that mark it (compared lower-case, between separators or at the ends)
_ROLE_TOKENS = {
    "colour": ("diff", "diffuse", "color", "colour", "albedo", "basecolor", "base_color", "col"),
    "roughness": ("rough", "roughness"),
    "normal": ("nor_gl", "normalgl", "normal_gl", "nrm_gl"),
}
_SEPARATORS = "_-. "


@dataclass(frozen=True)
class TextureSet:
    """One material's maps, as paths relative to the textures folder (roughness / normal may be "")."""

    name: str
    colour: str
    roughness: str = ""
    normal: str = ""


def list_images(folder: Path, suffixes: tuple[str, ...]) -> list[str]:
    """Files under ``folder`` with one of ``suffixes`` (any case), relative posix paths, sorted.

    Hidden files and folders (``.name``) are skipped. ``ValueError`` when the folder is missing.
    """
    if not folder.is_dir():
        raise ValueError(f"folder not found: {folder}")
    found = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if path.name.lower().endswith(suffixes):
            found.append(rel.as_posix())
    return found


@functools.lru_cache(maxsize=16)
def hdri_files(folder: str) -> tuple[str, ...]:
    """The environment images under ``folder`` (relative paths, sorted); cached per process."""
    return tuple(list_images(Path(folder), HDRI_SUFFIXES))


@functools.lru_cache(maxsize=16)
def photo_files(folder: str) -> tuple[str, ...]:
    """The backplate photographs under ``folder`` (relative paths, sorted); cached per process."""
    return tuple(list_images(Path(folder), PHOTO_SUFFIXES))


def map_role(stem: str) -> tuple[str, str] | None:
    """(role, the stem without its role token) for a texture map's file stem, or None when no known token names it.

    The last matching token wins, so ``wood_color_diff`` is a colour map of set ``wood_color``.
    """
    low = stem.lower()
    best: tuple[int, int, str] | None = None  # (start, end, role)
    for role, tokens in _ROLE_TOKENS.items():
        for token in tokens:
            for m in re.finditer(re.escape(token), low):
                start, end = m.start(), m.end()
                if (start == 0 or low[start - 1] in _SEPARATORS) and (end == len(low) or low[end] in _SEPARATORS):
                    if best is None or start > best[0] or (start == best[0] and end > best[1]):
                        best = (start, end, role)
    if best is None:
        return None
    start, end, role = best
    rest = (stem[:start].rstrip(_SEPARATORS) + ("_" if start > 0 and end < len(stem) else "")
            + stem[end:].lstrip(_SEPARATORS))
    return role, rest


@functools.lru_cache(maxsize=16)
def texture_sets(folder: str) -> tuple[TextureSet, ...]:
    """The texture sets under ``folder``, sorted by name; cached per process.

    ``ValueError`` (one line) when a set has maps but no colour map, or two maps of one role.
    """
    groups: dict[str, dict[str, str]] = {}
    for rel in list_images(Path(folder), TEXTURE_SUFFIXES):
        path = Path(rel)
        found = map_role(path.stem)
        if found is None:
            continue
        role, rest = found
        key = (path.parent / rest).as_posix()
        maps = groups.setdefault(key, {})
        if role in maps:
            raise ValueError(f"texture set {key!r} in {folder} has two {role} maps: {maps[role]} and {rel}")
        maps[role] = rel
    sets = []
    for key in sorted(groups):
        maps = groups[key]
        if "colour" not in maps:
            first = next(iter(sorted(maps.values())))
            raise ValueError(f"texture set {key!r} in {folder} has no colour map (*_diff* or *Color*), e.g. {first}")
        sets.append(TextureSet(key, maps["colour"], maps.get("roughness", ""), maps.get("normal", "")))
    return tuple(sets)


def check_readable(path: Path) -> None:
    """Decode ``path`` with OpenCV; ``ValueError`` naming it when it is not a readable image."""
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # read by OpenCV at its first EXR call
    import cv2

    try:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise ValueError(f"cannot read image {path} (corrupt, empty or not an image)")


def check_media(cfg: GeneratorConfig) -> None:
    """Every look folder the config names holds usable images, each one decodable; ``ValueError``
    (one line, naming the folder or file) on the first problem. Run before anything is written."""
    folders: list[tuple[str, str, tuple[str, ...], str]] = [
        ("world.hdri_dir (--hdri)", cfg.world.hdri_dir, HDRI_SUFFIXES, "HDRI"),
        ("backplate.photos_dir (--backgrounds)", cfg.backplate.photos_dir, PHOTO_SUFFIXES, "photo"),
    ]
    for what, folder, suffixes, kind in folders:
        if not folder:
            continue
        root = Path(folder)
        if not root.is_dir():
            raise ValueError(f"{what}: folder not found: {root}")
        files = list_images(root, suffixes)
        if not files:
            raise ValueError(f"{what}: {root} holds no {kind} image ({', '.join(suffixes)})")
        for rel in files:
            check_readable(root / rel)
    folder = cfg.textures.textures_dir
    if folder:
        root = Path(folder)
        if not root.is_dir():
            raise ValueError(f"textures.textures_dir (--textures): folder not found: {root}")
        sets = texture_sets(str(root))
        if not sets:
            raise ValueError(f"textures.textures_dir (--textures): {root} holds no texture set (maps named "
                             "*_diff* / *Color*, optional *_rough* / *Roughness*, *_nor_gl* / *NormalGL*)")
        for s in sets:
            for rel in (s.colour, s.roughness, s.normal):
                if rel:
                    check_readable(root / rel)
