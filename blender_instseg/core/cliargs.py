"""What every bpy-free command line shares: one-line usage errors and path arguments that refuse ''.

Bad input is one ``error:`` line and exit 2, so argparse's usage-plus-message is turned into a
``UsageError`` the command's ``main`` reports. An empty path argument is almost always an unset shell
variable (``--out "$OUT"``); argparse would read it as the current folder and write a dataset there.
"""

from __future__ import annotations

import argparse
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
