"""Durable publication of a finished file: fsync it, rename it into place, fsync its folder.

A rename is atomic but not durable by itself: after a power loss the folder entry may name a file whose
data never reached the disk (a zero-length "complete" shard). fsync before the rename makes the data
durable; fsync of the folder after it makes the new name durable.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file or a folder by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_replace(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Move the finished ``tmp`` to ``final`` so that ``final`` is, after any crash, absent or whole."""
    fsync_path(tmp)
    os.replace(tmp, final)
    fsync_path(Path(final).parent)
