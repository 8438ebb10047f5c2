"""`spinlock generate CONFIG --out DIR`: sharded generation + merge; rerunning on DIR resumes."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config YAML")
    p.add_argument("--out", default=None, help="output directory (default: runs/<name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted path), validated like the file; repeatable")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spinlock.config import load_config
    from spinlock.generate import generate_local

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    path = generate_local(cfg, out)
    print(f"dataset: {path}")
    return 0
