"""Arguments several commands share, defined once so that their flags, help and defaults agree."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_config(p: argparse.ArgumentParser) -> None:
    """``CONFIG``, the run config file."""
    p.add_argument("config", help="run config YAML")


def add_overrides(p: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE``, repeatable, into ``args.overrides``."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted path), validated like the file; repeatable")


def add_address(p: argparse.ArgumentParser) -> None:
    """``--address``, the Ray cluster to join."""
    p.add_argument("--address", default=None,
                   help="Ray cluster to join ('auto' or HOST:PORT); default: RAY_ADDRESS, else an embedded Ray")


def add_run_dir(p: argparse.ArgumentParser, holds: str) -> None:
    """``DIR``, a run's output folder or URI that ``holds`` what the command reads."""
    p.add_argument("dir", help=f"run output directory or s3:// / gs:// URI (holds {holds})")


def add_generation(p: argparse.ArgumentParser) -> None:
    """``CONFIG [--out DIR] [--address ADDR] [--workers N] [--set KEY=VALUE ...]`` of generate and run."""
    add_config(p)
    p.add_argument("--out", default=None,
                   help="output directory or s3:// / gs:// URI (default: runs/<name>); rerun to resume")
    add_address(p)
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="at most N generation actors at once (caps distributed.max_actors)")
    add_overrides(p)
