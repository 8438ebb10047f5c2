"""`spinlock generate CONFIG [--out DIR] [--address ADDR] [--workers N] [--set KEY=VALUE ...]`.

Sharded generation on Ray + merge; rerunning on the same DIR resumes. DIR may be an ``s3://``/``gs://``
URI. Exit code 0 only when every shard completed and the dataset was merged.
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config YAML")
    p.add_argument("--out", default=None,
                   help="output directory or s3:// / gs:// URI (default: runs/<name>); rerun to resume")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join: 'auto' or HOST:PORT (default: RAY_ADDRESS, else embedded Ray)")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="at most N generation actors at once (caps distributed.max_actors)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted path), validated like the file; repeatable")


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
