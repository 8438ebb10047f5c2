"""`spinlock info PATH [--check]`: summary of a dataset or shard; --check verifies the format spec."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="run directory, dataset.h5 or a shard file (or its s3:// / gs:// URI)")
    p.add_argument("--check", action="store_true", help="check the file against docs/dataset-format.md")


def run(args: argparse.Namespace) -> int:
    from spinlock.storage.checker import check_file
    from spinlock.storage.reader import dataset_file, describe

    p = dataset_file(args.path)  # a URI: fetched to this machine's cache (HDF5 wants a seekable file)
    print(describe(p))
    if args.check:
        problems = check_file(p)
        if problems:
            print(f"format check FAILED ({len(problems)} problem(s)):")
            for x in problems:
                print(f"  - {x}")
            return 1
        print("format check passed")
    return 0
