"""`spinlock run CONFIG [--out DIR] [--address ADDR]`: the whole pipeline in one command."""

from __future__ import annotations

import argparse

from spinlock.cli.options import add_generation


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_generation(p)  # generate's arguments: run is generate, then tokenize and the report


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
