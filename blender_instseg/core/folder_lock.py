"""One writer per output folder: a second command on the same folder is refused, not interleaved.

Two generators started on one ``--out`` (say with different seeds) would otherwise both render into
it and leave a silently mixed dataset. The lock is an OS lock on a small file in the folder, so the
operating system releases it when the holder dies (``kill -9`` included) and a resume never finds a
stale lock. The file stays, empty, so two runs of one command leave identical folders.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType

LOCK_FILE = ".instseg.lock"


class FolderBusy(ValueError):
    """Another live process holds the folder (one-line message, exit 2)."""


class FolderLock:
    """``with FolderLock(folder):`` holds ``folder`` for this process, or raises ``FolderBusy``."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> "FolderLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            _lock(fd)
        except OSError:
            os.close(fd)
            raise FolderBusy(f"another command is writing to {self.path.parent}; wait for it or use another "
                             "folder") from None
        self._fd = fd
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


if sys.platform == "win32":
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
