"""Downstream access to a Spinlock dataset: a PyTorch ``Dataset`` and a Ray Data reader over dataset.h5.

Both yield, per operator, what the file holds of: ``operator_index``, ``status``, ``parameters``
([P] mapped values), ``ic`` ([C, H, W]), ``trajectory`` ([M, T, C, H, W], when stored), the scalar
feature families ``features.initial`` / ``.architecture`` / ``.summary`` (and ``.initial_learned``
once tokenized) as [D] vectors, ``features.temporal`` [T', D], and ``tokens`` [positions] (once
tokenized: one code per informative codebook, :mod:`spinlock.encoding.layout`). Column names are in
:meth:`OperatorDataset.names` (``<stream>.l<level>`` for tokens); the token layout (stream, level and
codebook size of each position) is :meth:`OperatorDataset.token_layout`.

The HDF5 file is opened lazily by the process that reads (each DataLoader worker, each Ray actor)
and is never pickled, so the objects can be sent to workers freely. A ``s3://`` / ``gs://`` run or
``dataset.h5`` URI is downloaded once to the node's cache and read from there
(:func:`spinlock.storage.remote.local_copy`; each Ray actor fetches it on its own node). Trajectories are read from
``/trajectories`` or, for ``storage.trajectories.format: zarr``, from the Zarr array the file records.

    >>> ds = OperatorDataset("runs/quickstart/dataset.h5")          # doctest: +SKIP
    >>> loader = torch.utils.data.DataLoader(ds, batch_size=64, num_workers=2)  # doctest: +SKIP
    >>> tokenizer = Tokenizer.load("runs/quickstart/tokenizer")    # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filters the writer may use)
import numpy as np
import torch

from spinlock.encoding.icfields import read_rows
from spinlock.encoding.layout import TokenLayout
from spinlock.errors import DataError
from spinlock.storage import zarrstore
from spinlock.storage.remote import is_remote

# field name → path inside dataset.h5
_PATHS = {
    "operator_index": "operators/index",
    "status": "status",
    "parameters": "parameters/values",
    "ic": "ics/fields",
    "trajectory": "trajectories",
    "features.initial": "features/initial",
    "features.architecture": "features/architecture",
    "features.summary": "features/summary",
    "features.initial_learned": "features/initial_learned",
    "features.temporal": "features/temporal",
    "tokens": "tokens",
}


def _resolve(path: str | Path) -> str:
    from spinlock.storage.remote import local_copy

    p = local_copy(path)
    if p.is_dir():
        p = p / "dataset.h5"
    if not p.is_file():
        raise DataError(f"no dataset file at {p}")
    return str(p)


class _Lazy:
    """Per-process lazily opened h5py file (re-opened after fork/spawn, dropped when pickled)."""

    def __init__(self, path: str):
        self.path = path
        self._file: h5py.File | None = None
        self._trajectories = None
        self._pid = -1

    def get(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(_resolve(self.path), "r")  # a URI: fetched on this node
            self._trajectories = None
            self._pid = os.getpid()
        return self._file

    def dataset(self, key: str):
        """``f[key]``; ``trajectories`` may instead live in the run's Zarr array (same indexing)."""
        f = self.get()
        if key != "trajectories":
            return f[key]
        if self._trajectories is None:
            self._trajectories = zarrstore.open_trajectories(f, self.path)
        return self._trajectories

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])


def available_fields(path: str | Path) -> list[str]:
    """Fields present in the file, in :data:`_PATHS` order."""
    with h5py.File(_resolve(path), "r") as f:
        return [name for name, key in _PATHS.items()
                if key in f or (key == "trajectories" and zarrstore.ATTR in f.attrs)]


def _token_layout(f: h5py.File, path: str) -> TokenLayout:
    """The layout of ``/tokens``, checked against its width (so a reader never mislabels a column)."""
    layout = TokenLayout.from_attrs(f["tokens"].attrs, f"{path}:/tokens")
    if f["tokens"].shape[1] != len(layout.positions):
        raise DataError(f"{path}:/tokens has {f['tokens'].shape[1]} columns, its layout {len(layout.positions)}")
    return layout


class OperatorDataset(torch.utils.data.Dataset):
    """Map-style dataset: item ``i`` is a dict of tensors for the operator in row ``i`` of the file.

    ``fields`` selects what to read (default: everything present; ``trajectory`` is the large one).
    """

    def __init__(self, path: str | Path, fields: Sequence[str] | None = None):
        self.path = _resolve(path)
        present = available_fields(self.path)
        if fields is None:
            fields = present
        unknown = [f for f in fields if f not in _PATHS]
        if unknown:
            raise DataError(f"unknown field(s) {unknown}; expected some of {list(_PATHS)}")
        missing = [f for f in fields if f not in present]
        if missing:
            raise DataError(f"{self.path} has no {missing} (present: {present})")
        self.fields = list(fields)
        self._h5 = _Lazy(self.path)
        with h5py.File(self.path, "r") as f:
            self._len = int(f["operators/index"].shape[0])
            if "tokens" in self.fields:
                _token_layout(f, self.path)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not -self._len <= i < self._len:
            raise IndexError(f"operator row {i} out of range for {self._len} operators")
        return {name: torch.as_tensor(np.asarray(self._h5.dataset(_PATHS[name])[i])) for name in self.fields}

    def names(self) -> dict[str, list[str]]:
        """Column names of the vector fields (features, parameters) and token positions."""
        out = {}
        for name in self.fields:
            attrs = self._h5.dataset(_PATHS[name]).attrs
            if name == "tokens":
                out[name] = self.token_layout().names
            elif "names" in attrs:
                out[name] = [str(n) for n in attrs["names"]]
        return out

    def token_layout(self) -> TokenLayout:
        """Stream, level and codebook size of every ``tokens`` column (DataError without a layout)."""
        if "tokens" not in available_fields(self.path):
            raise DataError(f"{self.path} has no tokens yet: run 'spinlock tokenize' first")
        return _token_layout(self._h5.get(), self.path)


class _ReadRows:
    """Ray Data UDF: a batch of row numbers → the requested fields of those rows."""

    def __init__(self, path: str, fields: list[str]):
        self._h5 = _Lazy(path)
        self.fields = fields

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = np.asarray(batch["id"], dtype=np.int64)
        return {name: read_rows(self._h5.dataset(_PATHS[name]), rows) for name in self.fields}


def read_operators(path: str | Path, fields: Sequence[str] | None = None, rows_per_block: int = 256,
                   actors: int = 1):
    """A Ray Dataset with one row per operator and one column per field (tensor columns for arrays).

    Rows are read by an actor pool of ``actors`` (each with its own file handle), ``rows_per_block``
    operators per read.
    """
    import ray

    p = _resolve(path)
    present = available_fields(p)
    fields = list(fields) if fields is not None else present
    missing = [f for f in fields if f not in present]
    if missing:
        raise DataError(f"{p} has no {missing} (present: {present})")
    with h5py.File(p, "r") as f:
        n = int(f["operators/index"].shape[0])
        if "tokens" in fields:
            _token_layout(f, p)
    ds = ray.data.range(n, override_num_blocks=max(1, math.ceil(n / rows_per_block)))
    source = str(path) if is_remote(path) else p  # actors on other nodes fetch a URI themselves
    return ds.map_batches(_ReadRows, fn_constructor_kwargs={"path": source, "fields": fields},
                          compute=ray.data.ActorPoolStrategy(size=actors), batch_size=rows_per_block,
                          batch_format="numpy")
