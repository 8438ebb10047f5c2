"""Ray Data's V1 and V2 Parquet datasources on many small tables, side by side (not a test).

    PYTHONPATH=. python bench/parquet_reads.py --tables 2000 [--rows 64] [--columns 50]

Writes ``--tables`` tables of ``--rows`` rows (like the per-shard feature tables) under ``--dir`` once, then
for each datasource plans one ``read_parquet`` and executes it twice (the tokenize stage executes its read
four times: two cleaning passes, prepare, encode), on an embedded Ray of 2 CPUs. Prints the planning and
per-execution seconds and the V2 ÷ V1 ratio of the executions. ``spinlock.distributed.feature_stream``
plans its reads on V1 (``_parquet_datasource_v1``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tables", type=int, default=2000)
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--columns", type=int, default=50)
    p.add_argument("--dir", type=Path, default=Path("/tmp/spinlock-parquet-reads"))
    args = p.parse_args()
    folder = args.dir / f"{args.tables}x{args.rows}x{args.columns}"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for i in range(args.tables):
            table = pa.table({f"c{j}": rng.random(args.rows, dtype=np.float32) for j in range(args.columns)})
            pq.write_table(table, folder / f"t{i:06d}.parquet")
    files = sorted(str(f) for f in folder.glob("*.parquet"))
    ray.init(num_cpus=2, include_dashboard=False)
    ctx = ray.data.DataContext.get_current()
    passes: dict[bool, list[float]] = {}
    for v2 in (False, True):
        ctx.use_datasource_v2 = v2
        t = time.perf_counter()
        ds = ray.data.read_parquet(files)
        plan = time.perf_counter() - t
        passes[v2] = []
        for _ in range(2):
            t = time.perf_counter()
            rows = sum(len(b["c0"]) for b in ds.iter_batches(batch_size=None, batch_format="numpy"))
            passes[v2].append(time.perf_counter() - t)
        assert rows == args.tables * args.rows
        print(f"{'V2' if v2 else 'V1'}: plan {plan:.1f} s, executions "
              + " / ".join(f"{x:.1f} s" for x in passes[v2]), flush=True)
    ray.shutdown()
    print(f"{args.tables} tables of {args.rows} rows: V2 / V1 per execution "
          f"{sum(passes[True]) / sum(passes[False]):.1f}x")


if __name__ == "__main__":
    main()
