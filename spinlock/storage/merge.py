"""Merge complete shards into ``dataset.h5``: virtual datasets (metadata only) or a full copy.

Virtual datasets point at the shard files by *relative* path (``shards/shard-NNNNN.h5``), so an output
folder can be moved or copied as a whole. String datasets (IC labels) are always copied: they are tiny.
Before writing, the merge checks that every planned shard is complete and that every operator index
appears exactly once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from spinlock.config.loading import config_hash
from spinlock.config.models import RunConfig
from spinlock.errors import DataError
from spinlock.storage.layout import DATASET_FILE, LARGE, SHARDS_DIR, compression_kwargs, shard_name, shard_path
from spinlock.storage.shard import shard_state

PROVENANCE_ATTRS = ("format_version", "spinlock_version", "seed", "config", "config_hash")


def _datasets(f: h5py.File) -> list[str]:
    out: list[str] = []
    f.visititems(lambda name, obj: out.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(out)


def check_indices(indices: np.ndarray, n: int) -> None:
    """Every operator index 0..n-1 exactly once, or a DataError naming what is wrong."""
    counts = np.bincount(indices[(indices >= 0) & (indices < n)], minlength=n)
    missing = np.flatnonzero(counts == 0)
    dup = np.flatnonzero(counts > 1)
    bad = indices[(indices < 0) | (indices >= n)]
    if missing.size or dup.size or bad.size:
        raise DataError(
            f"merge: operator indices are not a permutation of 0..{n - 1}: missing {missing[:10].tolist()}"
            f"{'...' if missing.size > 10 else ''} ({missing.size}), duplicated {dup[:10].tolist()} ({dup.size}),"
            f" out of range {bad[:10].tolist()}"
        )


def merge_shards(cfg: RunConfig, out_dir: str | Path, mode: str | None = None) -> Path:
    """Write ``out_dir/dataset.h5`` from the shards of the plan; returns its path."""
    from spinlock.generate import plan_shards
    from spinlock.sampling.metrics import stratification_metrics
    from spinlock.sampling.space import all_unit_points

    out = Path(out_dir)
    mode = mode or cfg.storage.merge
    specs = plan_shards(cfg)
    bad = {s.shard_id: st for s in specs if (st := shard_state(shard_path(out, s.shard_id), cfg)) != "complete"}
    if bad:
        listed = ", ".join(f"{shard_name(k)} ({v})" for k, v in list(bad.items())[:10])
        raise DataError(f"merge: {len(bad)} shard(s) not complete: {listed}")
    n = cfg.simulation.num_operators
    indices, rows = [], []
    strings: dict[str, list[np.ndarray]] = {}  # tiny per-operator labels, read in the same pass
    for s in specs:
        with h5py.File(shard_path(out, s.shard_id), "r") as f:
            idx = f["operators/index"][()]
            if not strings:
                strings = {k: [] for k in _datasets(f) if h5py.check_string_dtype(f[k].dtype) is not None}
            for name, parts in strings.items():
                parts.append(f[name][()])
        indices.append(idx)
        rows.append(len(idx))
    check_indices(np.concatenate(indices), n)

    first = shard_path(out, specs[0].shard_id)
    target = out / DATASET_FILE
    tmp = target.with_name(target.name + ".tmp")
    with h5py.File(first, "r") as f0, h5py.File(tmp, "w") as g:
        for k in PROVENANCE_ATTRS:
            g.attrs[k] = f0.attrs[k]
        if f0.attrs["config_hash"] != config_hash(cfg):
            raise DataError(f"merge: {first} was written by a different config")
        g.attrs["num_shards"] = len(specs)
        g.attrs["merge"] = mode
        for name in _datasets(f0):
            src = f0[name]
            shape = (n, *src.shape[1:])
            is_str = h5py.check_string_dtype(src.dtype) is not None
            if mode == "virtual" and not is_str:
                layout = h5py.VirtualLayout(shape=shape, dtype=src.dtype)
                start = 0
                for s, r in zip(specs, rows, strict=True):
                    rel = f"{SHARDS_DIR}/{shard_name(s.shard_id)}"
                    layout[start : start + r] = h5py.VirtualSource(rel, name, shape=(r, *src.shape[1:]))
                    start += r
                ds = g.create_virtual_dataset(name, layout, fillvalue=None)
            elif is_str:
                ds = g.create_dataset(name, data=np.concatenate(strings[name]), dtype=src.dtype)
            else:
                comp = compression_kwargs(cfg.storage.codec, cfg.storage.level) if name in LARGE else {}
                ds = g.create_dataset(name, shape, dtype=src.dtype, chunks=src.chunks, **comp)
                start = 0
                for s, r in zip(specs, rows, strict=True):
                    with h5py.File(shard_path(out, s.shard_id), "r") as fs:
                        if src.chunks and src.ndim > 2:
                            for i in range(r):  # bounded memory for trajectories
                                ds[start + i] = fs[name][i]
                        else:
                            ds[start : start + r] = fs[name][()]
                    start += r
            for k, v in src.attrs.items():
                ds.attrs[k] = v
        g["parameters"].attrs["stratification"] = json.dumps(stratification_metrics(all_unit_points(cfg)))
    os.replace(tmp, target)
    return target
