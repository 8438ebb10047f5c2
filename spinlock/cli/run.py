"""`spinlock run CONFIG [--out DIR] [--address ADDR]`: the whole pipeline in one command."""

from __future__ import annotations

import argparse

from spinlock.cli.generate import positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config YAML")
    p.add_argument("--out", default=None, help="output directory (default: runs/<name>); rerun to resume")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join ('auto' or HOST:PORT); default: RAY_ADDRESS, else an embedded Ray")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="at most N generation actors at once (caps distributed.max_actors)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted path), validated like the file; repeatable")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spinlock import logs
    from spinlock.config import load_config
    from spinlock.pipeline import run_pipeline

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    summary = run_pipeline(cfg, out, address=args.address, workers=args.workers, show_progress=not logs.quiet())
    secs = summary["seconds"]
    print(f"dataset:   {summary['dataset']}")
    print(f"tokenizer: {out / 'tokenizer'}")
    print(f"report:    {Path(summary['report']) / 'index.html'}")
    print("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in secs.items()))
    return 0
