"""What every bpy-free command line shares: one-line usage errors, path arguments that refuse '',
and the checks of where a command may write.

Bad input is one ``error:`` line and exit 2, so argparse's usage-plus-message is turned into a
``UsageError`` the command's ``main`` reports. An empty path argument is almost always an unset shell
variable (``--out "$OUT"``); argparse would read it as the current folder and write a dataset there.
An output that is a file where a folder is wanted (or the reverse), under a file, or in a folder
this user cannot write fails in ``check_out_folder`` / ``check_out_file`` before any work, so no
command leaves a half-made folder or throws away minutes of work at the end.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


class UsageError(ValueError):
    """Bad command-line arguments: reported on one line, exit 2."""


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise ``UsageError`` instead of printing usage and exiting.
    Sub-parsers made by ``add_subparsers`` are of the same class, so they behave alike."""

    def error(self, message: str) -> Any:
        raise UsageError(message)


def path_arg(text: str) -> Path:
    """argparse ``type=`` for files and folders: a ``Path``, but never from an empty or blank string."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty (an unset shell variable?)")
    return Path(text)


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
