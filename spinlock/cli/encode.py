"""`spinlock encode DIR --tokenizer TOKDIR [--actors N] [--address ADDR]`: tokens with a trained tokenizer."""

from __future__ import annotations

import argparse

from spinlock.cli.options import add_address, add_run_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_dir(p, "features/ and dataset.h5")
    p.add_argument("--tokenizer", required=True,
                   help="trained tokenizer directory or URI (e.g. OTHER_RUN/tokenizer)")
    p.add_argument("--actors", type=int, default=1, help="encode tasks running at once (Ray Data, one CPU each)")
    add_address(p)


def run(args: argparse.Namespace) -> int:
    from spinlock.cli.tokenize import run_location
    from spinlock.distributed.cluster import ray_session
    from spinlock.distributed.tokenize_stage import encode_run
    from spinlock.errors import DataError
    from spinlock.storage.remote import check_location

    out = run_location(args.dir)
    check_location(args.tokenizer, "--tokenizer")
    if args.actors < 1:
        raise DataError(f"--actors must be >= 1, got {args.actors}")
    with ray_session(args.address):
        encode_run(out, args.tokenizer, actors=args.actors)
    return 0
