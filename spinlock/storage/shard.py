"""Shard files: written to a temporary (``NAME.<random>.tmp``), marked complete, fsynced and renamed into place.

A file at the final path is either complete or absent, so a crash can never leave a half-written shard
that looks finished; reruns skip complete shards (same config hash) and regenerate everything else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from spinlock import FORMAT_VERSION, __version__
from spinlock.config.models import SimulationConfig, StorageConfig
from spinlock.storage import dims
from spinlock.storage.durable import durable_replace, temp_files, temp_path
from spinlock.storage.layout import compression_kwargs, trajectory_chunk_steps

if TYPE_CHECKING:
    from spinlock.storage.zarrstore import ZarrTrajectoryWriter

STR = h5py.string_dtype()


class ShardWriter:
    """Creates every dataset up front (shapes known from the config) and fills rows batch by batch."""

    def __init__(
        self,
        path: Path,
        shard_id: int,
        indices: np.ndarray,
        *,
        sim: SimulationConfig,
        storage: StorageConfig,
        seed: int,
        config: str,
        config_hash: str,
        param_names: tuple[str, ...],
        choices_json: str,
        feature_names: dict[str, tuple[str, ...]],
        temporal_steps: list[int],
        trajectories: ZarrTrajectoryWriter | None = None,
        device: str,
    ):
        """``sim``/``storage``: the run's sections that fix the datasets' shapes, dtypes and codec.

        ``seed``, ``config`` (the run's YAML) and ``config_hash``: the provenance in the root attrs, which
        resume and merge match against.

        ``trajectories``: with ``storage.trajectories.format: zarr``, the writer of this shard's rows of
        the Zarr array; the file then records its location instead of holding /trajectories.

        ``device``: the device type the rollouts run on (``cpu``/``cuda``), recorded with the precision
        in the root attrs so that replay knows whether a bit-exact comparison is possible."""
        self.path = Path(path)
        self.tmp = temp_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        st = storage
        stored = list(range(0, sim.steps + 1, st.trajectories.stride))
        n, C, H = len(indices), sim.channels, sim.grid
        M, Ts = sim.realizations, len(stored)
        self.n, self.zarr = n, trajectories
        frame = C * H * H * np.dtype(st.trajectories.dtype).itemsize
        self.ts_chunk = trajectory_chunk_steps(frame, Ts)
        cache = max(64 << 20, int(1.5 * sim.batch_operators * M * frame * self.ts_chunk))
        self.f = h5py.File(self.tmp, "w", rdcc_nbytes=cache, rdcc_nslots=100_003)
        f = self.f
        f.attrs.update(
            format_version=FORMAT_VERSION, spinlock_version=__version__, seed=seed,
            config=config, config_hash=config_hash, shard_id=shard_id,
            operator_start=int(indices[0]) if n else 0, operator_stop=int(indices[-1]) + 1 if n else 0,
            complete=False, device=device, precision=sim.precision,
        )
        comp = compression_kwargs(st.codec, st.level)
        f.create_dataset("operators/index", data=np.asarray(indices, np.int64))
        P = len(param_names)
        for name in ("unit", "values"):
            d = f.create_dataset(f"parameters/{name}", (n, P), np.float64)
            d.attrs["names"] = list(param_names)
        f["parameters/values"].attrs["choices"] = choices_json
        f.create_dataset("ics/fields", (n, C, H, H), np.float32, chunks=(1, C, H, H), **comp)
        f.create_dataset("ics/type", (n,), STR)
        f.create_dataset("ics/generator", (n,), STR)
        f.create_dataset("ics/tier", (n,), np.int8)
        f.create_dataset("ics/params", (n,), STR)
        if trajectories is not None:
            f.attrs["trajectories_store"] = trajectories.recorded
        elif st.trajectories.store:
            d = f.create_dataset(
                "trajectories", (n, M, Ts, C, H, H), np.dtype(st.trajectories.dtype),
                chunks=(1, 1, self.ts_chunk, C, H, H), **comp,
            )
            d.attrs["stride"] = st.trajectories.stride
            d.attrs["steps"] = stored
        f.create_dataset("status", (n,), np.int8)
        f.create_dataset("status_step", (n,), np.int32)
        for fam, names in feature_names.items():
            shape = (n, len(temporal_steps), len(names)) if fam == "temporal" else (n, len(names))
            d = f.create_dataset(f"features/{fam}", shape, np.float32)
            d.attrs["names"] = list(names)
            if fam == "temporal":
                d.attrs["steps"] = temporal_steps
        dims.attach_all(f)  # named axes for xarray/netCDF readers (docs/dataset-format.md)

    def write_rows(self, start: int, **arrays: Any) -> None:
        """Write rows [start, start+len) of the named datasets (keys use '__' for '/')."""
        for key, value in arrays.items():
            ds = self.f[key.replace("__", "/")]
            ds[start : start + len(value)] = value

    def write_features(self, start: int, blocks: dict[str, Any]) -> None:
        """Write FeatureBlocks (names must match the datasets created from the registry)."""
        for fam, block in blocks.items():
            ds = self.f[f"features/{fam}"]
            if tuple(ds.attrs["names"]) != tuple(block.names):
                raise RuntimeError(f"feature names of {fam!r} differ from the registry")
            ds[start : start + len(block.values)] = block.values
            for k, v in block.attrs.items():
                ds.attrs[k] = v

    def write_trajectory_step(self, start: int, stored_index: int, x: np.ndarray) -> None:
        """x: [b, M, C, H, W] state at stored step ``stored_index`` for rows [start, start+b)."""
        if self.zarr is not None:
            self.zarr.write_trajectory_step(start, stored_index, x)
            return
        self.f["trajectories"][start : start + x.shape[0], :, stored_index] = x

    def commit(self, extra_attrs: dict[str, Any] | None = None) -> None:
        """Mark complete, flush, fsync and atomically rename to the final path.

        Zarr trajectory chunks are made durable first: a committed shard implies its chunks exist."""
        if self.zarr is not None:
            self.zarr.sync()
        if extra_attrs:
            self.f.attrs.update(extra_attrs)
        self.f.attrs["complete"] = True
        self.f.flush()
        self.f.close()
        durable_replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.f.close()
        finally:
            self.tmp.unlink(missing_ok=True)


# per-operator string labels (the "str" rows of checker.SPEC): the merge copies them into dataset.h5 even
# when the rest is virtual, so it reads them in the same single open that verifies the shard
STRING_DATASETS = ("ics/type", "ics/generator", "ics/params")
ROW_CHECKED = ("status", "ics/fields")  # row counts checked besides operators/index and the string datasets
_STR_TYPE = h5py.h5t.py_create(STR)
_BOOL_TYPE = h5py.h5t.py_create(np.dtype(bool))


@dataclass(frozen=True)
class ShardInfo:
    """What the merge needs from one verified, complete shard, so that it never has to reopen the file.

    ``stat`` is (inode, size, mtime_ns) when it was read: a file replaced or changed since is verified again.
    """

    path: Path
    index: np.ndarray  # operators/index as stored
    labels: dict[str, np.ndarray]  # STRING_DATASETS -> object arrays of bytes (empty if not read)
    stat: tuple[int, int, int]
    device: str | None = None  # root attr ``device``; None in files written before it was recorded

    @property
    def rows(self) -> int:
        return len(self.index)

    def unchanged(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_ino, st.st_size, st.st_mtime_ns) == self.stat


def _read_attr(fid: h5py.h5f.FileID, name: bytes, like: np.dtype, mtype: h5py.h5t.TypeID) -> Any:
    """A scalar root attribute (str for strings), or None if absent.

    Read as the type the writer uses (``like``/``mtype``: asking h5py for the stored type costs more than
    the read); a differently stored attribute is then read as its stored type.
    """
    try:
        a = h5py.h5a.open(fid, name)
    except KeyError:
        return None
    buf = np.empty((), like)
    try:
        a.read(buf, mtype=mtype)
    except (OSError, ValueError, TypeError):
        buf = np.empty(a.shape, a.dtype)
        a.read(buf, mtype=h5py.h5t.py_create(a.dtype))
    value = buf[()]
    return value.decode() if isinstance(value, bytes) else value


def _read_all(d: h5py.h5d.DatasetID, dtype: np.dtype, mtype: h5py.h5t.TypeID | None = None) -> np.ndarray:
    buf = np.empty(d.shape, dtype)
    d.read(h5py.h5s.ALL, h5py.h5s.ALL, buf, mtype=mtype)
    return buf


def inspect_shard(path: Path, cfg_hash: str, labels: bool = True) -> ShardInfo | str:
    """A :class:`ShardInfo` for a complete shard of the run with hash ``cfg_hash``, else its state string.

    One open with low-level h5py calls, because merge and resume visit every shard and the high-level
    API (File, attrs, Dataset objects) costs several times more per shard: completeness, config hash,
    operator indices, row counts of ``ROW_CHECKED`` and of the string datasets, whose values (which the
    merge copies) are read with ``labels``. The state never depends on ``labels``.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "partial" if temp_files(path) else "missing"
    except OSError as e:
        return f"corrupt: {e}"
    try:
        fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY)
    except OSError as e:
        return f"corrupt: {e}"
    try:
        if not bool(_read_attr(fid, b"complete", np.dtype(bool), _BOOL_TYPE)):
            return "corrupt: not marked complete"
        if (got := _read_attr(fid, b"config_hash", STR, _STR_TYPE)) != cfg_hash:
            return f"mismatch: config hash {got} != {cfg_hash}"
        d = h5py.h5d.open(fid, b"operators/index")
        if d.get_type().get_class() != h5py.h5t.INTEGER or len(d.shape) != 1:
            return f"corrupt: operators/index is not a 1-d integer dataset ({d.dtype}, shape {d.shape})"
        index = _read_all(d, np.dtype(np.int64))
        n = len(index)
        for key in ROW_CHECKED:
            rows = h5py.h5d.open(fid, key.encode()).shape[:1]
            if rows != (n,):
                return f"corrupt: {key} has {rows[0] if rows else 0} rows, expected {n}"
        strings: dict[str, np.ndarray] = {}
        for key in STRING_DATASETS:  # checked even when not read: the state must not depend on ``labels``
            d = h5py.h5d.open(fid, key.encode())
            if d.shape != (n,):
                return f"corrupt: {key} has shape {d.shape}, expected ({n},)"
            if labels:
                strings[key] = _read_all(d, np.dtype(object), _STR_TYPE)
        device = _read_attr(fid, b"device", STR, _STR_TYPE)
    except (OSError, KeyError, ValueError, TypeError) as e:
        return f"corrupt: {e}"
    finally:
        fid.close()
    return ShardInfo(path, index, strings, (st.st_ino, st.st_size, st.st_mtime_ns), device)

