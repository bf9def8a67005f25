"""Crash-safe file writes: every file the project produces goes through here.

A reader (or a resumed run after ``kill -9``) must never see a half-written file, so data is
written to a temporary name in the same directory, flushed, fsynced, then renamed over the target.
"""

from __future__ import annotations

import json
import re
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def _default_file_mode() -> int:
    """The mode ``open()`` would give a new file (0666 less the umask); mkstemp's 0600 is too tight
    for datasets that other users and tools read."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_file_mode()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (same-directory temp file + ``os.replace``)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = None) -> Path:
    """Serialise ``obj`` as JSON and write it atomically. Compact by default: datasets get large."""
    separators = (",", ":") if indent is None else None
    return atomic_write_text(path, json.dumps(obj, indent=indent, separators=separators, sort_keys=False))


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """Load JSON, turning the usual failures into one-line ``ValueError``/``FileNotFoundError`` messages."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} not found: {p}")
    if p.is_dir():
        raise ValueError(f"{what} is a directory, expected a file: {p}")
    try:
        with p.open("r", encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON: {p} (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{what} is not UTF-8 text: {p}") from None


def atomic_link_or_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Put ``src`` at ``dst`` as a hardlink (a copy across filesystems), atomically replacing ``dst``.

    Hardlinks keep merged shards and YOLO exports free of duplicate image bytes.
    """
    source, target = Path(src), Path(dst)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.link.tmp")
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copy2(source, tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


# The names the writers above give their temporary files: mkstemp's ``.NAME.XXXXXXXX.tmp`` and
# atomic_link_or_copy's ``.NAME.PID.link.tmp``. Only these are ever removed as leftovers.
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?:[a-z0-9_]{8}|\d+\.link)\.tmp$")


def temp_target(path: str | os.PathLike[str]) -> Path | None:
    """The file an atomic writer's temporary ``path`` stands for, or None when ``path`` is no such name
    (so messages can name the file a person knows, not the hidden temporary one)."""
    p = Path(path)
    m = _TEMP_NAME.match(p.name)
    return p.with_name(m.group("name")) if m else None


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files a killed writer left directly in ``folder`` (names as above only);
    for a resume, which alone writes there. Returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        if temp_target(p) is not None and p.is_file() and not p.is_symlink():
            try:
                p.unlink()
            except FileNotFoundError:
                continue
            removed.append(p)
    return removed
