"""Paths and codecs shared by the writer, merge and reader (docs/dataset-format.md is the spec)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spinlock.config.models import RunConfig

SHARDS_DIR = "shards"
FEATURES_DIR = "features"
DATASET_FILE = "dataset.h5"
CONFIG_FILE = "config.yaml"
FEATURE_FAMILIES = ("initial", "architecture", "summary", "temporal")
TRAJECTORIES_ZARR = "trajectories.zarr"  # storage.trajectories.format: zarr

# per-operator datasets: path -> (row axis is always 0). Large ones are chunked + compressed.
LARGE = ("ics/fields", "trajectories")


def shard_name(shard_id: int) -> str:
    return f"shard-{shard_id:05d}.h5"


def shard_path(out_dir: str | Path, shard_id: int) -> Path:
    return Path(out_dir) / SHARDS_DIR / shard_name(shard_id)


def parquet_path(out_dir: str | Path, shard_id: int) -> Path:
    return Path(out_dir) / FEATURES_DIR / f"shard-{shard_id:05d}.parquet"


def compression_kwargs(codec: str, level: int) -> dict[str, Any]:
    """h5py create_dataset kwargs for a codec name (Blosc codecs come from hdf5plugin)."""
    if codec == "none":
        return {}
    if codec == "gzip":
        return {"compression": "gzip", "compression_opts": level}
    import hdf5plugin

    return dict(hdf5plugin.Blosc(cname=codec, clevel=level, shuffle=hdf5plugin.Blosc.SHUFFLE))


def trajectory_chunk_steps(cfg: RunConfig) -> int:
    """Stored steps per trajectory chunk: ~1 MiB chunks of (1 operator, 1 realization, k steps)."""
    sim, st = cfg.simulation, cfg.storage.trajectories
    frame = sim.channels * sim.grid * sim.grid * (2 if st.dtype == "float16" else 4)
    return int(max(1, min(cfg.stored_steps, (1 << 20) // frame)))
