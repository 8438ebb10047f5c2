"""Shard files: written to ``*.tmp``, marked complete, fsynced and renamed into place.

A file at the final path is either complete or absent, so a crash can never leave a half-written shard
that looks finished; reruns skip complete shards (same config hash) and regenerate everything else.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from spinlock import FORMAT_VERSION, __version__
from spinlock.config.loading import config_hash, dump_config
from spinlock.config.models import RunConfig
from spinlock.errors import DataError
from spinlock.storage.layout import compression_kwargs

STR = h5py.string_dtype()


class ShardWriter:
    """Creates every dataset up front (shapes known from the config) and fills rows batch by batch."""

    def __init__(
        self,
        path: Path,
        cfg: RunConfig,
        shard_id: int,
        indices: np.ndarray,
        param_names: tuple[str, ...],
        choices_json: str,
        feature_names: dict[str, tuple[str, ...]],
        temporal_steps: list[int],
    ):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sim, st = cfg.simulation, cfg.storage
        n, C, H = len(indices), sim.channels, sim.grid
        M, Ts = sim.realizations, cfg.stored_steps
        self.cfg, self.n = cfg, n
        frame = C * H * H * (2 if st.trajectories.dtype == "float16" else 4)
        self.ts_chunk = int(max(1, min(Ts, (1 << 20) // frame)))
        cache = max(64 << 20, int(1.5 * sim.batch_operators * M * frame * self.ts_chunk))
        self.f = h5py.File(self.tmp, "w", rdcc_nbytes=cache, rdcc_nslots=100_003)
        f = self.f
        f.attrs.update(
            format_version=FORMAT_VERSION, spinlock_version=__version__, seed=cfg.seed,
            config=dump_config(cfg), config_hash=config_hash(cfg), shard_id=shard_id,
            operator_start=int(indices[0]) if n else 0, operator_stop=int(indices[-1]) + 1 if n else 0,
            complete=False,
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
        if st.trajectories.store:
            d = f.create_dataset(
                "trajectories", (n, M, Ts, C, H, H), np.dtype(st.trajectories.dtype),
                chunks=(1, 1, self.ts_chunk, C, H, H), **comp,
            )
            d.attrs["stride"] = st.trajectories.stride
            d.attrs["steps"] = list(range(0, sim.steps + 1, st.trajectories.stride))
        f.create_dataset("status", (n,), np.int8)
        f.create_dataset("status_step", (n,), np.int32)
        for fam, names in feature_names.items():
            shape = (n, len(temporal_steps), len(names)) if fam == "temporal" else (n, len(names))
            d = f.create_dataset(f"features/{fam}", shape, np.float32)
            d.attrs["names"] = list(names)
            if fam == "temporal":
                d.attrs["steps"] = temporal_steps

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
        self.f["trajectories"][start : start + x.shape[0], :, stored_index] = x

    def commit(self, extra_attrs: dict[str, Any] | None = None) -> None:
        """Mark complete, flush, fsync and atomically rename to the final path."""
        if extra_attrs:
            self.f.attrs.update(extra_attrs)
        self.f.attrs["complete"] = True
        self.f.flush()
        self.f.close()
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def abort(self) -> None:
        try:
            self.f.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def shard_state(path: Path, cfg: RunConfig) -> str:
    """``complete`` | ``missing`` | ``partial`` (tmp only) | ``corrupt: why`` | ``mismatch: why``."""
    path = Path(path)
    if not path.exists():
        return "partial" if path.with_name(path.name + ".tmp").exists() else "missing"
    try:
        with h5py.File(path, "r") as f:
            if not bool(f.attrs.get("complete", False)):
                return "corrupt: not marked complete"
            if f.attrs.get("config_hash") != config_hash(cfg):
                return f"mismatch: config hash {f.attrs.get('config_hash')} != {config_hash(cfg)}"
            n = f["operators/index"].shape[0]
            for key in ("status", "ics/fields"):
                if f[key].shape[0] != n:
                    return f"corrupt: {key} has {f[key].shape[0]} rows, expected {n}"
    except (OSError, KeyError) as e:
        return f"corrupt: {e}"
    return "complete"


def read_shard_summary(path: Path) -> dict[str, Any]:
    """Small summary stored in a complete shard's attrs (for resume bookkeeping)."""
    with h5py.File(path, "r") as f:
        raw = f.attrs.get("summary")
        if raw is None:
            raise DataError(f"{path}: no summary attribute")
        return json.loads(raw)
