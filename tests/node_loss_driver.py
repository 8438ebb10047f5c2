"""Driver for tests/test_node_loss.py, run on the head host of a :class:`netns_cluster.NetnsCluster`.

``python tests/node_loss_driver.py generate|tokenize CONFIG OUT --address A --orders DIR --nodes N --report R``
joins the cluster with the park-order hook (tests/faults.py), waits for N alive nodes, runs the stage
exactly as the CLI does and writes what happened to R (JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import ray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faults import park_runtime_env  # noqa: E402

from spinlock.config import load_config  # noqa: E402
from spinlock.config.loading import config_hash  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("stage", choices=("generate", "tokenize"))
    p.add_argument("config")
    p.add_argument("out")
    p.add_argument("--address", required=True)
    p.add_argument("--orders", required=True)
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--report", required=True)
    args = p.parse_args()
    cfg = load_config(args.config)
    ray.init(address=args.address, runtime_env=park_runtime_env(Path(args.orders)))
    deadline = time.monotonic() + 240
    while sum(n["Alive"] for n in ray.nodes()) < args.nodes:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {sum(n['Alive'] for n in ray.nodes())} of {args.nodes} nodes joined")
        time.sleep(0.2)
    t0 = time.perf_counter()
    if args.stage == "generate":
        from spinlock.distributed.driver import GenerationRun

        run = GenerationRun(cfg, args.out, show_progress=False)
        run.execute()
        report = {"actors": run.scheduler.shape.actors, "retries": run.report.retries,
                  "replaced_actors": run.report.replaced_actors, "failed": run.report.failed,
                  "completed": [s.shard_id for s in run.report.completed]}
    else:
        from spinlock.distributed.tokenize_stage import tokenize_run

        summary = tokenize_run(args.out, cfg.tokenizer, cfg.seed, config_hash(cfg))
        report = {"epochs": summary["epochs"]}
    report["seconds"] = time.perf_counter() - t0
    Path(args.report).write_text(json.dumps(report))
    ray.shutdown()


if __name__ == "__main__":
    main()
