"""`spinlock generate CONFIG [--out DIR] [--address ADDR] [--workers N] [--set KEY=VALUE ...]`.

Sharded generation on Ray + merge; rerunning on the same DIR resumes. DIR may be an ``s3://``/``gs://``
URI. Exit code 0 only when every shard completed and the dataset was merged.
"""

from __future__ import annotations

import argparse

from spinlock.cli.options import add_generation


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_generation(p)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spinlock import logs
    from spinlock.config import load_config
    from spinlock.distributed.driver import generate
    from spinlock.storage.remote import check_location

    out = check_location(args.out, "--out") if args.out else None  # a URI stays a string, checked first
    cfg = load_config(args.config, args.overrides)
    out = out or Path("runs") / cfg.name
    path = generate(cfg, out, address=args.address, workers=args.workers, show_progress=not logs.quiet())
    print(f"dataset: {path}")
    return 0
