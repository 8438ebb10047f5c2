"""Merge benchmark: ``merge_shards`` time vs number of shards, virtual (metadata only) and copy.

Not a timed test. One real 1-operator shard is generated from the tiny test config, then cloned into
N shards (each clone gets its own operator index and shard id, so the exactly-once check and the
virtual layout see a genuine N-shard run). Target: virtual merge < 1 s per 1000 shards.

Columns (seconds per 1000 shards, best of ``--repeat``; the machine is often shared, so CPU time is
printed too): ``virtual`` is a standalone merge (every shard opened once to verify it), ``reused`` the
merge of ``spinlock generate`` after a resume, given the ShardInfos its resume scan already read, and
``copy`` a self-contained copy merge. Usage::

    PYTHONPATH=. python bench/merge.py [--shards 100 1000 4000] [--copy-up-to 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import h5py

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import tiny_config  # noqa: E402

from spinlock.config.loading import config_hash, dump_config  # noqa: E402
from spinlock.generate import plan_shards, prepare_output, run_shard  # noqa: E402
from spinlock.storage.layout import shard_path  # noqa: E402
from spinlock.storage.merge import merge_shards, verified_shards  # noqa: E402


def make_run(n: int, template: Path, root: Path):
    """An output folder holding ``n`` clones of the 1-operator ``template`` shard."""
    cfg = tiny_config(**{"simulation.num_operators": n, "simulation.batch_operators": 1,
                         "sharding.operators_per_shard": 1})
    out = prepare_output(cfg, root / f"run-{n}")
    for spec in plan_shards(cfg):
        dst = shard_path(out, spec.shard_id)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, dst)
        with h5py.File(dst, "r+") as f:
            f["operators/index"][0] = spec.start
            f.attrs.update(shard_id=spec.shard_id, operator_start=spec.start, operator_stop=spec.stop,
                           config_hash=config_hash(cfg), config=dump_config(cfg))
    return cfg, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, nargs="+", default=[100, 1000, 4000])
    ap.add_argument("--copy-up-to", type=int, default=1000, help="also time copy merges up to this size")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many merges per cell")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f},"
          f" {platform.platform()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg1 = tiny_config(**{"simulation.num_operators": 1, "simulation.batch_operators": 1,
                              "sharding.operators_per_shard": 1})
        seed = prepare_output(cfg1, root / "template")
        template = run_shard(cfg1, plan_shards(cfg1)[0], seed).path
        size = Path(template).stat().st_size
        merge_shards(cfg1, seed)  # warm-up: lazy imports are not part of any row
        print(f"template shard: 1 operator, {size / 1024:.0f} KiB; seconds per 1000 shards, best of {args.repeat}")
        print(f"{'shards':>7} {'virtual':>8} {'(cpu)':>7} {'reused':>7} {'copy':>7} {'(cpu)':>7}"
              f"  dataset.h5 virtual / copy")
        for n in args.shards:
            cfg, out = make_run(n, Path(template), root)
            per_k = 1000 / n
            vw, vc, vsize = best(args.repeat, cfg, out, "virtual")
            infos = {s.shard_id: i for s, i in zip(plan_shards(cfg), verified_shards(cfg, out), strict=True)}
            rw, _, _ = best(args.repeat, cfg, out, "virtual", shards=infos)
            copy = f"{'-':>7} {'-':>7}  {vsize:.1f} MiB / -"
            if n <= args.copy_up_to:
                cw, cc, csize = best(1, cfg, out, "copy")
                copy = f"{cw * per_k:>7.3f} {cc * per_k:>7.3f}  {vsize:.1f} MiB / {csize:.1f} MiB"
            print(f"{n:>7} {vw * per_k:>8.3f} {vc * per_k:>7.3f} {rw * per_k:>7.3f} {copy}", flush=True)
            shutil.rmtree(out)


def best(repeat: int, *args, **kwargs) -> tuple[float, float, float]:
    """(wall s, CPU s, dataset.h5 MiB) of the fastest of ``repeat`` ``merge_shards(*args, **kwargs)``."""
    runs = []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        path = merge_shards(*args, **kwargs)
        runs.append((time.perf_counter() - w, time.process_time() - c))
    wall, cpu = min(runs)
    return wall, cpu, path.stat().st_size / 2**20


if __name__ == "__main__":
    main()
