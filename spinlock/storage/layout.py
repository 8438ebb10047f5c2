"""The run folder's names, the format's codes and codecs: one home for what writers and readers share.

docs/dataset-format.md is the spec. Every file and folder name of ``OUT/``, the ``/status`` codes and
the feature-family tuples are defined here and imported everywhere else; this module imports nothing
from spinlock at run time, so any layer may use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hdf5plugin

# ---- OUT/ ---------------------------------------------------------------------------------------
DATASET_FILE = "dataset.h5"
CONFIG_FILE = "config.yaml"
SHARDS_DIR = "shards"
"""One HDF5 file per shard (:func:`shard_name`)."""
FEATURES_DIR = "features"
"""One Parquet feature table per shard (:func:`parquet_path`)."""
FEATURE_TABLE_GLOB = "shard-*.parquet"
"""Matches every feature table name in :data:`FEATURES_DIR`."""
TRAJECTORIES_ZARR = "trajectories.zarr"  # storage.trajectories.format: zarr
TOKENS_FILE = "tokens.parquet"
TOKENIZER_DIR = "tokenizer"
REPORT_DIR = "report"
TOKENIZER_DIGEST_ATTR = "tokenizer_digest"
"""``/tokens`` attribute: the digest of the tokenizer that wrote them (``Tokenizer.digest``)."""
SEARCH_DIR = "search"
"""Nearest-behaviour search index and projection per token depth, built at the first query (a cache)."""

# ---- OUT/tokenizer/ (spinlock.encoding.tokenizer writes the first four, the tokenize stage the rest) --
META_FILE = "tokenizer.json"
CLEANING_FILE = "cleaning.npz"
CATEGORIES_FILE = "categories.json"
MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
FRONTIER_FILE = "frontier.json"
"""The report's tokenizer-vs-PCA + PQ frontier, kept once measured (``spinlock.encoding.frontier``)."""

# ---- inside the files --------------------------------------------------------------------------------
STATUS_OK = 0
STATUS_DIVERGED = 1
STATUS_FAULT = 2  # a non-finite value the dynamics did not cause (noise, IC or feature): a bug, not behaviour
STATUS_NAMES = {STATUS_OK: "ok", STATUS_DIVERGED: "diverged", STATUS_FAULT: "fault"}
"""``/status`` codes (set by :mod:`spinlock.rollout.engine`) and their names."""
SCALAR_FAMILIES = ("initial", "architecture", "summary")
"""Feature families of one [D] vector per operator, in column order."""
TEMPORAL_FAMILY = "temporal"
"""The family of [T', D] curves per operator."""
FEATURE_FAMILIES = (*SCALAR_FAMILIES, TEMPORAL_FAMILY)
"""The families generation stores (``/features/<family>``)."""
LEARNED_FAMILY = "initial_learned"
"""``/features/initial_learned``: written by the tokenizer stage, not by generation."""

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
    return dict(hdf5plugin.Blosc(cname=codec, clevel=level, shuffle=hdf5plugin.Blosc.SHUFFLE))


def trajectory_chunk_steps(frame_bytes: int, stored_steps: int) -> int:
    """Stored steps per trajectory chunk: ~1 MiB chunks of (1 operator, 1 realization, k steps), a step being
    one [C, H, W] state of ``frame_bytes``."""
    return int(max(1, min(stored_steps, (1 << 20) // frame_bytes)))
