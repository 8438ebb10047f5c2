"""Durable publication of a finished file: fsync it, rename it into place, fsync its folder.

A rename is atomic but not durable by itself: after a power loss the folder entry may name a file whose
data never reached the disk (a zero-length "complete" shard). fsync before the rename makes the data
durable; fsync of the folder after it makes the new name durable.

Each attempt writes its own temporary (:func:`temp_path`): an actor on a node cut off from the cluster
but not from the shared filesystem keeps writing its shard while the retry writes the same shard
elsewhere. With one shared ``*.tmp`` name the retry could not open it (HDF5 locks the file the
cut-off writer holds) or, without locking, both would write one file. With one name per attempt the
last rename wins, and both attempts hold the same bytes (generation is deterministic).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def temp_path(final: str | os.PathLike[str]) -> Path:
    """A temporary name next to ``final`` that no other attempt uses: ``NAME.<random>.tmp``."""
    final = Path(final)
    return final.with_name(f"{final.name}.{uuid.uuid4().hex[:12]}.tmp")


def temp_files(final: str | os.PathLike[str]) -> list[Path]:
    """The temporaries of ``final`` that interrupted (or still running) writers left next to it."""
    final = Path(final)
    return sorted(final.parent.glob(f"{final.name}.*tmp"))  # also NAME.tmp, the name before temp_path


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
