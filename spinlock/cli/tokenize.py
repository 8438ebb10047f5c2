"""`spinlock tokenize` (not implemented yet)."""

from __future__ import annotations

import argparse

from spinlock.errors import SpinlockError


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise SpinlockError("'spinlock tokenize' is not implemented yet")
