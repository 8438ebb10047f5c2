"""Rendering benchmark: 16 operators x 128 frames at 64x64 (C=3, M=2) → GIF + MP4 + grid PNG.

Not a timed test. Builds a synthetic run (tests/synthetic_run.py) in a temporary folder, then times
``render_group`` per render mode, without and with the aggregate panels, and prints one line each plus
the machine. CPU time (this process + the ffmpeg child) is printed next to wall time because wall
time on a shared machine measures the neighbours too. Usage::

    PYTHONPATH=. python bench/render.py [--operators 16] [--frames 128] [--grid 64] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from synthetic_run import make_run  # noqa: E402

from spinlock.viz.render import RenderOptions, render_group  # noqa: E402
from spinlock.viz.rundata import RunData  # noqa: E402
from spinlock.viz.select import explicit  # noqa: E402


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the ffmpeg encoder)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--operators", type=int, default=16)
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--grid", type=int, default=64)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="write outputs here instead of a temporary folder")
    args = ap.parse_args()

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {cpu}, {cpus} CPU(s), python {platform.python_version()}, load average {load:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        t0 = time.perf_counter()
        syn = make_run(
            root / "run",
            n=args.operators,
            m=2,
            steps=args.frames - 1,
            channels=args.channels,
            grid=args.grid,
            diverged=(),
        )
        print(
            f"synthetic run: {syn.n} operators, M=2, T={args.frames}, C={args.channels}, {args.grid}^2"
            f" ({time.perf_counter() - t0:.1f} s to build)"
        )
        run = RunData(syn.out)
        group = explicit(run, list(range(syn.n)))
        cases = [("rgb", False), ("heatmap", False), ("pca", False), ("rgb", True)]
        for mode, aggregate in cases:
            opts = RenderOptions(mode=mode, formats=("gif", "mp4", "grid"), aggregate=aggregate)
            t0, c0 = time.perf_counter(), cpu_seconds()
            paths = render_group(run, group, root / f"out-{mode}-{int(aggregate)}", opts)
            dt, dc = time.perf_counter() - t0, cpu_seconds() - c0
            size = sum(p.stat().st_size for p in paths) / 2**20
            what = "clip + aggregate clip + per-operator aggregate PNGs" if aggregate else "clip"
            print(f"{mode:8s} {what:52s} wall {dt:6.1f} s  cpu {dc:6.1f} s  ({len(paths)} files, {size:.1f} MiB)")


if __name__ == "__main__":
    main()
