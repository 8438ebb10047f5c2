"""Rollout engine throughput vs a bare-torch loop of the same convolutions, measured side by side.

    python bench/rollout.py [--grid 32] [--steps 32] [--operators 16] [--realizations 2] [--threads N]
                            [--rounds 5]

Prints sample-steps/s (one sample-step = one realization of one operator advanced one step) for:
  engine        the engine on a batch of same-shape operators (CUDA: one grouped conv per layer; CPU:
                layer-major passes of a few operators, one call per operator with its M realizations
                as the batch for the wide convolutions, see spinlock/operators/cnn.py)
  bare@b        a bare torch loop of the same conv stack (one weight set) at batch size b, b = 1..64 and M
  one-at-a-time the engine called once per operator (M realizations per call)
  mixed         the engine on a Sobol batch of the quickstart space (mixed shapes, as in a real run)
and the ratios engine / bare at its best batch, engine / bare at batch M, engine / one-at-a-time.
CPU generation actors run one torch thread each (parallelism comes from actors), so ``--threads 1`` is
the setting that matches a CPU run.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from spinlock.config import load_config
from spinlock.generate import build_batch, design
from spinlock.operators.registry import get_family
from spinlock.rollout.engine import RolloutEngine, resolve_device
from spinlock.sampling.space import sample


def record(width: int, depth: int, k: int) -> dict:
    return {"depth": depth, "width": width, "kernel_size": k, "activation": "gelu", "normalization": "none",
            "padding_mode": "circular", "weight_scale": 1.0, "bias": True, "noise_type": "gaussian",
            "noise_level": 0.01, "noise_correlation_length": 1.0, "noise_schedule": "constant",
            "noise_timescale": 1.0, "update_policy": "convex", "step_size": 0.5}


def best_of_rounds(variants: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Best wall time per variant over ``rounds`` interleaved rounds (each round runs every variant
    once), after one warm-up call each (oneDNN JIT, allocator). Interleaving exposes all variants to
    the same machine conditions; the best of several rounds filters out other processes' bursts."""
    for fn in variants.values():
        fn()
    best = dict.fromkeys(variants, math.inf)
    for _ in range(rounds):
        for name, fn in variants.items():
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", type=int, default=32)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--operators", type=int, default=16)
    ap.add_argument("--realizations", type=int, default=2)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = resolve_device("auto")
    torch.set_flush_denormal(True)
    cfg = load_config("configs/quickstart.yaml", [
        f"simulation.grid={a.grid}", f"simulation.steps={a.steps}", f"simulation.realizations={a.realizations}",
        f"simulation.batch_operators={a.operators}", f"sharding.operators_per_shard={a.operators}",
        "storage.trajectories.stride=1", f"simulation.num_operators={a.operators}",
    ])
    fam = get_family("cnn")
    C, H, B, M, T = 3, a.grid, a.operators, a.realizations, a.steps
    recs = [record(a.width, a.depth, a.kernel) for _ in range(B)]
    ic = torch.randn(B, C, H, H, device=dev)

    def engine_run():
        RolloutEngine(fam, recs, list(range(B)), 0, cfg.simulation, dev).run(ic)

    def one_at_a_time():
        for i in range(B):
            RolloutEngine(fam, recs[i:i + 1], [i], 0, cfg.simulation, dev).run(ic[i:i + 1])

    dims = [C] + [a.width] * (a.depth - 1) + [C]
    ws = [torch.randn(dims[i + 1], dims[i], a.kernel, a.kernel, device=dev) / math.sqrt(dims[i] * a.kernel**2)
          for i in range(a.depth)]
    bs = [torch.zeros(dims[i + 1], device=dev) for i in range(a.depth)]
    p = a.kernel // 2

    def bare(batch: int):
        def go():
            x = torch.randn(batch, C, H, H, device=dev)
            with torch.no_grad():
                for _ in range(T):
                    h = x
                    for i in range(a.depth):
                        h = F.conv2d(F.pad(h, (p, p, p, p), mode="circular"), ws[i], bs[i])
                        if i < a.depth - 1:
                            h = F.gelu(h)
                    x = 0.5 * x + 0.5 * (h + 0.01 * torch.randn_like(h))
        return go

    mixed_cfg = load_config("configs/quickstart.yaml", [
        f"simulation.grid={a.grid}", f"simulation.steps={a.steps}", f"simulation.batch_operators={a.operators}",
        f"sharding.operators_per_shard={a.operators}", f"simulation.num_operators={a.operators}",
        "storage.trajectories.stride=1", f"simulation.realizations={a.realizations}",
    ])
    s = sample(design(mixed_cfg), range(a.operators))

    def mixed():
        _, _, ic_m, eng = build_batch(mixed_cfg, s, slice(0, a.operators), dev)
        eng.run(ic_m)

    bare_sizes = sorted({1, 2, 4, 8, 16, 32, 64, M})  # M: the batch of the engine's wide convolutions on CPU
    variants: dict[str, Callable[[], None]] = {"engine": engine_run}
    variants.update({f"bare@{b}": bare(b) for b in bare_sizes})
    variants["one-at-a-time"] = one_at_a_time
    variants["mixed (quickstart space)"] = mixed
    load0 = os.getloadavg()[0]
    best = best_of_rounds(variants, a.rounds)
    load1 = os.getloadavg()[0]
    total = B * M * T
    rate = {name: (int(name[5:]) * T if name.startswith("bare@") else total) / t for name, t in best.items()}
    best_b = max(bare_sizes, key=lambda b: rate[f"bare@{b}"])

    print(f"device {dev} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads),"
          f" torch {torch.__version__}; grid {H}, C={C}, width {a.width}, depth {a.depth}, k={a.kernel},"
          f" {B} operators x {M} realizations x {T} steps; best of {a.rounds} interleaved rounds;"
          f" load average {load0:.2f} -> {load1:.2f}")
    for name, r in rate.items():
        print(f"  {name:28s} {r:10.0f} sample-steps/s")
    print(f"  ratio engine / bare@{best_b} (best bare batch) = {rate['engine'] / rate[f'bare@{best_b}']:.2f}")
    print(f"  ratio engine / bare@{M} (bare at one operator's batch) = {rate['engine'] / rate[f'bare@{M}']:.2f}")
    print(f"  ratio engine / one-at-a-time                = {rate['engine'] / rate['one-at-a-time']:.2f}")
    if dev.type == "cuda":
        # Lower bound on memory traffic: each layer reads its input and writes its output activation once
        # (float32); the state update reads x, f(x), noise and writes x. The roofline is a measured copy.
        acts = sum(dims[i] + dims[i + 1] for i in range(a.depth)) + 4 * C
        bytes_per_step = acts * H * H * 4
        n = 1 << 28
        src, dst = torch.empty(n, device=dev), torch.empty(n, device=dev)
        dst.copy_(src)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10):
            dst.copy_(src)
        torch.cuda.synchronize()
        bandwidth = 10 * 2 * n * 4 / (time.perf_counter() - t)
        roof = bandwidth / bytes_per_step
        print(f"  memory roofline {roof:.0f} sample-steps/s ({bandwidth / 1e12:.2f} TB/s copy, "
              f"{bytes_per_step / 2**20:.2f} MiB/sample-step): engine at {rate['engine'] / roof:.1%} of it")


if __name__ == "__main__":
    main()
