"""Per-shard Parquet feature tables (the input Ray Data streams into the tokenizer).

Columns: ``operator_index`` int64, ``status`` int8, ``ic_type`` string, ``census`` string (the behaviour
class, ``spinlock.features.census``), one float32 column per feature
named ``<family>.<name>`` for initial/architecture/summary, and ``temporal.<name>`` as fixed-size
list<float32>[T'] columns. Schema metadata ``spinlock`` = JSON {"names": {family: [...]}, "temporal_steps": [...]}.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from spinlock.features.census import NAMES as CENSUS_NAMES
from spinlock.storage.durable import durable_replace
from spinlock.storage.reader import read_census

FLAT_FAMILIES = ("initial", "architecture", "summary")


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
        for fam in FLAT_FAMILIES:
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
    tmp = out_file.with_name(out_file.name + ".tmp")
    pq.write_table(table, tmp)
    durable_replace(tmp, out_file)
    return out_file
