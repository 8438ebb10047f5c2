"""`spinlock ics`: list the initial-condition types by tier with their parameters; ``--out`` renders a gallery."""

from __future__ import annotations

import argparse

from spinlock.errors import SpinlockError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="FILE", help="write a PNG gallery of every type (channel 0 heatmaps)")
    p.add_argument("--samples", type=int, default=4, help="with --out: samples per type (default 4)")
    p.add_argument("--grid", type=int, default=128, help="with --out: grid size H = W (default 128)")
    p.add_argument("--seed", type=int, default=0, help="with --out: seed of the gallery keys (default 0)")
    p.add_argument(
        "--type",
        dest="types",
        action="append",
        metavar="NAME",
        help="only this type, in the listing and the gallery (repeatable)",
    )
    p.add_argument(
        "--format", choices=["text", "markdown"], default="text", help="listing format (markdown: the docs tables)"
    )


def run(args: argparse.Namespace) -> int:
    from spinlock.ics.describe import format_markdown, format_text
    from spinlock.ics.registry import ic_types

    types = ic_types()
    if args.types:
        unknown = [t for t in args.types if t not in types]
        if unknown:
            raise SpinlockError(f"unknown IC type(s) {unknown}; expected one of {sorted(types)}")
        types = {name: ic for name, ic in types.items() if name in args.types}
    if args.out:
        from spinlock.storage.remote import require_local

        require_local(args.out, "--out")
        if args.samples < 1 or args.grid < 8:
            raise SpinlockError(f"--samples must be >= 1 and --grid >= 8, got {args.samples} and {args.grid}")
        from spinlock.viz.gallery import render_gallery

        path = render_gallery(args.out, samples=args.samples, grid=args.grid, seed=args.seed, names=list(types))
        print(f"wrote {path} ({len(types)} types × {args.samples} samples, grid {args.grid}, seed {args.seed})")
        return 0
    print(format_markdown(types) if args.format == "markdown" else format_text(types), end="")
    return 0
