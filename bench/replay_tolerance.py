"""The error measure behind `spinlock replay`'s tolerance comparison, on real operators.

    PYTHONPATH=. python bench/replay_tolerance.py configs/quickstart.yaml --operators 64
    PYTHONPATH=. python bench/replay_tolerance.py configs/quickstart-uafno.yaml --operators 32

Each operator is rolled out four ways from its IC (one realization, ``--step`` steps): as generated in
fp32; in bf16 (CPU autocast standing in for CUDA, as the precision parity tests do); in fp32 with the
weights of another operator (index + 100000: a wrong record); and in fp32 from the IC perturbed by 2^-8
relative (replay's spread run). The fp32 state at ``--step`` is cast to float16 as the quickstarts store
it, and :func:`spinlock.replay.step_error` (RMS(Δ)/RMS) compares it with the others. Operators that
diverge in any run are left out. The tolerance, max(STEP_RTOL, SPREAD_FACTOR × spread), must pass bf16
and fail the wrong weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spinlock.config import load_config  # noqa: E402
from spinlock.generate import design, make_ics  # noqa: E402
from spinlock.operators.registry import get_family  # noqa: E402
from spinlock.replay import SPREAD_FACTOR, STEP_RTOL, UNIT_ROUNDOFF, step_error  # noqa: E402
from spinlock.rollout.engine import RolloutEngine  # noqa: E402
from spinlock.sampling.space import sample  # noqa: E402

CPU = torch.device("cpu")


class Last:
    def start(self, x0, live):
        self.x = x0

    def observe(self, step, x, alive):
        self.x = x.float().clone()

    def finish(self, status, diverged_step):
        self.status = status.numpy()


def rollout(cfg, s, bf16: bool = False, shift: int = 0, eps: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    fam = get_family(cfg.operators.family)
    records = [fam.decode(cfg.parameters, row) for row in s.values]
    eng = RolloutEngine(fam, records, [int(i) + shift for i in s.index], cfg.seed, cfg.simulation, CPU)
    if bf16:
        eng._autocast = lambda: torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    obs = Last()
    ic = make_ics(cfg, s.index, s.ic_entry, CPU)
    eng.run(ic * (1 + eps * torch.randn(ic.shape, generator=torch.Generator().manual_seed(1))), [obs])
    return obs.x.numpy(), obs.status


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--operators", type=int, default=64)
    ap.add_argument("--step", type=int, default=4, help="the first stored step (storage.trajectories.stride)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config, [f"simulation.num_operators={args.operators}", f"simulation.steps={args.step}",
                                    "simulation.realizations=1"])
    B = cfg.simulation.batch_operators
    half, wrong, spread = [], [], []
    for b0 in range(0, args.operators, B):
        s = sample(design(cfg), range(b0, min(b0 + B, args.operators)))
        (a, sa), (b, sb), (c, sc) = rollout(cfg, s), rollout(cfg, s, bf16=True), rollout(cfg, s, shift=100_000)
        d, sd = rollout(cfg, s, eps=UNIT_ROUNDOFF["bf16"])
        for i in np.flatnonzero((sa == 0) & (sb == 0) & (sc == 0) & (sd == 0)):
            stored = a[i].astype(np.float16)
            half.append(step_error(stored, b[i]))
            wrong.append(step_error(stored, c[i]))
            spread.append(step_error(a[i], d[i]))
    half, wrong, spread = np.array(half), np.array(wrong), np.array(spread)
    tol = np.maximum(STEP_RTOL["bf16"], SPREAD_FACTOR * spread)
    print(f"{args.config}: {len(half)} of {args.operators} operators, RMS(Δ)/RMS at step {args.step};"
          f" tolerance bf16 {STEP_RTOL['bf16']:g}")
    print(f"  bf16 vs fp32:    median {np.median(half):.3g}  p90 {np.quantile(half, 0.9):.3g}  max {half.max():.3g}")
    print(f"  other weights:   min {wrong.min():.3g}  p10 {np.quantile(wrong, 0.1):.3g}  median {np.median(wrong):.3g}")
    print(f"  fixed tolerance: bf16 above it {(half > STEP_RTOL['bf16']).sum()}, other weights within it"
          f" {(wrong <= STEP_RTOL['bf16']).sum()}")
    print(f"  with the spread: bf16 above it {(half > tol).sum()}, other weights within it {(wrong <= tol).sum()}")


if __name__ == "__main__":
    main()
