"""Reading a Spinlock dataset: the one run folder → dataset file resolver, a PyTorch ``Dataset``, a Ray
Data reader and the summary ``spinlock info`` prints.

:func:`dataset_file` turns a run folder, a dataset or shard file, or their ``s3://`` / ``gs://`` URI
into a local HDF5 path (a URI is downloaded once to the node's cache, :func:`spinlock.storage.remote.local_copy`;
each Ray actor fetches it on its own node). Every reader of a run goes through it.

:class:`OperatorDataset` and :func:`read_operators` yield, per operator, what the file holds of:
``operator_index``, ``status``, ``parameters`` ([P] mapped values), ``ic`` ([C, H, W]), ``trajectory``
([M, T, C, H, W], when stored), the scalar feature families ``features.initial`` / ``.architecture`` /
``.summary`` (and ``.initial_learned`` once tokenized) as [D] vectors, ``features.temporal`` [T', D],
and ``tokens`` [positions] (once tokenized: one code per informative codebook,
:mod:`spinlock.encoding.layout`). Column names are in :meth:`OperatorDataset.names`
(``<stream>.l<level>`` for tokens); the token layout (stream, level and codebook size of each position)
is :meth:`OperatorDataset.token_layout`.

The HDF5 file is opened lazily by the process that reads (each DataLoader worker, each Ray actor)
and is never pickled, so the objects can be sent to workers freely. Trajectories are read from
``/trajectories`` or, for ``storage.trajectories.format: zarr``, from the Zarr array the file records.

    >>> ds = OperatorDataset("runs/quickstart/dataset.h5")          # doctest: +SKIP
    >>> loader = torch.utils.data.DataLoader(ds, batch_size=64, num_workers=2)  # doctest: +SKIP
    >>> tokenizer = Tokenizer.load("runs/quickstart/tokenizer")    # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filters the writer may use)
import numpy as np
import torch
import yaml

from spinlock.encoding.icfields import read_rows
from spinlock.errors import DataError
from spinlock.features import census
from spinlock.storage import zarrstore
from spinlock.storage.layout import DATASET_FILE, FEATURE_FAMILIES, LEARNED_FAMILY, STATUS_FAULT, STATUS_NAMES
from spinlock.storage.remote import is_remote, local_copy
from spinlock.storage.rows import read_table, table_blocks

if TYPE_CHECKING:
    from spinlock.encoding.layout import TokenLayout


def dataset_file(path: str | Path) -> Path:
    """The local dataset file of a run folder (its ``dataset.h5``), of a dataset or shard file, or of
    their URI (fetched to the node's cache first); DataError when there is none."""
    p = local_copy(path)
    if p.is_dir():
        p = p / DATASET_FILE
    if not p.is_file():
        raise DataError(f"no dataset at {p} (expected a run directory or an .h5 file)")
    return p


# field name → path inside the dataset file
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


class _Lazy:
    """Per-process lazily opened h5py file (re-opened after fork/spawn, dropped when pickled)."""

    def __init__(self, path: str):
        self.path = path
        self._file: h5py.File | None = None
        self._trajectories = None
        self._pid = -1

    def get(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(dataset_file(self.path), "r")  # a URI: fetched on this node
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
    with h5py.File(dataset_file(path), "r") as f:
        return [name for name, key in _PATHS.items()
                if key in f or (key == "trajectories" and zarrstore.ATTR in f.attrs)]


def _token_layout(f: h5py.File, path: str) -> TokenLayout:
    """The layout of ``/tokens``, checked against its width (so a reader never mislabels a column)."""
    from spinlock.encoding.layout import TokenLayout  # defers the quantizer library: describe() never needs it

    layout = TokenLayout.from_attrs(f["tokens"].attrs, f"{path}:/tokens")
    if f["tokens"].shape[1] != len(layout.positions):
        raise DataError(f"{path}:/tokens has {f['tokens'].shape[1]} columns, its layout {len(layout.positions)}")
    return layout


class OperatorDataset(torch.utils.data.Dataset):
    """Map-style dataset: item ``i`` is a dict of tensors for the operator in row ``i`` of the file.

    ``fields`` selects what to read (default: everything present; ``trajectory`` is the large one).
    """

    def __init__(self, path: str | Path, fields: Sequence[str] | None = None):
        self.path = str(dataset_file(path))
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
    import ray  # deferred: heavy, and no other reader needs it

    p = str(dataset_file(path))
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


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def read_census(f: h5py.File) -> tuple[np.ndarray, list[str]]:
    """Census codes [N] int8 of a dataset or shard file and the notes on rules it cannot apply.

    Reads /status, the run's M (attr ``config``) and only the census columns of /features/summary, in
    row blocks and one shard file at a time (:func:`spinlock.storage.rows.read_table`), so memory stays
    O(N) whatever the feature width and the number of shards.
    """
    status = read_table(f["status"])
    sim = yaml.safe_load(f.attrs.get("config") or "{}").get("simulation", {})
    m = int(sim.get("realizations", 1))
    if "features/summary" not in f:
        return census.classify(np.zeros((len(status), 0), np.float32), [], status, m), ["no /features/summary"]
    ds = f["features/summary"]
    names = [x.decode() if isinstance(x, bytes) else str(x) for x in ds.attrs["names"]]
    cols = sorted({names.index(c) for c in census.INPUTS if c in names})
    block = read_table(ds, cols=cols) if cols else np.zeros((len(status), 0), np.float32)
    codes = census.classify(block, [names[j] for j in cols], status, m)
    return codes, census.rule_notes(names, m)


def describe(path: str | Path) -> str:
    """A human summary of a run's dataset file or of one shard file (``spinlock info``)."""
    p = dataset_file(path)
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise DataError(f"{p}: not a readable HDF5 file ({e})") from None
    lines = []
    with f:
        a = f.attrs
        kind = "shard" if "shard_id" in a else "dataset"
        lines.append(
            f"{p} — Spinlock {kind}, format {a.get('format_version')}, spinlock {a.get('spinlock_version')}"
        )
        if kind == "shard":
            lines.append(f"  shard {a['shard_id']}: operators [{a['operator_start']}, {a['operator_stop']})"
                         f", complete={bool(a.get('complete'))}")
        else:
            lines.append(f"  merged from {a.get('num_shards')} shards ({a.get('merge')})")
        lines.append(f"  seed {a.get('seed')}, config hash {a.get('config_hash')}")
        if "operators/index" not in f:
            raise DataError(f"{p}: missing /operators/index")
        n = f["operators/index"].shape[0]
        lines.append(f"  operators: {n}")
        st = Counter(read_table(f["status"]).tolist())
        faults = st.get(STATUS_FAULT, 0)
        # every defined status is listed, zeros included, so "fault 0" is a visible all-clear
        counts = [f"{name} {st.pop(code, 0)}" for code, name in sorted(STATUS_NAMES.items())]
        counts += [f"undefined code {k}: {v}" for k, v in sorted(st.items())]
        lines.append("  status: " + ", ".join(counts))
        if faults:
            lines.append("  WARNING: numerical faults (status 2: a non-finite value from the noise, the IC or a"
                         " feature, not the dynamics) — a bug to report; see docs/dataset-format.md")
        codes, notes = read_census(f)
        lines.append("  census: " + census.format_counts(codes) + "".join(f"; {x}" for x in notes))
        names = [str(x) for x in f["parameters/values"].attrs["names"]]
        lines.append(f"  parameters ({len(names)}): {', '.join(names)}")
        if "stratification" in f["parameters"].attrs:
            m = json.loads(f["parameters"].attrs["stratification"])
            prefix = m.get("discrepancy_n", m["n"])
            lines.append(
                f"  stratification: d={m['d']}, centered discrepancy {m['centered_discrepancy']:.3g}"
                f"{'' if prefix == m['n'] else f' (first {prefix} points)'},"
                f" max |corr| {m['max_abs_corr']:.3g}, min 1-D stratum occupancy {m['min_stratum_occupancy']:.3f}"
            )
        ic = f["ics/fields"]
        types = Counter(s.decode() if isinstance(s, bytes) else s for s in f["ics/type"][()])
        lines.append(f"  ICs {tuple(ic.shape[1:])}: " + ", ".join(f"{k} {v}" for k, v in types.most_common()))
        t = zarrstore.open_trajectories(f, p)
        if t is not None:
            where = f" in Zarr {t.location}" if isinstance(t, zarrstore.ZarrRows) else ""
            lines.append(f"  trajectories {tuple(t.shape)} {t.dtype}{where}, stride {t.attrs['stride']},"
                         f" {_fmt_bytes(np.prod(t.shape) * t.dtype.itemsize)} uncompressed")
        else:
            lines.append("  trajectories: not stored (use `spinlock replay` to re-run an operator)")
        # the learned family right after the one it embeds
        for fam in (FEATURE_FAMILIES[0], LEARNED_FAMILY, *FEATURE_FAMILIES[1:]):
            key = f"features/{fam}"
            if key in f:
                ds = f[key]
                nan = sum(int(np.isnan(v).sum()) for _, v in table_blocks(ds)) / max(ds.size, 1)
                lines.append(f"  features/{fam}: {tuple(ds.shape)}, NaN fraction {nan:.3f}")
        if "tokens" in f:
            t = f["tokens"]
            streams = list(dict.fromkeys(str(s) for s in t.attrs.get("stream", [])))
            lines.append(f"  tokens {tuple(t.shape)}: {t.shape[1]} positions from {len(streams)} token streams")
    return "\n".join(lines)
