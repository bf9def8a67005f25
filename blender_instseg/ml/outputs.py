"""Where an ml command may write, checked before it reads a checkpoint or predicts an image.

Torch-free. An ``--out`` that is empty (an unset shell variable), a file where a folder is wanted
(or the reverse), under a file, or in a folder this user cannot write fails here in one line,
so no command leaves a half-made run folder or throws away minutes of prediction at the end.
"""

from __future__ import annotations

import os
from pathlib import Path


def _nearest_existing(p: Path) -> Path:
    q = p.absolute()
    while not q.exists() and q != q.parent:
        q = q.parent
    return q


def _check_writable(p: Path, base: Path, flag: str) -> None:
    """``base``: the nearest existing folder of ``p`` (``p`` itself for a folder that exists)."""
    if not base.is_dir():
        raise ValueError(f"{flag} {p} is under {base}, which is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {p}: cannot write in {base} (permission denied)")


def check_out_folder(value: str | None, flag: str = "--out") -> Path:
    """A folder to create or fill: not '', not an existing file, creatable and writable."""
    if value is None or not str(value).strip():
        raise ValueError(f"{flag} is empty; give a folder")
    p = Path(value)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {p} exists and is not a folder")
    _check_writable(p, _nearest_existing(p), flag)
    return p


def check_out_file(value: str | None, flag: str = "--out") -> Path:
    """A file to (over)write: not '', not an existing folder, its folder creatable and writable."""
    if value is None or not str(value).strip():
        raise ValueError(f"{flag} is empty; give a file name")
    p = Path(value)
    if p.is_dir() or str(value).endswith(os.sep):
        raise ValueError(f"{flag} {p} is a folder; give a file name")
    if p.exists() and not os.access(p, os.W_OK):
        raise ValueError(f"{flag} {p}: cannot write it (permission denied)")
    _check_writable(p, _nearest_existing(p.parent), flag)
    return p
