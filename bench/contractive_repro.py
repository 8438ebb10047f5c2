"""Issue 13 §1 repro: contractive low-noise operators must never be flagged, for every noise type.

    PYTHONPATH=. python bench/contractive_repro.py [--grid 64] [--steps 500] [--realizations 3] [--operators 8]
                                                   [--types gaussian,laplace,correlated,multiplicative]
                                                   [--old-laplace] [--threads N]

Eight operators (depth 2, width 8, tanh, no normalisation, kernel 3, weight_scale 0.5–0.6, convex update
with α 0.1–0.2, σ 0.001–0.01 constant; values spread evenly over the ranges) from Gaussian-random-field
ICs, one engine batch per noise type. They contract to a small noise-driven state, so any flag is a
sampler bug. Prints per type: operators flagged diverged / fault, their steps, max |x| at the end, and
the seconds taken. ``--old-laplace`` swaps in the pre-fix inverse-CDF Laplace conversion (kept in
bench/rng_finite.py, not in the package) to show what the fix changed; the engine now reports those
operators as ``fault`` (non-finite noise) rather than ``diverged``.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

import spinlock.rng
from spinlock.config import load_config
from spinlock.ics.registry import generate_ic
from spinlock.operators.registry import get_family
from spinlock.rng import derive_key
from spinlock.rollout.engine import STATUS_DIVERGED, STATUS_FAULT, RolloutEngine, resolve_device

TYPES = ("gaussian", "laplace", "correlated", "multiplicative")


def records(noise_type: str, n: int) -> list[dict]:
    out = []
    for a in np.linspace(0.0, 1.0, n):
        out.append({"depth": 2, "width": 8, "kernel_size": 3, "activation": "tanh", "normalization": "none",
                    "padding_mode": "circular", "weight_scale": 0.5 + 0.1 * a, "bias": True,
                    "noise_type": noise_type, "noise_level": 0.001 * 10**a, "noise_correlation_length": 2.0,
                    "noise_schedule": "constant", "noise_timescale": 1.0, "update_policy": "convex",
                    "step_size": 0.1 + 0.1 * a})
    return out


class LastPeak:
    """Observer keeping max |x| of the final state per operator (NaN rows ignored)."""

    def start(self, x0, live):  # noqa: D102
        pass

    def observe(self, step, x, alive):  # noqa: D102
        self.peak = torch.nan_to_num(x.abs(), nan=0.0).flatten(1).amax(1)

    def finish(self, status, diverged_step):  # noqa: D102
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", type=int, default=64)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--realizations", type=int, default=3)
    ap.add_argument("--operators", type=int, default=8)
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--old-laplace", action="store_true", help="use the pre-fix Laplace conversion")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.old_laplace:
        from rng_finite import laplace_old_pair

        spinlock.rng.laplace_pair_from_bits = laplace_old_pair  # BatchRandom.laplace looks it up per call
    device = resolve_device(args.device)
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml", [
        f"simulation.grid={args.grid}", f"simulation.steps={args.steps}",
        f"simulation.realizations={args.realizations}", "simulation.channels=3",
    ])
    sim, n = cfg.simulation, args.operators
    print(f"{platform.processor() or platform.machine()}, {device}, {torch.get_num_threads()} threads;"
          f" {n} operators, {sim.grid}², {sim.steps} steps × {sim.realizations} realizations"
          + (", OLD Laplace sampler" if args.old_laplace else ""))
    ic = generate_ic("gaussian_random_field", {}, [derive_key(cfg.seed, "ic", i) for i in range(n)],
                     sim.channels, sim.grid, device)
    family = get_family("cnn")
    total = 0
    for t in args.types.split(","):
        t0 = time.perf_counter()
        eng = RolloutEngine(family, records(t, n), list(range(n)), cfg.seed, sim, device)
        obs = LastPeak()
        res = eng.run(ic, [obs])
        st, steps = res.status.numpy(), res.diverged_step.numpy()
        div, flt = np.flatnonzero(st == STATUS_DIVERGED), np.flatnonzero(st == STATUS_FAULT)
        total += len(div) + len(flt)
        print(f"{t:<15} diverged {len(div)}/{n} (steps {steps[div].tolist()}), fault {len(flt)}/{n}"
              f" (steps {steps[flt].tolist()}), max |x| at T {float(obs.peak.max()):.3g},"
              f" {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"flagged in all: {total}")


if __name__ == "__main__":
    main()
