"""Zarr v3 trajectory store (``storage.trajectories.format: zarr``): one array ``OUT/trajectories.zarr``.

Why: HDF5 needs a seekable local file, so for an object-store ``--out`` HDF5 trajectories (the bulk of a
dataset) are staged on local disk and uploaded. A Zarr array is a set of independent objects, so each
shard writes its trajectory chunks straight to their final place — a folder for a local ``--out``, the
bucket through zarr's fsspec store for ``s3://``/``gs://`` — and only the small HDF5 shard is staged.

Layout: a group (so ``xarray.open_zarr`` opens it) holding the array ``trajectories``, shape
[N, M, Ts, C, H, W] indexed by *global* operator index, ``dimension_names`` (operator, realization, time,
channel, y, x), chunks (1, 1, k, C, H, W) with ~1 MiB per chunk (k from :func:`trajectory_chunk_steps`,
as for HDF5 chunks), the run's codec, fill value NaN, attrs ``stride``, ``steps``, ``config_hash``; and
the coordinate array ``time`` (the stored step numbers). One operator per chunk means no chunk spans two
shards, so shards write disjoint chunks without coordination.

Completion: a shard writes all of its chunks (and, on a local filesystem, fsyncs them) *before* its HDF5
file is committed, so a committed shard implies its chunks exist; a regenerated shard overwrites them
with identical bytes. Chunks holding only the fill value are written too, so "every chunk key of the
rows exists" is the coverage check used by the merge and by ``spinlock info --check``.

Shards and ``dataset.h5`` record the group in the root attribute ``trajectories_store``: the relative
path ``trajectories.zarr`` (relative to ``OUT``) for a local run, the full URL for an object-store run
(so the driver's staged ``dataset.h5`` reads from the bucket; a synced copy of the bucket reads its own).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spinlock.config.models import SimulationConfig, StorageConfig
from spinlock.errors import DataError, SpinlockError
from spinlock.storage.dims import TRAJECTORY_DIMS
from spinlock.storage.durable import fsync_path
from spinlock.storage.layout import TRAJECTORIES_ZARR, trajectory_chunk_steps
from spinlock.storage.remote import is_remote

# zarr (~0.3 s) and fsspec are imported inside the functions that use them: every reader imports this module
# for open_trajectories, and an HDF5 run never needs either.
ATTR = "trajectories_store"
ARRAY = "trajectories"  # the array's name inside the group; its coordinate array is "time"
# every chunk is written, even all-NaN ones (diverged rows), so a missing key always means "not written"
_WRITE_CONFIG = {"write_empty_chunks": True}


def location(root: str | os.PathLike[str]) -> str:
    """The group's location under an output root (local folder or object-store URL)."""
    return f"{str(root).rstrip('/')}/{TRAJECTORIES_ZARR}"


def recorded_location(root: str | os.PathLike[str]) -> str:
    """Value of the ``trajectories_store`` attribute: relative for a local run (the folder can move)."""
    return location(root) if is_remote(root) else TRAJECTORIES_ZARR


def resolve(h5_path: str | Path, attrs: Mapping[str, Any]) -> str:
    """Where the group of a shard or dataset file lives.

    A relative value is relative to the file's ``OUT``. A URL is used as is, unless ``OUT`` holds a
    ``trajectories.zarr`` itself: then the folder is a synced copy of the bucket and reads stay local.
    """
    value = str(attrs[ATTR])
    h5 = Path(h5_path).resolve()
    out = h5.parent.parent if "shard_id" in attrs else h5.parent
    if is_remote(value):
        beside = out / TRAJECTORIES_ZARR
        return str(beside) if (beside / "zarr.json").is_file() else value
    return str(out / value)


def compressors(codec: str, level: int) -> list[Any] | None:
    """zarr codecs equal to ``storage.codec`` (Blosc with byte shuffle, as hdf5plugin writes it)."""
    from zarr.codecs import BloscCodec, GzipCodec

    if codec == "none":
        return None
    if codec == "gzip":
        return [GzipCodec(level=level)]
    return [BloscCodec(cname=codec, clevel=level, shuffle="shuffle")]


@dataclass(frozen=True)
class TrajectoryArray:
    """The run's array as its config fixes it: what :func:`open_for_write` creates and :func:`check` expects."""

    shape: tuple[int, ...]  # [N, M, Ts, C, H, W]
    chunks: tuple[int, ...]  # (1, 1, k, C, H, W)
    dtype: np.dtype
    steps: tuple[int, ...]  # the stored step numbers: the ``time`` coordinate
    stride: int
    codec: str
    level: int
    config_hash: str

    @classmethod
    def of(cls, sim: SimulationConfig, storage: StorageConfig, config_hash: str) -> TrajectoryArray:
        traj = storage.trajectories
        steps = tuple(range(0, sim.steps + 1, traj.stride))
        frame = (sim.channels, sim.grid, sim.grid)
        dtype = np.dtype(traj.dtype)
        k = trajectory_chunk_steps(math.prod(frame) * dtype.itemsize, len(steps))
        return cls((sim.num_operators, sim.realizations, len(steps), *frame), (1, 1, k, *frame), dtype, steps,
                   traj.stride, storage.codec, storage.level, config_hash)


def _ensure_group(spec: TrajectoryArray, loc: str) -> None:
    """The group and its ``time`` coordinate, (re)written unless present and right: every shard checks,
    so a creator that died half-way is repaired by the next (concurrent writers write the same bytes)."""
    import zarr
    from zarr.errors import ContainsArrayError

    try:
        zarr.open_group(loc, mode="a")
    except ContainsArrayError:
        raise SpinlockError(f"{loc} is a bare Zarr array written by an older Spinlock (the trajectories"
                            " are now the array 'trajectories' of a group); use a new --out") from None
    steps = np.asarray(spec.steps, dtype=np.int64)
    try:
        ok = np.array_equal(zarr.open_array(f"{loc}/time", mode="r")[:], steps)
    except (FileNotFoundError, ValueError):
        ok = False
    if not ok:
        zarr.create_array(f"{loc}/time", data=steps, dimension_names=("time",), overwrite=True)


def open_for_write(spec: TrajectoryArray, root: str | os.PathLike[str]):
    """Open the run's array for writing, creating the group and array on first use (idempotent; safe to
    race: every creator writes the same metadata). Refuses an array of another run."""
    import zarr
    from zarr.errors import ContainsArrayError

    loc = location(root)
    _ensure_group(spec, loc)
    path = f"{loc}/{ARRAY}"
    try:
        arr = zarr.open_array(path, mode="r+", config=_WRITE_CONFIG)
    except FileNotFoundError:
        attrs = {"stride": spec.stride, "steps": list(spec.steps), "config_hash": spec.config_hash}
        try:
            arr = zarr.create_array(path, shape=spec.shape, chunks=spec.chunks, dtype=spec.dtype, fill_value=np.nan,
                                    compressors=compressors(spec.codec, spec.level), attributes=attrs,
                                    dimension_names=TRAJECTORY_DIMS, config=_WRITE_CONFIG)
        except ContainsArrayError:  # another shard created it meanwhile
            arr = zarr.open_array(path, mode="r+", config=_WRITE_CONFIG)
    problems = _metadata_problems(spec, arr)
    if problems:
        raise SpinlockError(f"{loc} holds a trajectory array of another run ({'; '.join(problems)});"
                            " use a new --out")
    return arr


def open_read(loc: str):
    """The array of the group at ``loc`` read-only, or a DataError naming where it was expected."""
    import zarr

    try:
        return zarr.open_array(f"{loc}/{ARRAY}", mode="r")
    except (FileNotFoundError, OSError, ValueError) as e:
        raise DataError(f"cannot open the Zarr trajectory array {loc}/{ARRAY}: {e}") from None


def _metadata_problems(spec: TrajectoryArray, arr) -> list[str]:
    shape, chunks, dtype = spec.shape, spec.chunks, spec.dtype
    out = []
    if tuple(arr.shape) != shape:
        out.append(f"shape {tuple(arr.shape)}, expected {shape}")
    if tuple(arr.chunks) != chunks:
        out.append(f"chunks {tuple(arr.chunks)}, expected {chunks} (one operator per chunk)")
    if np.dtype(arr.dtype) != dtype:
        out.append(f"dtype {arr.dtype}, expected {dtype}")
    if tuple(arr.metadata.dimension_names or ()) != TRAJECTORY_DIMS:
        out.append(f"dimension_names {arr.metadata.dimension_names}, expected {TRAJECTORY_DIMS}")
    for a in ("stride", "steps", "config_hash"):
        if a not in arr.attrs:
            out.append(f"missing attribute {a!r}")
    if arr.attrs.get("config_hash", spec.config_hash) != spec.config_hash:
        out.append(f"config hash {arr.attrs['config_hash']} != {spec.config_hash}")
    return out


def consolidate(loc: str) -> None:
    """Write the group's consolidated metadata (once all shards are done), so ``xarray.open_zarr`` opens
    the group with one read and without its warning about non-consolidated stores."""
    import zarr
    from zarr.errors import ZarrUserWarning

    with warnings.catch_warnings():  # "consolidated metadata is not part of the v3 spec": known, and fine
        warnings.simplefilter("ignore", ZarrUserWarning)
        zarr.consolidate_metadata(loc)


def chunk_keys(arr, start: int, stop: int) -> Iterator[str]:
    """Store keys (relative to the array) of every chunk of operator rows [start, stop)."""
    n_t = math.ceil(arr.shape[2] / arr.chunks[2])
    for i in range(start, stop):
        for m in range(arr.shape[1]):
            for t in range(n_t):
                yield arr.metadata.encode_chunk_key((i, m, t, 0, 0, 0))


def _present_keys(loc: str) -> set[str]:
    """Chunk keys of the array that exist under the group ``loc`` (one listing, no per-key requests)."""
    loc = f"{loc}/{ARRAY}"
    if not is_remote(loc):
        root = Path(loc)
        return {p.relative_to(root).as_posix() for p in (root / "c").rglob("*")
                if p.is_file() and not p.name.endswith(".partial")}
    import fsspec

    fs, path = fsspec.core.url_to_fs(loc)
    fs.invalidate_cache()
    prefix = path.rstrip("/") + "/"
    return {p[len(prefix):] for p in fs.find(prefix + "c")}


def check(spec: TrajectoryArray, loc: str, start: int, stop: int) -> list[str]:
    """Problems of the array at ``loc`` for operator rows [start, stop): metadata and missing chunks."""
    try:
        arr = open_read(loc)
    except DataError as e:
        return [str(e)]
    problems = [f"{TRAJECTORIES_ZARR}: {p}" for p in _metadata_problems(spec, arr)]
    try:
        import zarr

        if not np.array_equal(zarr.open_array(f"{loc}/time", mode="r")[:], spec.steps):
            problems.append(f"{TRAJECTORIES_ZARR}/time: not the stored steps {list(spec.steps)}")
    except (FileNotFoundError, OSError, ValueError) as e:
        problems.append(f"{TRAJECTORIES_ZARR}/time: cannot read the coordinate array ({e})")
    if problems:
        return problems
    present = _present_keys(loc)
    missing = [k for k in chunk_keys(arr, start, stop) if k not in present]
    if missing:
        problems.append(f"{TRAJECTORIES_ZARR}: {len(missing)} chunk(s) of operators [{start}, {stop}) not"
                        f" written, e.g. {missing[:3]}")
    return problems


def covered(root: str | os.PathLike[str], ranges: list[tuple[int, int]]) -> list[bool]:
    """For each operator range [start, stop): are all its chunks written? (one listing of the store)"""
    loc = location(root)
    try:
        arr = open_read(loc)
    except DataError:
        return [False] * len(ranges)
    present = _present_keys(loc)
    return [all(k in present for k in chunk_keys(arr, a, b)) for a, b in ranges]


class ZarrTrajectoryWriter:
    """A shard's rows of the array: buffers an engine batch's stored steps and writes whole chunks.

    ``write_trajectory_step`` has the signature of :meth:`ShardWriter.write_trajectory_step` (rows
    relative to the shard); steps must arrive in order 0, 1, ..., Ts-1 per batch, as the engine calls
    them. Buffering k steps costs what the HDF5 chunk cache costs, and every write covers whole chunks,
    so nothing is ever read back from the store.
    """

    def __init__(self, spec: TrajectoryArray, root: str | os.PathLike[str], shard_start: int, shard_stop: int):
        self.arr = open_for_write(spec, root)
        self.recorded = recorded_location(root)
        self.start, self.stop = shard_start, shard_stop
        self.k, self.ts = self.arr.chunks[2], self.arr.shape[2]
        self._batch: tuple[int, int] | None = None
        self._next = 0
        self._buf: np.ndarray | None = None

    def write_trajectory_step(self, start: int, stored_index: int, x: np.ndarray) -> None:
        """x: [b, M, C, H, W] at stored step ``stored_index`` for shard rows [start, start+b)."""
        b = x.shape[0]
        if self._batch != (start, b) or stored_index == 0:
            if self._next not in (0, self.ts):
                raise RuntimeError(f"trajectory batch at row {self._batch} stopped at step {self._next}")
            self._batch, self._next = (start, b), 0
            if self._buf is None or self._buf.shape[0] != b or self._buf.dtype != x.dtype:
                self._buf = np.empty((b, x.shape[1], self.k, *x.shape[2:]), x.dtype)
        if stored_index != self._next:
            raise RuntimeError(f"stored step {stored_index} arrived, expected {self._next}")
        t0 = stored_index - stored_index % self.k
        self._buf[:, :, stored_index - t0] = x
        self._next += 1
        if self._next % self.k == 0 or self._next == self.ts:
            g = self.start + start
            self.arr[g : g + b, :, t0 : self._next] = self._buf[:, :, : self._next - t0]

    def sync(self) -> None:
        """Make the shard's chunks durable before its HDF5 file is committed.

        Object stores: a PUT is durable when it returns (nothing to do). Local/NFS folders: fsync every
        chunk file and its directory, as the shard file itself is fsynced.
        """
        from zarr.storage import LocalStore

        if self._next not in (0, self.ts):
            raise RuntimeError(f"trajectory batch at row {self._batch} stopped at step {self._next}")
        store = self.arr.store
        if not isinstance(store, LocalStore):
            return
        root = Path(store.root)
        dirs: set[Path] = set()
        for key in chunk_keys(self.arr, self.start, self.stop):
            path = root / key
            fsync_path(path)
            dirs.add(path.parent)
        for d in dirs:
            fsync_path(d)


class ZarrRows:
    """Rows [start, stop) of the array, indexed from 0 like the HDF5 ``/trajectories`` it replaces.

    Supports what the readers use: ``shape``, ``dtype``, ``attrs``, ``chunks`` and ``[...]`` with an int,
    slice or integer list/array per axis (lists are read as an orthogonal selection, as h5py does).
    """

    def __init__(self, arr, start: int, stop: int, loc: str):
        self.arr, self.start, self.stop, self.location = arr, start, stop, loc
        self.shape = (stop - start, *arr.shape[1:])
        self.dtype = np.dtype(arr.dtype)
        self.chunks = tuple(arr.chunks)
        self.attrs = dict(arr.attrs)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def _rows(self, key: Any) -> Any:
        n = self.shape[0]
        if isinstance(key, slice):
            r = range(n)[key]
            if r.step < 0:
                raise IndexError("negative steps are not supported")
            return slice(self.start + r.start, self.start + max(r.start, r.stop), r.step)
        if isinstance(key, int | np.integer):
            i = int(key) + (n if key < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"row {int(key)} out of range for {n} rows")
            return self.start + i
        idx = np.asarray(key, dtype=np.int64)
        idx = np.where(idx < 0, idx + n, idx)
        if ((idx < 0) | (idx >= n)).any():
            raise IndexError(f"rows out of range for {n} rows")
        return idx + self.start

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if not key or (len(key) == 1 and key[0] is Ellipsis):
            key = (slice(None),)
        elif any(k is Ellipsis for k in key):
            raise IndexError("Ellipsis is only supported alone")
        key = (self._rows(key[0]), *key[1:])
        if any(isinstance(k, list | np.ndarray) for k in key):
            return np.asarray(self.arr.oindex[key])
        return np.asarray(self.arr[key])


def file_rows(f) -> tuple[int, int]:
    """Operator rows [start, stop) of the array that an open shard or dataset file covers."""
    if "shard_id" in f.attrs:
        return int(f.attrs["operator_start"]), int(f.attrs["operator_stop"])
    return 0, int(f["operators/index"].shape[0])  # dataset.h5 is sorted by operator index and holds 0..N-1


def open_trajectories(f, h5_path: str | Path):
    """The trajectories of an open shard or dataset file: its ``/trajectories`` dataset, a
    :class:`ZarrRows` over its rows of the Zarr array, or None when trajectories were not stored."""
    if "trajectories" in f:
        return f["trajectories"]
    if ATTR not in f.attrs:
        return None
    loc = resolve(h5_path, f.attrs)
    arr = open_read(loc)
    start, stop = file_rows(f)
    if stop > arr.shape[0]:
        raise DataError(f"{loc}: {arr.shape[0]} operators, the file needs rows up to {stop}")
    return ZarrRows(arr, start, stop, loc)
