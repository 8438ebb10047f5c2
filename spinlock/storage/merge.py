"""Merge complete shards into ``dataset.h5``: virtual datasets (metadata only) or a full copy.

Virtual datasets point at the shard files by *relative* path (``shards/shard-NNNNN.h5``), so an output
folder can be moved or copied as a whole. String datasets (IC labels) are always copied: they are tiny.
Before writing, the merge checks that every planned shard is complete and that every operator index
appears exactly once; each shard is verified with a single low-level open (``inspect_shard``), or not
at all when the resume scan of this run already read it and the file is unchanged. Zarr trajectories
(``storage.trajectories.format: zarr``) stay where they are: dataset.h5 records their location (attr
``trajectories_store``) once every chunk is found written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from spinlock.config.loading import config_hash
from spinlock.config.models import RunConfig
from spinlock.errors import DataError
from spinlock.generate import design, plan_shards
from spinlock.sampling.metrics import stratification_metrics
from spinlock.sampling.space import all_unit_points
from spinlock.storage import dims, zarrstore
from spinlock.storage.durable import durable_replace
from spinlock.storage.layout import DATASET_FILE, LARGE, SHARDS_DIR, compression_kwargs, shard_name, shard_path
from spinlock.storage.shard import STRING_DATASETS, ShardInfo, inspect_shard

PROVENANCE_ATTRS = ("format_version", "spinlock_version", "seed", "config", "config_hash")


def merged_device(devices: set[str]) -> str:
    """dataset.h5's ``device``: the shards' common device type, or their sorted set joined by '+'
    (``cpu+cuda``) when a run was resumed or distributed over machines of different kinds."""
    return "+".join(sorted(devices))


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


def verified_shards(cfg: RunConfig, out_dir: str | Path, known: Mapping[int, ShardInfo] | None = None
                    ) -> list[ShardInfo]:
    """ShardInfo of every planned shard in plan order; DataError naming the incomplete ones.

    ``known``: infos already read this run (``pending_shards``) are reused while their file is unchanged,
    so a resumed run opens each shard once, not twice. Others are read with one open each.
    """
    out, chash, known = Path(out_dir), config_hash(cfg), known or {}
    infos: list[ShardInfo] = []
    bad: dict[int, str] = {}
    for s in plan_shards(cfg):
        path = shard_path(out, s.shard_id)
        info = known.get(s.shard_id)
        if info is None or info.path != path or not info.labels or not info.unchanged():
            info = inspect_shard(path, chash)
        if isinstance(info, str):
            bad[s.shard_id] = info
        else:
            infos.append(info)
    if bad:
        listed = ", ".join(f"{shard_name(k)} ({v})" for k, v in list(bad.items())[:10])
        raise DataError(f"merge: {len(bad)} shard(s) not complete: {listed}")
    return infos


def _virtual_layout(name: str, shape: tuple[int, ...], dtype: np.dtype, sources: list[tuple[bytes, int]]
                    ) -> h5py.VirtualLayout:
    """Map consecutive row blocks of ``name`` to (relative file, rows) ``sources`` in order.

    The same mappings as ``layout[a:b] = VirtualSource(...)``, built with low-level calls: that path
    makes h5py selection objects for every mapping, and a merge makes one per shard and dataset.
    """
    layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
    vspace = h5py.h5s.create_simple(shape)
    tail = shape[1:]
    origin = (0,) * len(tail)
    src_spaces: dict[int, h5py.h5s.SpaceID] = {}  # one per distinct row count (set_virtual copies)
    key = name.encode()
    start = 0
    for rel, r in sources:
        if r and 0 not in tail:
            if r not in src_spaces:
                src_spaces[r] = h5py.h5s.create_simple((r, *tail))
            vspace.select_hyperslab((start, *origin), (r, *tail))
            layout.dcpl.set_virtual(vspace, rel, key, src_spaces[r])
        start += r
    return layout


def merge_shards(cfg: RunConfig, out_dir: str | Path, mode: str | None = None,
                 shards: Mapping[int, ShardInfo] | None = None) -> Path:
    """Write ``out_dir/dataset.h5`` from the shards of the plan; returns its path.

    ``shards``: per-shard infos already verified this run (see :func:`verified_shards`).
    """
    out = Path(out_dir)
    mode = mode or cfg.storage.merge
    specs = plan_shards(cfg)
    infos = verified_shards(cfg, out, shards)  # one open per shard (none for reused infos)
    n = cfg.simulation.num_operators
    index = np.concatenate([i.index for i in infos])
    check_indices(index, n)
    rows = [i.rows for i in infos]
    sources = [(f"{SHARDS_DIR}/{shard_name(s.shard_id)}".encode(), r) for s, r in zip(specs, rows, strict=True)]
    copies: list[tuple[str, h5py.Dataset]] = []  # copy mode: filled shard by shard below

    first = shard_path(out, specs[0].shard_id)
    target = out / DATASET_FILE
    tmp = target.with_name(target.name + ".tmp")
    with h5py.File(first, "r") as f0, h5py.File(tmp, "w") as g:
        for k in PROVENANCE_ATTRS:
            g.attrs[k] = f0.attrs[k]
        if f0.attrs["config_hash"] != config_hash(cfg):
            raise DataError(f"merge: {first} was written by a different config")
        if "precision" in f0.attrs:  # one config hash: every shard ran in this precision
            g.attrs["precision"] = f0.attrs["precision"]
        if None not in (devices := {i.device for i in infos}):  # shards may have run on different devices
            g.attrs["device"] = merged_device(devices)
        g.attrs["num_shards"] = len(specs)
        g.attrs["merge"] = mode
        if "trajectories_store" in f0.attrs:  # Zarr trajectories: record where, refuse missing chunks
            g.attrs["trajectories_store"] = f0.attrs["trajectories_store"]
            loc = zarrstore.resolve(target, g.attrs)
            spec = zarrstore.TrajectoryArray.of(cfg.simulation, cfg.storage, config_hash(cfg))
            if problems := zarrstore.check(spec, loc, 0, n):
                raise DataError(f"merge: {'; '.join(problems)}")
            zarrstore.consolidate(loc)
        for name in _datasets(f0):
            if name in dims.SCALE_PATHS:  # dimension scales are made for the merged file below
                continue
            src = f0[name]
            shape = (n, *src.shape[1:])
            is_str = h5py.check_string_dtype(src.dtype) is not None
            if is_str != (name in STRING_DATASETS):
                raise DataError(f"merge: {first}:{name} is {'' if is_str else 'not '}a string dataset;"
                                f" the format's string datasets are {STRING_DATASETS}")
            if is_str:  # read by verified_shards
                ds = g.create_dataset(name, data=np.concatenate([i.labels[name] for i in infos]), dtype=src.dtype)
            elif mode == "virtual":
                ds = g.create_virtual_dataset(name, _virtual_layout(name, shape, src.dtype, sources), fillvalue=None)
            else:
                comp = compression_kwargs(cfg.storage.codec, cfg.storage.level) if name in LARGE else {}
                ds = g.create_dataset(name, shape, dtype=src.dtype, chunks=src.chunks, **comp)
                copies.append((name, ds))
            for k, v in src.attrs.items():
                if k not in dims.SCALE_ATTRS:  # object references into the shard
                    ds.attrs[k] = v
        start = 0
        for info in infos if copies else ():  # each shard opened once for all its datasets
            with h5py.File(info.path, "r") as fs:
                for name, ds in copies:
                    if ds.chunks and ds.ndim > 2:
                        for i in range(info.rows):  # bounded memory for trajectories
                            ds[start + i] = fs[name][i]
                    else:
                        ds[start : start + info.rows] = fs[name][()]
            start += info.rows
        dims.attach_all(g, {"operator": index})  # not read back through the virtual datasets
        g["parameters"].attrs["stratification"] = json.dumps(stratification_metrics(all_unit_points(design(cfg))))
    durable_replace(tmp, target)
    return target
