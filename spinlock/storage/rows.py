"""Per-operator rows of a dataset or shard file, read source file by source file.

A virtual merge (``storage.merge: virtual``) makes every per-operator array of ``dataset.h5`` a virtual
dataset with one source per shard file. Reading it through HDF5 opens each source file a read touches and
keeps it open, with its metadata cache (≈ 0.6 MiB of RSS each, measured), until the virtual dataset is
closed: a whole-column read, or a sample spread over the run, holds every shard file at once — ≈ 9 GiB for
the 15 625 shards of 1M operators. :func:`read_table` and :func:`table_blocks` read the source files
themselves instead, one at a time (open, read, close), using the row mapping the virtual dataset records
(:func:`row_sources`, kept per process while the file is unchanged: listing it costs O(shards)). A
dataset that is not virtual (a shard, a copy merge, ``/tokens``) is one source.
Either way rows are read in blocks of about :data:`READ_BLOCK_BYTES`, so a read never holds more than one
block beyond its result.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filters the writer may use)
import numpy as np

from spinlock.errors import DataError

READ_BLOCK_BYTES = 32 << 20
"""Rows of a per-operator dataset are read in blocks of about this size."""


@dataclass(frozen=True)
class RowSource:
    """Rows ``start:stop`` of a dataset are rows ``offset:offset + stop - start`` of dataset ``name`` in
    ``file`` (``None``: the dataset itself, not virtual)."""

    start: int
    stop: int
    file: Path | None
    name: str
    offset: int = 0


_SOURCES: dict[tuple[str, str], tuple[tuple[int, ...], list[RowSource], np.ndarray]] = {}
"""(file, dataset) → (the file's identity, :func:`row_sources`, their first rows) of the last few virtual
datasets read."""
_SOURCES_KEPT = 8


def _identity(f: h5py.File) -> tuple[int, ...] | None:
    """Device, inode, size and mtime of the open file (None when HDF5 does not read it through a
    descriptor, e.g. an fsspec file object)."""
    try:
        st = os.fstat(f.id.get_vfd_handle())
    except (OSError, ValueError, TypeError):
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _name(ds: h5py.Dataset) -> str:
    return getattr(ds, "name", None) or getattr(ds, "location", "the array")


def row_sources(ds: h5py.Dataset) -> tuple[list[RowSource], np.ndarray]:
    """The sources of ``ds``'s rows in row order and their first rows [S]; DataError for a virtual mapping
    that is not a block of whole rows (the merge writes only those) or rows that no source covers.

    A virtual dataset's mappings cost O(shards) to list (≈ 28 µs each, measured) and a tokenize worker
    reads one shard's rows per block, so they are kept per process for the last :data:`_SOURCES_KEPT`
    datasets read, while their file is unchanged.
    """
    if not getattr(ds, "is_virtual", False):  # also a ZarrRows (zarr trajectories): one source
        return [RowSource(0, int(ds.shape[0]) if ds.ndim else 0, None, _name(ds))], np.zeros(1, np.int64)
    key, identity = (ds.file.filename, ds.name), _identity(ds.file)
    if (known := _SOURCES.get(key)) is not None and known[0] == identity:
        return known[1], known[2]
    out = _virtual_sources(ds)
    starts = np.array([src.start for src in out], np.int64)
    if identity is not None:
        _SOURCES.pop(key, None)
        _SOURCES[key] = (identity, out, starts)
        while len(_SOURCES) > _SOURCES_KEPT:
            del _SOURCES[next(iter(_SOURCES))]
    return out, starts


def _virtual_sources(ds: h5py.Dataset) -> list[RowSource]:
    n = int(ds.shape[0])
    home = Path(ds.file.filename).parent
    tail = tuple(int(s) for s in ds.shape[1:])
    out = []
    for m in ds.virtual_sources():
        (v0, *vt0), (v1, *vt1) = m.vspace.get_select_bounds()
        whole = tuple(vt0) == (0,) * len(tail) and tuple(b + 1 for b in vt1) == tail
        whole &= m.vspace.get_select_npoints() == (v1 - v0 + 1) * int(np.prod(tail))
        s0 = 0  # the merge maps whole source datasets (selection "all"); the rows are checked when read
        if m.src_space.get_select_type() != h5py.h5s.SEL_ALL:
            (s0, *st0), (s1, *st1) = m.src_space.get_select_bounds()
            whole &= tuple(st0) == tuple(vt0) and tuple(st1) == tuple(vt1) and s1 - s0 == v1 - v0
        if not whole:
            raise DataError(f"{ds.file.filename}:{ds.name}: virtual mapping of rows {v0}..{v1} from"
                            f" {m.file_name}:{m.dset_name} is not a block of whole rows")
        file = Path(ds.file.filename) if m.file_name == "." else home / m.file_name
        out.append(RowSource(int(v0), int(v1) + 1, file, m.dset_name, int(s0)))
    out.sort(key=lambda s: s.start)
    ends = [0] + [s.stop for s in out]
    gaps = [(a, s.start) for a, s in zip(ends, out, strict=False) if s.start != a]
    if gaps or ends[-1] != n:
        raise DataError(f"{ds.file.filename}:{ds.name}: virtual sources do not cover rows 0..{n - 1} once"
                        f" (gaps or overlaps at {gaps[:5] or [(ends[-1], n)]})")
    return out


@contextmanager
def _opened(ds: h5py.Dataset, src: RowSource) -> Iterator[h5py.Dataset]:
    """The source's dataset, its file open only inside the ``with`` (with the file locking of ``ds``'s file,
    as HDF5 opens a virtual dataset's sources)."""
    if src.file is None:
        yield ds
        return
    use, ignore = ds.file.id.get_access_plist().get_file_locking()
    locking = ("best-effort" if ignore else True) if use else False  # HDF5 refuses a second open that differs
    try:
        f = h5py.File(src.file, "r", locking=locking)
    except OSError as e:
        raise DataError(f"{ds.file.filename}:{ds.name}: cannot open its source {src.file}: {e}") from None
    with f:
        sds = f.get(src.name)
        rows = src.offset + src.stop - src.start
        if not isinstance(sds, h5py.Dataset) or sds.shape[1:] != ds.shape[1:] or sds.shape[0] < rows:
            got = "nothing" if sds is None else getattr(sds, "shape", "a group")
            raise DataError(f"{ds.file.filename}:{ds.name}: its source {src.file}:{src.name} is {got},"
                            f" expected at least {rows} rows of {ds.shape[1:]}")
        yield sds


def _block_rows(ds: h5py.Dataset, cols: Sequence[int] | None) -> int:
    width = int(np.prod(ds.shape[1:], dtype=np.int64))
    if cols is not None and ds.ndim > 1:
        width = width // max(1, ds.shape[1]) * len(cols)
    return max(1, READ_BLOCK_BYTES // max(1, width * ds.dtype.itemsize))


def _columns(ds: h5py.Dataset, cols: Sequence[int] | None) -> list[int] | None:
    """``cols`` as a list, checked: increasing indices into axis 1 (what h5py's fancy read accepts)."""
    if cols is None:
        return None
    out = [int(c) for c in cols]
    increasing = all(b > a for a, b in zip(out, out[1:], strict=False))
    if ds.ndim < 2 or not increasing or (out and not 0 <= out[0] <= out[-1] < ds.shape[1]):
        raise ValueError(f"columns {out[:8]} of {_name(ds)} {ds.shape}: expected increasing indices of axis 1")
    return out


def table_blocks(ds: h5py.Dataset, cols: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, ds[first:first + len(block), cols])`` for every row of ``ds`` in order, in blocks of at
    most :data:`READ_BLOCK_BYTES` that never span two source files (``cols``: increasing indices into axis
    1, ``None`` for all)."""
    cols = _columns(ds, cols)
    sel = (slice(None),) if cols is None else (slice(None), cols)
    block = _block_rows(ds, cols)
    for src in row_sources(ds)[0]:
        if src.stop == src.start:
            continue
        with _opened(ds, src) as sds:
            for a in range(src.start, src.stop, block):
                b = min(a + block, src.stop)
                lo = src.offset + a - src.start
                yield a, np.asarray(sds[(slice(lo, lo + b - a), *sel[1:])])


def read_table(ds: h5py.Dataset, rows: np.ndarray | None = None, cols: Sequence[int] | None = None
               ) -> np.ndarray:
    """``ds[rows][:, cols]`` of an h5py dataset (or the ``ZarrRows`` of zarr trajectories): all rows
    (``rows=None``) or sorted, unique ``rows``; ``cols`` increasing indices into axis 1 (``None``: all).
    Source files are opened one at a time, and only those holding a requested row; within a source, only
    blocks of about :data:`READ_BLOCK_BYTES` that hold a requested row are read (h5py's fancy indexing is
    slow for long lists)."""
    cols = _columns(ds, cols)
    tail = tuple(ds.shape[1:]) if cols is None else (len(cols), *ds.shape[2:])
    if rows is None:
        out = np.empty((ds.shape[0], *tail), ds.dtype)
        for a, values in table_blocks(ds, cols):
            out[a:a + len(values)] = values
        return out
    rows = np.asarray(rows, np.int64)
    if rows.size and (np.any(np.diff(rows) <= 0) or rows[0] < 0 or rows[-1] >= ds.shape[0]):
        raise ValueError(f"rows of {_name(ds)} must be sorted, unique and in 0..{ds.shape[0] - 1}")
    out = np.empty((rows.size, *tail), ds.dtype)
    sel = () if cols is None else (cols,)
    block = _block_rows(ds, cols)
    sources, starts = row_sources(ds)
    touched = np.unique(np.searchsorted(starts, rows, side="right") - 1)  # not a loop over every shard
    for src in (sources[i] for i in touched):
        lo, hi = np.searchsorted(rows, [src.start, src.stop])
        with _opened(ds, src) as sds:
            while lo < hi:
                a = int(rows[lo])
                b = min(a + block, src.stop)
                end = int(np.searchsorted(rows, b))
                first = src.offset + a - src.start
                if end - lo == 1:
                    out[lo] = sds[(slice(first, first + 1), *sel)][0]
                else:
                    out[lo:end] = np.asarray(sds[(slice(first, first + b - a), *sel)])[rows[lo:end] - a]
                lo = end
    return out
