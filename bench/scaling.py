"""Scaling benchmark: the same shards on 1 and on 2 local actors (1 CPU, 1 torch thread each).

Not a timed test. Starts one local Ray, generates the same config with ``--workers 1`` and ``2`` into
fresh folders (``GenerationRun``, exactly what ``spinlock generate`` runs), and prints per run: wall
time of the actor pool, operators/s, the sum of shard compute times, the driver overhead (actor-time
not spent inside ``run_shard``: actor start-up, scheduling, the idle tail — per shard and as a fraction)
and the merge time. Runs alternate (1, 2, 1, 2, ...) and the best of each is compared, which damps
the noise of a shared machine. Then the 2-vs-1 throughput ratio (target ≥ 1.7 on 2 free cores for
CPU-bound shards) and a check that both datasets are identical. Usage::

    PYTHONPATH=. python bench/scaling.py [--operators 128] [--per-shard 8] [--grid 48] [--steps 128]
                                         [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import ray

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import tiny_config  # noqa: E402

from spinlock.distributed.driver import GenerationRun  # noqa: E402
from spinlock.storage.merge import merge_shards  # noqa: E402


def differing(a: Path, b: Path) -> list[str]:
    """Datasets whose values differ between two merged datasets (NaN equals NaN)."""
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names: list[str] = []
        fa.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        return [n for n in names
                if not np.array_equal(fa[n][()], fb[n][()], equal_nan=fa[n].dtype.kind == "f")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--operators", type=int, default=128)
    ap.add_argument("--per-shard", type=int, default=8)
    ap.add_argument("--grid", type=int, default=48)
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=2, help="alternate 1/2-worker runs; report the best")
    args = ap.parse_args()
    cfg = tiny_config(**{
        "simulation.num_operators": args.operators, "sharding.operators_per_shard": args.per_shard,
        "simulation.batch_operators": args.per_shard, "simulation.grid": args.grid,
        "simulation.steps": args.steps, "storage.trajectories.stride": 4, "simulation.device": "cpu",
        "distributed.cpus_per_actor": 1, "distributed.cpu_headroom": 0,
    })
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
          f" at start, {platform.platform()}")
    print(f"config: {args.operators} operators, {args.per_shard}/shard, grid {args.grid}, steps {args.steps},"
          f" M={cfg.simulation.realizations}, C={cfg.simulation.channels}")
    ray.init(num_cpus=2, include_dashboard=False)
    best: dict[int, tuple[float, float]] = {}
    paths: dict[int, Path] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeat):
            for workers in (1, 2):
                out = Path(tmp) / f"w{workers}-{rep}"
                run = GenerationRun(cfg, out, workers=workers, show_progress=False)
                path = run.execute()
                r = run.report
                t0 = time.perf_counter()
                merge_shards(cfg, path.parent)  # the merge alone (execute() already merged once)
                merge_s = time.perf_counter() - t0
                compute = sum(s.seconds for s in r.completed)
                actor_time = r.seconds * run.scheduler.shape.actors
                overhead = actor_time - compute
                rate = (args.operators / r.seconds, args.operators / (r.seconds - r.startup_s))
                best[workers] = max(best.get(workers, (0.0, 0.0)), rate)
                paths[workers] = path
                print(f"workers={workers}: pool {r.seconds:6.1f} s (actor start-up {r.startup_s:4.1f} s)"
                      f"  {rate[0]:5.2f} op/s ({rate[1]:5.2f} after start-up)  compute {compute:6.1f} s"
                      f"  overhead {overhead / len(r.completed):5.2f} s/shard ({overhead / actor_time:4.0%}"
                      f" of actor time)  merge {merge_s:5.2f} s ({merge_s / (r.seconds + merge_s):4.1%})"
                      f"  load {os.getloadavg()[0]:.1f}")
        print(f"best of {args.repeat}: throughput 2 vs 1 workers {best[2][0] / best[1][0]:.2f}x overall,"
              f" {best[2][1] / best[1][1]:.2f}x after actor start-up;"
              f" datasets differing between 1 and 2 workers: {differing(paths[1], paths[2]) or 'none'}")
    ray.shutdown()


if __name__ == "__main__":
    main()
