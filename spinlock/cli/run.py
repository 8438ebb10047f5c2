"""`spinlock run CONFIG [--out DIR] [--address ADDR]`: the whole pipeline in one command."""

from __future__ import annotations

import argparse

from spinlock.cli.generate import positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config YAML")
    p.add_argument("--out", default=None,
                   help="output directory or s3:// / gs:// URI (default: runs/<name>); rerun to resume")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join ('auto' or HOST:PORT); default: RAY_ADDRESS, else an embedded Ray")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="at most N generation actors at once (caps distributed.max_actors)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted path), validated like the file; repeatable")


def run(args: argparse.Namespace) -> int:
    from spinlock import logs
    from spinlock.config import load_config
    from spinlock.pipeline import run_pipeline
    from spinlock.storage.remote import check_location

    out = check_location(args.out, "--out") if args.out else None  # a URI stays a string, checked first
    cfg = load_config(args.config, args.overrides)
    summary = run_pipeline(cfg, out or f"runs/{cfg.name}", address=args.address, workers=args.workers,
                           show_progress=not logs.quiet())
    secs = summary["seconds"]
    print(f"dataset:   {summary['dataset']}")
    print(f"tokenizer: {summary['tokenizer_dir']}")
    print(f"report:    {summary['report']}/index.html")
    print("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in secs.items()))
    return 0
