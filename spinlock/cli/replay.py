"""`spinlock replay DIR --operator I`: re-run one operator and check it against the stored data."""

from __future__ import annotations

import argparse

import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="run directory or dataset.h5 (or its s3:// / gs:// URI)")
    p.add_argument("--operator", type=int, required=True, help="global operator index")
    p.add_argument("--save", metavar="FILE.npy", help="save the full-resolution trajectory [M, T+1, C, H, W]")


def run(args: argparse.Namespace) -> int:
    from spinlock.replay import compare_with_stored, replay_operator
    from spinlock.storage.remote import check_location, require_local

    require_local(args.save, "--save")
    check_location(args.dir, "run")
    rep = replay_operator(args.dir, args.operator)
    cmp = compare_with_stored(args.dir, rep)
    M, T1, C, H, W = rep.trajectory.shape
    print(f"operator {args.operator}: replayed {M} realization(s) × {T1 - 1} steps, {C}×{H}×{W}, status {rep.status}")
    for k, v in cmp.items():
        print(f"  {k}: {v}")
    if args.save:
        np.save(args.save, rep.trajectory)
        print(f"  saved {args.save}")
    ok = all(v for k, v in cmp.items() if k.endswith("_equal"))
    print("replay matches the stored record bit for bit" if ok else "MISMATCH: replay differs from the stored record")
    return 0 if ok else 1
