"""Inline feature cost relative to the rollout, and the near-constant-column audit.

    PYTHONPATH=. python bench/features.py                      # quickstart + baseline timing shapes
    PYTHONPATH=. python bench/features.py --shape quickstart --reps 5
    PYTHONPATH=. python bench/features.py --audit 256          # degenerate SUMMARY columns on real operators

Timing: for each engine batch the rollout alone and the rollout with a FeatureObserver are timed; the
observer's own calls are timed inside the second run (process CPU time, so other load on the machine
does not count), and the ratio is features / rollout-alone. Each batch is repeated and the minimum of
each quantity kept (the least-disturbed run), then summed over the batches (operators differ a lot in
cost). Torch runs single-threaded unless --threads.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spinlock.config import load_config  # noqa: E402
from spinlock.features import FeatureObserver  # noqa: E402
from spinlock.features.audit import dead_columns, near_constant_columns  # noqa: E402
from spinlock.generate import run_operators  # noqa: E402

SHAPES = {
    # name: (overrides, description)
    "quickstart": ([], "32², C=3, M=2, T=64, batch 8"),
    "baseline": (
        ["simulation.grid=128", "simulation.realizations=3", "simulation.steps=32",
         "storage.trajectories.stride=1"],
        "128², C=3, M=3, T=32 (baseline T=500 shortened; per-step costs are the same)",
    ),
}


class _Timed:
    """Wraps an observer and accumulates the process CPU time spent in its calls."""

    def __init__(self, obs: FeatureObserver):
        self.obs, self.seconds = obs, 0.0

    def _call(self, fn, *args) -> None:
        t = time.process_time()
        fn(*args)
        self.seconds += time.process_time() - t

    def start(self, *a) -> None:
        self._call(self.obs.start, *a)

    def observe(self, *a) -> None:
        self._call(self.obs.observe, *a)

    def finish(self, *a) -> None:
        self._call(self.obs.finish, *a)


def time_shape(name: str, reps: int, batches: int) -> dict:
    """Sum over ``batches`` consecutive engine batches of the per-batch minimum over ``reps`` runs."""
    from spinlock.generate import build_batch, design
    from spinlock.sampling.space import sample

    overrides, desc = SHAPES[name]
    cfg = load_config(ROOT / "configs" / "quickstart.yaml", overrides)
    b = cfg.simulation.batch_operators
    device = torch.device("cpu")
    roll_total = feat_total = 0.0
    for k in range(batches):
        sampled = sample(design(cfg), range(k * b, (k + 1) * b))
        best_roll, best_feat = float("inf"), float("inf")
        for _ in range(reps):
            _, _, ic, engine = build_batch(cfg, sampled, slice(0, b), device)
            t = time.process_time()
            engine.run(ic, [])
            best_roll = min(best_roll, time.process_time() - t)
            _, _, ic, engine = build_batch(cfg, sampled, slice(0, b), device)
            timed = _Timed(FeatureObserver(cfg, sampled.index.tolist(), device))
            engine.run(ic, [timed])
            best_feat = min(best_feat, timed.seconds)
        roll_total += best_roll
        feat_total += best_feat
    return {"shape": name, "desc": desc, "rollout_s": roll_total, "features_s": feat_total,
            "ratio": feat_total / roll_total, "operators": batches * b}


def audit(n: int) -> None:
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    n = min(n, cfg.simulation.num_operators)
    t = time.perf_counter()
    res = run_operators(cfg, range(n))
    summary = res.blocks["summary"]
    ok = res.status == 0
    print(f"{n} operators ({int((~ok).sum())} diverged) in {time.perf_counter() - t:.0f}s")
    flagged = near_constant_columns(summary.values[ok], summary.names)
    share = len(flagged) / len(summary.names)
    print(f"near-constant SUMMARY columns over non-diverged operators: {len(flagged)}/{len(summary.names)}"
          f" ({100 * share:.1f}%)")
    for name, why in flagged:
        print(f"  {name}: {why}")
    nan = np.isnan(summary.values[ok]).mean(0)
    for name, frac in zip(summary.names, nan, strict=True):
        if frac > 0:
            print(f"  NaN in {100 * frac:.0f}% of rows: {name}")
    for fam in ("initial", "architecture"):
        blk = res.blocks[fam]
        for name, why in near_constant_columns(blk.values, blk.names):
            print(f"  {fam} {name}: {why}")
    for fam, blk in res.blocks.items():  # what tests/test_features_audit.py asserts is empty
        rows = blk.values if fam == "initial" else blk.values[ok]
        for name, why in dead_columns(rows, blk.names):
            print(f"  dead {fam} {name}: {why}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), action="append")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batches", type=int, default=4, help="engine batches timed per shape (operators 0, 1, ...)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--audit", type=int, metavar="N", help="audit N quickstart operators instead of timing")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.audit:
        audit(args.audit)
        return
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__},"
          f" {args.threads} thread(s)")
    for name in args.shape or ["quickstart", "baseline"]:
        r = time_shape(name, args.reps, 1 if name == "baseline" else args.batches)
        print(f"{r['shape']:10s} {r['desc']}, {r['operators']} operators: rollout {r['rollout_s']:.2f}s,"
              f" features {r['features_s']:.2f}s, ratio {r['ratio']:.3f}", flush=True)


if __name__ == "__main__":
    main()
