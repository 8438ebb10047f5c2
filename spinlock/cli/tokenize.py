"""`spinlock tokenize DIR [--config CONFIG] [--address ADDR]`: clean, discover categories, train, tokens."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="run output directory (holds config.yaml, features/, dataset.h5)")
    p.add_argument("--config", default=None,
                   help="run config YAML whose seed and tokenizer section to use (default: DIR/config.yaml)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join ('auto' or HOST:PORT); default: RAY_ADDRESS, else an embedded Ray")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spinlock.config import config_hash, load_config
    from spinlock.distributed.cluster import ray_session
    from spinlock.distributed.train import tokenize_run
    from spinlock.errors import DataError

    out = Path(args.dir)
    if not out.is_dir():
        raise DataError(f"run directory not found: {out}")
    cfg = load_config(args.config or out / "config.yaml")
    with ray_session(args.address):
        tokenize_run(out, cfg.tokenizer, cfg.seed, config_hash(cfg))
    return 0
