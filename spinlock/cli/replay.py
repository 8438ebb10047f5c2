"""`spinlock replay DIR --operator I`: re-run one operator and check its stored record against it."""

from __future__ import annotations

import argparse

import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="run directory or dataset.h5 (or its s3:// / gs:// URI)")
    p.add_argument("--operator", type=int, required=True, help="global operator index")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to re-run; auto: the device the operator was generated on if this machine has it,"
                        " else cpu (bit-exact checks need generation and replay on cpu in one precision)")
    p.add_argument("--save", metavar="FILE.npy", help="save the full-resolution trajectory [M, T+1, C, H, W]")


def run(args: argparse.Namespace) -> int:
    from spinlock.replay import compare_with_stored, replay_operator
    from spinlock.storage.remote import check_location, require_local

    require_local(args.save, "--save")
    check_location(args.dir, "run")
    rep = replay_operator(args.dir, args.operator, args.device)
    cmp = compare_with_stored(args.dir, rep)
    M, T1, C, H, W = rep.trajectory.shape
    print(f"operator {args.operator}: replayed {M} realization(s) × {T1 - 1} steps, {C}×{H}×{W},"
          f" on {rep.device} in {rep.precision}, status {rep.status}")
    print(f"comparison: {cmp.mode} — {cmp.reason}")
    for c in cmp.checks:
        print(f"  {c.name}: {'ok' if c.ok else 'MISMATCH'} — {c.detail}")
    for note in cmp.notes:
        print(f"  note: {note}")
    if args.save:
        np.save(args.save, rep.trajectory)
        print(f"  saved {args.save}")
    if cmp.ok:
        print("replay matches the stored record " + ("bit for bit" if cmp.mode == "bit-exact" else "within tolerance"))
        return 0
    bad = ", ".join(c.name for c in cmp.checks if not c.ok)
    print(f"MISMATCH: the stored record differs from the replay ({bad})")
    return 1
