"""Baseline slice: the first K operators of ``configs/baseline-10k.yaml``, unmodified, on this machine.

Not a timed test. Runs ``run_shard`` (the core every generation actor calls) on operators [0, K) of the
baseline config — 128², 500 steps × 3 realizations, trajectories every 10 steps in float16 — in a child
process standing in for a generation actor (one per device, all of this machine's threads on CPU), then
prints:

* time per operator and sample-steps/s (one sample-step = one realization advanced one step);
* bytes written per operator (shard HDF5 with its trajectories, Parquet feature table), extrapolated to
  10K operators and set against the seed's "50–100 GB for 10K";
* the time for 10K operators on this device (one actor; divide by the number of devices);
* the generation process's peak RSS;
* the behaviour census of the slice (``spinlock.features.census``, as ``spinlock info`` prints it).

Usage::

    PYTHONPATH=. python bench/baseline_slice.py [--operators K] [--out DIR] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED_GB_FOR_10K = (50, 100)


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line)
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} CPUs"


def _generate(cfg_path: str, k: int, out: str, device: str, result: str) -> None:
    """Child process (the 'actor'): generate operators [0, k) as one shard, write timings to ``result``."""
    import torch

    from spinlock.config import load_config
    from spinlock.generate import ShardSpec, prepare_output, run_shard

    torch.set_num_threads(os.cpu_count() or 1)
    cfg = load_config(cfg_path, [f"simulation.device={device}"])
    prepare_output(cfg, out)
    t0 = time.perf_counter()
    summary = run_shard(cfg, ShardSpec(0, 0, k), out)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    Path(result).write_text(json.dumps({"seconds": seconds, "peak_rss": peak, "summary": summary.to_json(),
                                        "steps": cfg.simulation.steps, "realizations": cfg.simulation.realizations,
                                        "device": str(torch.device("cuda" if torch.cuda.is_available()
                                                                   and device != "cpu" else "cpu"))}))


def census_line(shard: Path) -> str:
    import h5py

    from spinlock.features.census import format_counts
    from spinlock.storage.reader import read_census

    with h5py.File(shard, "r") as f:
        codes, notes = read_census(f)
    return format_counts(codes) + "".join(f"; {n}" for n in notes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--operators", type=int, default=6, help="K, the first operators of the baseline")
    ap.add_argument("--config", default=str(ROOT / "configs" / "baseline-10k.yaml"))
    ap.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="baseline-slice-"))
    result = out / "slice.json"
    print(f"machine: {machine()}; config {args.config}, operators [0, {args.operators}) → {out}", flush=True)
    proc = mp.get_context("spawn").Process(target=_generate,
                                           args=(args.config, args.operators, str(out), args.device, str(result)))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"generation failed (exit code {proc.exitcode})")
    r = json.loads(result.read_text())
    k, secs = args.operators, r["seconds"]
    sample_steps = k * r["steps"] * r["realizations"]
    h5 = out / "shards" / "shard-00000.h5"
    pq = out / "features" / "shard-00000.parquet"
    b_h5, b_pq = h5.stat().st_size / k, pq.stat().st_size / k
    print(f"device: {r['device']}")
    print(f"time: {secs:.1f} s for {k} operators = {secs / k:.1f} s/operator, "
          f"{sample_steps / secs:.1f} sample-steps/s")
    print(f"10K operators on this device (one actor): {secs / k * 1e4 / 3600:.1f} h")
    print(f"bytes/operator: HDF5 {b_h5 / 2**20:.2f} MiB, Parquet {b_pq / 2**10:.1f} KiB; "
          f"10K operators: {(b_h5 + b_pq) * 1e4 / 1e9:.1f} GB (seed: {SEED_GB_FOR_10K[0]}–{SEED_GB_FOR_10K[1]} GB)")
    print(f"peak RSS of the generation process: {r['peak_rss'] / 2**30:.2f} GiB")
    print(f"census: {census_line(h5)}")


if __name__ == "__main__":
    main()
