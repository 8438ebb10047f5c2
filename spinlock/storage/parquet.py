"""Per-shard Parquet feature tables (the input Ray Data streams into the tokenizer).

Columns: ``operator_index`` int64, ``status`` int8, ``ic_type`` string, ``census`` string (the behaviour
class, ``spinlock.features.census``), one column ``param.<name>`` per sampled parameter (so pandas/polars
users group by them: a choice as its value's text, dictionary-encoded with the configured values in order;
a boolean as bool; integers and reals float64, as ``/parameters/values``), one float32 column per feature
named ``<family>.<name>`` for initial/architecture/summary, and ``temporal.<name>`` as fixed-size
list<float32>[T'] columns. Schema metadata ``spinlock`` = JSON {"names": {family: [...]}, "temporal_steps": [...]}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from spinlock.features.census import NAMES as CENSUS_NAMES
from spinlock.storage.durable import durable_replace, temp_path
from spinlock.storage.layout import SCALAR_FAMILIES
from spinlock.storage.reader import read_census


def _label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def parameter_columns(f: h5py.File) -> dict[str, pa.Array]:
    """``param.<name>`` columns from ``/parameters/values`` of an open shard (types from its config)."""
    ds = f["parameters/values"]
    values = ds[()]
    choices = json.loads(ds.attrs["choices"])
    types = {n: spec["type"] for n, spec in (yaml.safe_load(f.attrs["config"])["parameters"] or {}).items()}
    cols: dict[str, pa.Array] = {}
    for j, name in enumerate(str(n) for n in ds.attrs["names"]):
        v = values[:, j]
        if name in choices:
            labels = pa.array([_label(c) for c in choices[name]], pa.string())
            cols[f"param.{name}"] = pa.DictionaryArray.from_arrays(pa.array(v.astype(np.int32)), labels)
        elif types.get(name) == "boolean":
            cols[f"param.{name}"] = pa.array(v != 0, pa.bool_())
        else:
            cols[f"param.{name}"] = pa.array(v, pa.float64())
    return cols


def export_parquet(shard_file: Path, out_file: Path) -> Path:
    """Write the feature table of one complete shard atomically (tmp + rename)."""
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    cols: dict[str, pa.Array] = {}
    names: dict[str, list[str]] = {}
    with h5py.File(shard_file, "r") as f:
        cols["operator_index"] = pa.array(f["operators/index"][()], pa.int64())
        cols["status"] = pa.array(f["status"][()], pa.int8())
        cols["ic_type"] = pa.array([s.decode() if isinstance(s, bytes) else s for s in f["ics/type"][()]])
        cols["census"] = pa.array([CENSUS_NAMES[c] for c in read_census(f)[0]], pa.string())
        cols.update(parameter_columns(f))
        for fam in SCALAR_FAMILIES:
            ds = f[f"features/{fam}"]
            names[fam] = [str(x) for x in ds.attrs["names"]]
            vals = ds[()]
            for j, name in enumerate(names[fam]):
                cols[f"{fam}.{name}"] = pa.array(vals[:, j], pa.float32())
        ds = f["features/temporal"]
        names["temporal"] = [str(x) for x in ds.attrs["names"]]
        steps = [int(s) for s in ds.attrs["steps"]]
        vals = ds[()]  # [n, T', D]
        for j, name in enumerate(names["temporal"]):
            flat = pa.array(np.ascontiguousarray(vals[:, :, j]).reshape(-1), pa.float32())
            cols[f"temporal.{name}"] = pa.FixedSizeListArray.from_arrays(flat, len(steps))
    table = pa.table(cols)
    meta = {b"spinlock": json.dumps({"names": names, "temporal_steps": steps}).encode()}
    table = table.replace_schema_metadata(meta)
    tmp = temp_path(out_file)
    pq.write_table(table, tmp)
    durable_replace(tmp, out_file)
    return out_file
