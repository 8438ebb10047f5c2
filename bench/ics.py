"""Per-type IC generation cost: one ``generate_ic`` call of B samples × C channels at H × W.

    PYTHONPATH=. python bench/ics.py                      # 128², batch 64, C = 3, all 28 types
    PYTHONPATH=. python bench/ics.py --threads 1 --repeat 5 --type dla_cluster

Prints a Markdown table (median wall and CPU seconds per call, ms per sample) headed by the machine,
torch version, thread count and load average, ready to paste into docs/initial-conditions.md. CPU time
is the process time of the call: on a shared machine it is the better measure of the work done, since
wall time also counts time waiting for the cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from spinlock.ics import generate_ic, ic_types
from spinlock.rng import derive_key


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_type(
    name: str, batch: int, channels: int, grid: int, repeat: int, device: torch.device
) -> tuple[float, float]:
    """Median (wall s, CPU s) of ``repeat`` calls after one warm-up call; fresh keys every call."""
    generate_ic(name, {}, [derive_key(0, "bench-warmup", i) for i in range(2)], channels, min(grid, 32), device)
    walls, cpus = [], []
    for r in range(repeat):
        keys = [derive_key(r, f"bench/{name}", i) for i in range(batch)]
        if device.type == "cuda":
            torch.cuda.synchronize()
        w0, c0 = time.perf_counter(), time.process_time()
        generate_ic(name, {}, keys, channels, grid, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--type", dest="types", action="append", help="only this type (repeatable)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    types = ic_types()
    names = args.types or list(types)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, device {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {load:.1f}"
    )
    print(f"one call: batch {args.batch} × C={args.channels} × {args.grid}², median of {args.repeat}\n")
    print("| type | tier | wall s | CPU s | ms / sample (wall) |")
    print("|---|---|---|---|---|")
    total = 0.0
    for name in names:
        wall, cpu = time_type(name, args.batch, args.channels, args.grid, args.repeat, device)
        total += wall
        print(
            f"| `{name}` | {types[name].tier} | {wall:.3f} | {cpu:.3f} | {1000 * wall / args.batch:.1f} |", flush=True
        )
    print(f"\ntotal wall {total:.2f} s for {len(names)} types")


if __name__ == "__main__":
    main()
