"""Per-stage scaling: wall time and the driver's peak memory of every stage at N = 1K, 4K, 16K operators.

Not a timed test. For each N, a tiny operator (grid 8, 4 steps, 2 realizations, no trajectories, 64
operators per shard) keeps generation cheap, so what grows with N is the pipeline's own bookkeeping.
Each N runs in a fresh child process (the "driver", with its own embedded Ray) that times, in order:

  sampling    Sobol points and parameter mapping of all N (``sample``)
  generate    the actor pool (``GenerationRun``: plan, resume scan, actors, shards)
  merge       ``merge_shards`` again from scratch (virtual)
  clean       ``fit_cleaner`` (Ray Data passes over the feature Parquet)
  categories  ``CategoryDiscovery.fit``
  prepare     ``prepare_splits`` (cleaned model inputs and pooled ICs of every block, materialized)
  train       ``fit_vqvae`` with 1 epoch
  encode      ``encode_dataset`` (actor pool, blocks into a ``TokenWriter``) and ``TokenWriter.write``
  report      ``write_report``
  info        ``check_file`` + ``describe`` (``spinlock info --check``)
  visualize   ``spinlock visualize`` with its defaults

Peak memory is the driver process's RSS high-water mark inside each stage (sampled every 20 ms).
Then a log-log fit gives each stage's exponent (time ∝ N^b) and the driver's peak memory per operator.
Usage::

    PYTHONPATH=. python bench/stages.py [--sizes 1000 4000 16000] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


class Meter:
    """Wall time and peak RSS (sampled) of named stages of this process."""

    def __init__(self):
        import psutil

        self.proc = psutil.Process()
        self.rows: dict[str, dict[str, float]] = {}
        self._peak = 0
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self._peak = max(self._peak, self.proc.memory_info().rss)

    @contextlib.contextmanager
    def stage(self, name: str):
        self._peak = self.proc.memory_info().rss
        t = time.perf_counter()
        yield
        seconds = time.perf_counter() - t
        self._peak = max(self._peak, self.proc.memory_info().rss)
        row = self.rows.setdefault(name, {"seconds": 0.0, "peak_rss": 0.0})
        row["seconds"] += seconds
        row["peak_rss"] = max(row["peak_rss"], float(self._peak))
        print(f"  {name:11s} {seconds:8.2f} s  peak RSS {self._peak / 2**20:7.0f} MiB", flush=True)


def timed(meter: Meter, name: str, fn):
    def wrapper(*a, **k):
        with meter.stage(name):
            return fn(*a, **k)
    return wrapper


def config(n: int):
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import tiny_config

    return tiny_config(**{
        "simulation.num_operators": n, "simulation.grid": 8, "simulation.steps": 4,
        "simulation.batch_operators": 64, "sharding.operators_per_shard": 64,
        "storage.trajectories.store": False, "tokenizer.training.epochs": 1, "distributed.cpu_headroom": 0,
        "initial_conditions.mix": "[{type: gaussian_random_field}, {type: structured}, {type: localized}]",
    })


def driver(n: int, out: str, result: str) -> None:
    """Child process: every stage of one N, timings to ``result`` (JSON)."""
    import ray

    from spinlock.cli.main import main as cli
    from spinlock.config.loading import config_hash
    from spinlock.distributed import tokenize_stage as stage
    from spinlock.distributed.driver import GenerationRun
    from spinlock.generate import design
    from spinlock.sampling.space import sample
    from spinlock.storage.checker import check_file
    from spinlock.storage.merge import merge_shards
    from spinlock.storage.reader import describe
    from spinlock.viz.report import write_report

    cfg = config(n)
    meter = Meter()
    with meter.stage("sampling"):
        sample(design(cfg), range(n))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False)
    with meter.stage("generate"):
        GenerationRun(cfg, out, show_progress=False).execute()
    Path(out, "dataset.h5").unlink()
    with meter.stage("merge"):
        merge_shards(cfg, out)
    stage.fit_cleaner = timed(meter, "clean", stage.fit_cleaner)
    real_fit = stage.CategoryDiscovery.fit
    stage.CategoryDiscovery.fit = lambda self, *a, **k: timed(meter, "categories", real_fit)(self, *a, **k)
    stage.prepare_splits = timed(meter, "prepare", stage.prepare_splits)
    stage.fit_vqvae = timed(meter, "train", stage.fit_vqvae)
    stage.encode_dataset = timed(meter, "encode", stage.encode_dataset)
    stage.TokenWriter.write = timed(meter, "encode", stage.TokenWriter.write)
    with meter.stage("tokenize"):
        stage.tokenize_run(out, cfg.tokenizer, cfg.seed, config_hash(cfg), log=lambda s: None)
    ray.shutdown()
    with meter.stage("report"):
        write_report(out)
    with meter.stage("info"):
        problems = check_file(Path(out, "dataset.h5"))
        describe(out)
    assert not problems, problems
    with meter.stage("visualize"), contextlib.redirect_stdout(open(os.devnull, "w")):
        cli(["visualize", out, "--out", str(Path(out, "viz"))])
    Path(result).write_text(json.dumps(meter.rows))


def exponent(ns: list[int], ys: list[float]) -> float:
    """Least-squares slope of log y against log N."""
    return float(np.polyfit(np.log(ns), np.log(np.maximum(ys, 1e-9)), 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    ap.add_argument("--out", default=None, help="folder for the runs (default: a temporary one, removed)")
    args = ap.parse_args()
    base = Path(args.out or tempfile.mkdtemp(prefix="stages-"))
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if "model name" in ln), platform.machine())
    print(f"machine: {cpu}, {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}", flush=True)
    rows: dict[int, dict] = {}
    for n in args.sizes:
        print(f"N = {n}", flush=True)
        out, result = base / f"n{n}", base / f"n{n}.json"
        shutil.rmtree(out, ignore_errors=True)
        proc = mp.get_context("spawn").Process(target=driver, args=(n, str(out), str(result)))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"N = {n} failed (exit code {proc.exitcode})")
        rows[n] = json.loads(result.read_text())
    ns = sorted(rows)
    header = "".join(f"{'N=' + str(n):>12s}" for n in ns)
    print(f"\nstage        {header}   exponent   peak RSS (MiB) at N → per op")
    for stage in rows[ns[0]]:
        secs = [rows[n][stage]["seconds"] for n in ns]
        rss = [rows[n][stage]["peak_rss"] for n in ns]
        per_op = (rss[-1] - rss[0]) / (ns[-1] - ns[0]) if len(ns) > 1 else float("nan")
        print(f"{stage:12s} " + "".join(f"{s:11.2f}s" for s in secs)
              + f"   {exponent(ns, secs):8.2f}   " + " / ".join(f"{r / 2**20:.0f}" for r in rss)
              + f" → {per_op / 1024:.1f} KiB/op")
    if not args.out:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
