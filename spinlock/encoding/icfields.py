"""Read stored initial conditions by operator index from ``dataset.h5`` (for the CNN branch).

The file is opened lazily in the process that reads (a Ray actor, a DataLoader worker) and never
pickled: a reader sent to another process reopens the file there. An object-store URI
(``s3://.../dataset.h5``) is opened with fsspec + h5py: a tokenize worker on any node reads just
``/operators/index`` and its rows of ``/ics/fields`` with range requests, never the whole file (whose
trajectories dominate its size).

A merged run's rows are read one shard file at a time (:func:`spinlock.storage.rows.read_table`), and
``/operators/index`` once per process and file (:data:`_INDEX`), not once per reader: the tokenize stage
makes a reader for every block, one block per shard, so reading the index per reader cost O(shards) per
block, O(shards²) in all (133 ms per block at 250 shards, measured; now 1.9 ms).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filters the writer may use)
import numpy as np

from spinlock.errors import DataError
from spinlock.storage.remote import is_remote
from spinlock.storage.rows import read_table

_INDEX: dict[str, tuple[object, np.ndarray, np.ndarray]] = {}
"""path → (identity of the file read, argsort of its ``/operators/index``, the sorted index)."""


def stored_ic_shape(path: str | Path) -> tuple[int, int, int]:
    """(C, H, W) of ``/ics/fields`` in ``path`` (the file is closed again before returning)."""
    reader = ICReader(path)
    try:
        return reader.shape
    finally:
        reader.close()


def read_rows(ds: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """``ds[rows]`` for any row order (repeats allowed): the distinct rows in order, one shard file at a
    time, put back in the requested order."""
    uniq, inverse = np.unique(np.asarray(rows, dtype=np.int64), return_inverse=True)
    return read_table(ds, uniq)[inverse]


class ICReader:
    """``read(operator_index [B]) -> [B, C, H, W]`` float32 from ``/ics/fields`` via ``/operators/index``."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._file: h5py.File | None = None
        self._pid = -1

    def _open(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            try:
                if is_remote(self.path):
                    import fsspec  # deferred: only object-store paths need it

                    fs, key = fsspec.core.url_to_fs(self.path)
                    f = h5py.File(fs.open(key, "rb", block_size=4 << 20), "r")
                    identity: object = fs.ukey(key)
                else:
                    # no file lock: the tokenize driver appends /tokens once the readers are done, while
                    # Ray may still be tearing down the actors that hold the file open
                    f = h5py.File(self.path, "r", locking=False)
                    st = os.fstat(f.id.get_vfd_handle())  # the file opened, even if replaced since
                    identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            except (OSError, FileNotFoundError) as e:
                raise DataError(f"cannot open {self.path}: {e}") from None
            for key in ("operators/index", "ics/fields"):
                if key not in f:
                    f.close()
                    raise DataError(f"{self.path}: missing /{key} (needed for the IC branch)")
            known = _INDEX.get(self.path)
            if known is None or known[0] != identity:
                index = read_table(f["operators/index"])
                sorter = np.argsort(index, kind="stable")
                known = _INDEX[self.path] = (identity, sorter, index[sorter])
            _, self._sorter, self._sorted = known
            self._file, self._pid = f, os.getpid()
        return self._file

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one stored initial condition."""
        return tuple(self._open()["ics/fields"].shape[1:])

    def rows(self, operator_index: np.ndarray) -> np.ndarray:
        """File rows [B] of the given operator indices (DataError for an unknown index)."""
        self._open()
        idx = np.asarray(operator_index, dtype=np.int64)
        if len(self._sorted) == 0:
            bad = np.ones(len(idx), dtype=bool)
            pos = np.zeros(len(idx), dtype=np.int64)
        else:
            pos = np.clip(np.searchsorted(self._sorted, idx), 0, len(self._sorted) - 1)
            bad = self._sorted[pos] != idx
        if np.any(bad):
            raise DataError(f"{self.path}: operator indices not in /operators/index: {idx[bad][:8].tolist()}")
        return self._sorter[pos]

    def read(self, operator_index: np.ndarray) -> np.ndarray:
        return read_rows(self._open()["ics/fields"], self.rows(operator_index)).astype(np.float32, copy=False)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])
