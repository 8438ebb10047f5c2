"""Cost of one ``ray.train.report`` in Ray Train V2, with and without a checkpoint.

    python bench/train_report.py [--reports 8] [--mb 8]

One worker reports ``--reports`` times in a row in each mode (a ``--mb`` MiB checkpoint directory,
or metrics only) and prints the mean seconds per report. Why it matters: the worker's result queue
holds one report and the controller drains it once per poll (``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``,
2 s by default), so a report every epoch makes every epoch last at least one poll; the tokenizer
reports every ``training.checkpoint_seconds`` instead (docs/tokenizer.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def loop(config: dict) -> None:
    import ray.train
    import torch

    out = []
    for mode in ("checkpoint", "metrics only") * 2:
        t = time.perf_counter()
        for i in range(config["reports"]):
            if mode == "checkpoint":
                with tempfile.TemporaryDirectory() as d:
                    torch.save({"w": torch.zeros(config["mb"] * 2**18)}, os.path.join(d, "state.pt"))
                    ray.train.report({"i": i}, checkpoint=ray.train.Checkpoint.from_directory(d))
            else:
                ray.train.report({"i": i}, checkpoint=None)
        out.append(f"{mode}: {(time.perf_counter() - t) / config['reports']:.2f} s/report")
    sys.stdout.write("; ".join(out) + "\n")
    sys.stdout.flush()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reports", type=int, default=8)
    p.add_argument("--mb", type=int, default=8)
    args = p.parse_args()
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    ray.init(num_cpus=2, include_dashboard=False)
    with tempfile.TemporaryDirectory() as storage:
        TorchTrainer(loop, train_loop_config=vars(args), scaling_config=ScalingConfig(num_workers=1),
                     run_config=RunConfig(name="report-bench", storage_path=storage)).fit()
    ray.shutdown()


if __name__ == "__main__":
    main()
