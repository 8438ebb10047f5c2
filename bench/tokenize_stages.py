"""Where the tokenize stage's seconds go: each step of ``tokenize_run`` timed on an existing run.

    PYTHONPATH=. python bench/tokenize_stages.py RUN_DIR [--config CONFIG] [--set KEY=VALUE ...]

Copies nothing: the tokenizer of RUN_DIR is fitted again (a fresh Ray Train run name, so nothing
resumes) and its outputs are overwritten. Prints the seconds of the feature read, the two cleaning
passes (``fit_cleaner``), ``prepare_splits``, the read of the k-means rows (``kmeans_sample``),
``plan_model``, the Ray Train fit (``fit_vqvae``) and the encode, the fit's summed epoch compute, and
the final validation R² and codebook usage (quality must not move when the overhead does). Under an
embedded Ray every fresh worker process pays its imports, so on a loaded 2-core machine the first Ray
Data pass and the worker-group start dominate.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

STEPS = ("read_features", "fit_cleaner", "prepare_splits", "kmeans_sample", "plan_model", "fit_vqvae",
         "encode_dataset")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--config", default=None, help="run config (default: RUN/config.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    import ray

    import spinlock.distributed.tokenize_stage as T
    from spinlock.config import config_hash, load_config

    times: dict[str, float] = {}

    def timed(name, f):
        @functools.wraps(f)
        def g(*a, **k):
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                times[name] = time.perf_counter() - t
        return g

    for name in STEPS:
        setattr(T, name, timed(name, getattr(T, name)))
    cfg = load_config(args.config or args.run / "config.yaml", args.overrides)
    ray.init()
    t = time.perf_counter()
    summary = T.tokenize_run(args.run, cfg.tokenizer, cfg.seed, f"{config_hash(cfg)}-bench-{time.time()}",
                             log=lambda m: None)
    total = time.perf_counter() - t
    ray.shutdown()
    history = [json.loads(line) for line in (args.run / "tokenizer" / T.METRICS_FILE).read_text().splitlines()]
    compute = sum(r["train_seconds"] for r in history)
    print("  ".join(f"{k} {v:.1f}s" for k, v in times.items()) + f"  total {total:.1f}s")
    print(f"epochs {len(history)}: compute {compute:.1f}s, fit overhead {times['fit_vqvae'] - compute:.1f}s")
    v = summary["validation"]
    print("validation R² " + "/".join(f"{x:.3f}" for x in v["r2"]["all"]) + ", codebook usage "
          + "/".join(f"{x:.2f}" for x in v["codebook_usage"]))


if __name__ == "__main__":
    main()
