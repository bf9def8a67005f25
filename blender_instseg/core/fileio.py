"""Crash-safe file writes: every file the project produces goes through here.

A reader (or a resumed run after ``kill -9``) must never see a half-written file, so data is
written to a temporary name in the same directory, flushed, fsynced, then renamed over the target.
"""

from __future__ import annotations

import json
import os
import re
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


def _written_temp(target: Path, data: bytes) -> str:
    """``data`` in a new, fsynced temp file beside ``target`` (a name ``TEMP_NAME`` matches); its path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def _unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (same-directory temp file + ``os.replace``)."""
    target = Path(path)
    tmp = _written_temp(target, data)
    try:
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return target


def atomic_create_bytes(path: str | os.PathLike[str], data: bytes) -> bool:
    """Create ``path`` with ``data`` unless it exists; True when this call created it.

    Two processes starting on one folder at the same moment both see no file; only one may write it,
    and the other must read what the first wrote (a hardlink of the finished temp file either
    succeeds or finds the name taken, so the file is never seen half-written).
    """
    target = Path(path)
    tmp = _written_temp(target, data)
    try:
        os.link(tmp, target)
        return True
    except FileExistsError:
        return False
    except OSError:  # a filesystem without hardlinks: an exclusive create, written in place
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return True
    finally:
        _unlink_quietly(tmp)


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


#: the names the writers above give their temp files: mkstemp's ``.NAME.XXXXXXXX.tmp`` and
#: atomic_link_or_copy's ``.NAME.PID.link.tmp``; only these are ever removed as leftovers
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?:[a-z0-9_]{8}|\d+\.link)\.tmp$")


def temp_target(path: str | os.PathLike[str]) -> Path | None:
    """The file an atomic writer's temporary ``path`` stands for, or None when ``path`` is no such name
    (so messages can name the file a person knows, not the hidden temporary one)."""
    p = Path(path)
    m = TEMP_NAME.match(p.name)
    return p.with_name(m.group("name")) if m else None


def remove_stale_temp_files(root: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files a killed writer left under ``root`` (only names ``TEMP_NAME`` matches);
    the removed paths, sorted. Call it only while no other process writes there (a resume holding
    the folder): a live writer's temp file looks the same."""
    removed: list[Path] = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if TEMP_NAME.match(name) and not path.is_symlink():
                _unlink_quietly(path)
                removed.append(path)
    return sorted(removed)
