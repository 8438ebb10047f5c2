"""Format checker: a shard or dataset file against the spec in docs/dataset-format.md.

The spec is data (``SPEC``) so the checker, ``spinlock info --check`` and the format test all read the
same table. Shapes are written with the symbols of the doc: N operators, P parameters, M realizations,
Ts stored steps, C channels, H=W grid, T' temporal samples, D* feature widths. Every dataset's axes carry
the dimension scales of ``dims.DIMS`` (the names xarray reads). With Zarr trajectories
(``storage.trajectories.format: zarr``) the recorded array is checked too: shape, chunks, dtype, attrs,
and that every chunk of the file's operators is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import yaml

from spinlock.config.loading import config_from_dict, config_hash
from spinlock.errors import DataError
from spinlock.storage import dims, zarrstore
from spinlock.storage.remote import is_remote, local_copy
from spinlock.storage.rows import read_table

# path, shape symbols, dtype kind ("i8" etc. or "str"), required attrs, optional?
SPEC: list[tuple[str, tuple[str, ...], str, tuple[str, ...], bool]] = [
    ("operators/index", ("N",), "int64", (), False),
    ("parameters/unit", ("N", "P"), "float64", ("names",), False),
    ("parameters/values", ("N", "P"), "float64", ("names", "choices"), False),
    ("ics/fields", ("N", "C", "H", "H"), "float32", (), False),
    ("ics/type", ("N",), "str", (), False),
    ("ics/generator", ("N",), "str", (), False),
    ("ics/tier", ("N",), "int8", (), False),
    ("ics/params", ("N",), "str", (), False),
    ("trajectories", ("N", "M", "Ts", "C", "H", "H"), "float16|float32", ("stride", "steps"), True),
    ("status", ("N",), "int8", (), False),
    ("status_step", ("N",), "int32", (), False),
    ("features/initial", ("N", "Di"), "float32", ("names",), False),
    ("features/architecture", ("N", "Da"), "float32", ("names",), False),
    ("features/summary", ("N", "Ds"), "float32", ("names",), False),
    ("features/temporal", ("N", "Tp", "Dt"), "float32", ("names", "steps"), False),
    ("features/initial_learned", ("N", "Dl"), "float32", ("names",), True),
    ("tokens", ("N", "Pt"), "int32", ("names", "stream", "level", "codebook_size"), True),
]
ROOT_ATTRS = ("format_version", "spinlock_version", "seed", "config", "config_hash")
GENERATION_ATTRS = ("device", "precision")  # required from format 1.1 on
DEVICES = ("cpu", "cuda")
VALID_STATUS = (0, 1, 2)


def format_tuple(version: object) -> tuple[int, ...]:
    """``"1.1"`` → (1, 1), for comparing format versions."""
    return tuple(int(x) for x in str(version).split("."))


def _check_generation(attrs: h5py.AttributeManager, cfg) -> list[str]:
    """Root attrs ``device`` and ``precision`` (format ≥ 1.1; 1.0 files predate them and are accepted)."""
    if format_tuple(attrs["format_version"]) < (1, 1):
        return []
    missing = [a for a in GENERATION_ATTRS if a not in attrs]
    if missing:
        return [f"missing root attribute {a!r} (recorded since format 1.1)" for a in missing]
    problems = []
    device, shard = str(attrs["device"]), "shard_id" in attrs
    parts = device.split("+")
    if any(p not in DEVICES for p in parts) or parts != sorted(set(parts)) or (shard and len(parts) > 1):
        want = "cpu or cuda" if shard else "cpu, cuda or cpu+cuda (shards on both)"
        problems.append(f"attrs/device is {device!r}, expected {want}")
    if attrs["precision"] != cfg.simulation.precision:
        problems.append(f"attrs/precision is {attrs['precision']!r} but attrs/config has simulation.precision"
                        f" {cfg.simulation.precision!r}")
    return problems


def _dtype_ok(ds: h5py.Dataset, want: str) -> bool:
    if want == "str":
        return h5py.check_string_dtype(ds.dtype) is not None
    return ds.dtype.name in want.split("|")


def _check_zarr(f: h5py.File, path: Path, cfg) -> list[str]:
    """With ``storage.trajectories.format: zarr``: the recorded array's metadata and this file's chunks."""
    if "trajectories" in f:
        return ["trajectories: an HDF5 dataset although storage.trajectories.format is zarr"]
    if zarrstore.ATTR not in f.attrs:
        return [f"missing root attribute {zarrstore.ATTR!r} (storage.trajectories.format is zarr)"]
    spec = zarrstore.TrajectoryArray.of(cfg.simulation, cfg.storage, config_hash(cfg))
    return zarrstore.check(spec, zarrstore.resolve(path, f.attrs), *zarrstore.file_rows(f))


def check_tokens(ds: h5py.Dataset) -> list[str]:
    """The layout attributes of ``/tokens`` against its width, and every code inside [0, K) of its column."""
    from spinlock.encoding.layout import TokenLayout  # deferred: it imports torch and the quantizer library

    try:
        layout = TokenLayout.from_attrs(ds.attrs, "tokens")
        layout.check(ds[()], "tokens")
    except DataError as e:
        return [str(e)]
    return []


def check_file(path: str | Path) -> list[str]:
    """Problems found in a shard or dataset file (empty list = conforms)."""
    problems: list[str] = []
    if is_remote(path):
        path = local_copy(path)  # fetched to the node's cache
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        return [f"cannot open {path}: {e}"]
    with f:
        for a in ROOT_ATTRS:
            if a not in f.attrs:
                problems.append(f"missing root attribute {a!r}")
        if problems:
            return problems
        try:
            cfg = config_from_dict(yaml.safe_load(f.attrs["config"]), f"{path}:attrs/config")
        except Exception as e:  # noqa: BLE001 - reported as a format problem
            return [f"attrs/config does not validate: {e}"]
        if f.attrs["config_hash"] != config_hash(cfg):
            problems.append("attrs/config_hash does not match attrs/config")
        try:
            problems += _check_generation(f.attrs, cfg)
        except ValueError:
            problems.append(f"attrs/format_version {f.attrs['format_version']!r} is not a version number")
        if "operators/index" not in f:
            return [*problems, "missing dataset 'operators/index'"]
        sim = cfg.simulation
        sizes: dict[str, int] = {
            "N": f["operators/index"].shape[0], "P": len(cfg.parameters), "M": sim.realizations,
            "Ts": cfg.stored_steps, "C": sim.channels, "H": sim.grid,
        }
        zarr = cfg.storage.trajectories.format == "zarr"
        for path_, symbols, dtype, attrs, optional in SPEC:
            if path_ not in f:
                if not optional or (path_ == "trajectories" and cfg.storage.trajectories.store and not zarr):
                    problems.append(f"missing dataset {path_!r}")
                continue
            ds = f[path_]
            if len(ds.shape) != len(symbols):
                problems.append(f"{path_}: rank {len(ds.shape)}, expected {len(symbols)} ({', '.join(symbols)})")
                continue
            for sym, got in zip(symbols, ds.shape, strict=True):
                want = sizes.setdefault(sym, got)
                if want != got:
                    problems.append(f"{path_}: axis {sym} = {got}, expected {want}")
            if not _dtype_ok(ds, dtype):
                problems.append(f"{path_}: dtype {ds.dtype}, expected {dtype}")
            if (named := dims.names(ds)) != dims.DIMS[path_]:
                problems.append(f"{path_}: dimension scales {named}, expected {dims.DIMS[path_]}")
            for a in attrs:
                if a not in ds.attrs:
                    problems.append(f"{path_}: missing attribute {a!r}")
            if "names" in ds.attrs:
                names = [str(x) for x in ds.attrs["names"]]
                if len(names) != ds.shape[-1]:
                    problems.append(f"{path_}: {len(names)} names for {ds.shape[-1]} columns")
                if len(set(names)) != len(names):
                    problems.append(f"{path_}: column names are not unique")
        if zarr:
            problems += _check_zarr(f, Path(path), cfg)
        if not problems:
            idx = read_table(f["operators/index"])
            if len(np.unique(idx)) != len(idx):
                problems.append("operators/index has duplicates")
            st = read_table(f["status"])
            bad = sorted(set(np.unique(st).tolist()) - set(VALID_STATUS))
            if bad:
                problems.append(f"status has undefined codes {bad}")
            try:
                json.loads(f["parameters/values"].attrs["choices"])
            except (ValueError, TypeError):
                problems.append("parameters/values attribute 'choices' is not JSON")
            if "tokens" in f:
                problems += check_tokens(f["tokens"])
    return problems
