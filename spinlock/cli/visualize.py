"""`spinlock visualize DIR --out OUTDIR`: rollout clips, aggregate panels, feature and tokenizer plots.

Only parses arguments and calls :mod:`spinlock.viz`; the selection rules and render modes are defined
in ``spinlock.viz.select`` / ``spinlock.viz.frames`` and documented in docs/visualization.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from spinlock.errors import SpinlockError

if TYPE_CHECKING:  # the viz stack (matplotlib, sklearn) is imported only when the command runs
    from spinlock.viz.rundata import RunData
    from spinlock.viz.select import Group

PLOTS = ("rollouts", "features", "tokenizer")


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="run output directory (holding dataset.h5), a dataset.h5 file, or its s3:// / gs:// URI")
    p.add_argument("--out", required=True, help="local folder for the renderings and plots")
    sel = p.add_argument_group("operator selection (one of; default --random 4)").add_mutually_exclusive_group()
    sel.add_argument("--operators", type=_int_list, metavar="I,J,...", help="global operator indices")
    sel.add_argument("--random", type=int, metavar="K", help="K ok operators drawn with --seed")
    sel.add_argument("--per-token", action="store_true", help="one operator (medoid) per coarse token of --category")
    sel.add_argument("--per-category", action="store_true", help="--per-token for every category (a clip each)")
    sel.add_argument("--most-diverse", type=int, metavar="K", help="K operators most spread out (see --diversity)")
    sel.add_argument("--least-diverse", type=int, metavar="K", help="K most alike operators (see --diversity)")
    p.add_argument("--category", help="token category (name or index) for --per-token; default the first")
    p.add_argument(
        "--diversity",
        choices=("features", "realizations"),
        help="--most/--least-diverse measure: distance in robust-scaled summary features (default) or"
        " realization spread (needs stored trajectories)",
    )
    p.add_argument("--seed", type=int, help="seed of --random and of the plots' draws (default: the run seed)")
    r = p.add_argument_group("rendering")
    r.add_argument(
        "--mode",
        choices=("heatmap", "rgb", "pca"),
        default="heatmap",
        help="heatmap: a panel per channel; rgb: 3 channels as colour; pca: channels projected to RGB",
    )
    r.add_argument("--cmap", default="RdBu_r", help="matplotlib colormap of heatmap mode (default RdBu_r)")
    r.add_argument("--channels", type=_int_list, metavar="A,B,...", help="channels to show (default all; rgb: 3)")
    r.add_argument("--realizations", type=int, default=1, metavar="R", help="first R realizations side by side")
    r.add_argument("--steps", type=int, metavar="T", help="last simulation step to render (default: final)")
    r.add_argument("--stride", type=int, metavar="S", help="simulation steps between frames (default: stored)")
    r.add_argument(
        "--percentile",
        type=float,
        default=1.0,
        help="colour limits at this / 100-this percentile of the whole clip (default 1)",
    )
    r.add_argument("--format", default="gif,mp4,grid", help="comma list of gif, mp4, png (frames), grid")
    r.add_argument("--fps", type=float, default=10.0)
    r.add_argument("--scale", type=int, help="integer upscaling of panels (default: panels >= 128 px)")
    r.add_argument("--grid-frames", type=int, default=8, help="frames in the grid PNG")
    r.add_argument("--no-aggregate", action="store_true", help="skip mean/variance/spectrum panels")
    p.add_argument(
        "--plots",
        default="rollouts,features,tokenizer",
        help=f"comma list of {', '.join(PLOTS)} (default all)",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="also write the full run report (index.html, summary.md, plots) into <--out>/report",
    )


def run(args: argparse.Namespace) -> int:
    from spinlock.storage.remote import check_location, require_local
    from spinlock.viz.render import RenderOptions, render_group
    from spinlock.viz.rundata import RunData
    from spinlock.viz.video import parse_formats

    require_local(args.out, "--out")
    check_location(args.dir, "run")
    plots = [v.strip() for v in args.plots.split(",") if v.strip()]
    if not plots or any(v not in PLOTS for v in plots):
        raise SpinlockError(f"--plots {args.plots!r}: expected a comma list of {list(PLOTS)}")
    if args.category is not None and not args.per_token:
        raise SpinlockError("--category only applies to --per-token")
    if args.diversity is not None and args.most_diverse is None and args.least_diverse is None:
        raise SpinlockError("--diversity only applies to --most-diverse / --least-diverse")
    run_data = RunData(args.dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seed = run_data.seed if args.seed is None else args.seed
    written: list[Path] = []
    if "rollouts" in plots:
        try:
            opts = RenderOptions(
                mode=args.mode,
                cmap=args.cmap,
                channels=tuple(args.channels) if args.channels else None,
                realizations=args.realizations,
                last_step=args.steps,
                stride=args.stride,
                percentile=args.percentile,
                formats=tuple(parse_formats(args.format)),
                fps=args.fps,
                scale=args.scale,
                grid_frames=args.grid_frames,
                aggregate=not args.no_aggregate,
            )
        except ValidationError as e:
            raise SpinlockError(_flag_errors(e)) from None
        for group in _groups(args, run_data, seed):
            written += render_group(run_data, group, out / "rollouts", opts)
    if "features" in plots:
        written += _feature_plots(run_data, out)
    if "tokenizer" in plots:
        written += _tokenizer_plots(run_data, out, args.mode, args.cmap, seed)
    if args.report:
        from spinlock.storage.layout import REPORT_DIR
        from spinlock.viz.report import write_report

        written.append(write_report(run_data.out_dir, out / REPORT_DIR, seed=seed) / "index.html")
    frames = {p for p in written if p.parent.name.endswith("-frames")}
    for p in written:
        if p not in frames:
            print(p)
    if frames:
        print(f"+ {len(frames)} PNG frames in {len({p.parent for p in frames})} *-frames folder(s)")
    return 0


def _groups(args: argparse.Namespace, run_data: RunData, seed: int) -> list[Group]:
    from spinlock.viz import select

    if args.operators is not None:
        return [select.explicit(run_data, args.operators)]
    if args.per_token or args.per_category:
        tokens = run_data.tokens()
        if tokens is None:
            raise SpinlockError(f"{run_data.dataset_path} has no /tokens yet: run 'spinlock tokenize' first")
        return (
            select.per_category(run_data, tokens)
            if args.per_category
            else [select.per_token(run_data, tokens, args.category)]
        )
    by = args.diversity or "features"
    if args.most_diverse is not None:
        return [select.diverse(run_data, args.most_diverse, True, by)]
    if args.least_diverse is not None:
        return [select.diverse(run_data, args.least_diverse, False, by)]
    return [select.random_group(run_data, 4 if args.random is None else args.random, seed)]


def _feature_plots(run_data: RunData, out: Path) -> list[Path]:
    from spinlock.viz.report import features_section

    d = out / "features"
    d.mkdir(parents=True, exist_ok=True)
    section = features_section(run_data, d)
    for line in section.lines:
        print(f"features: {line}")
    return [p.path for p in section.plots]


def _tokenizer_plots(run_data: RunData, out: Path, mode: str, cmap: str, seed: int) -> list[Path]:
    from spinlock.viz.report import tokenizer_section

    d = out / "tokenizer"
    d.mkdir(parents=True, exist_ok=True)
    section = tokenizer_section(run_data, d, mode, seed, cmap=cmap)
    for line in section.lines:
        print(f"tokenizer: {line}")
    return [p.path for p in section.plots]


def _flag_errors(e: ValidationError) -> str:
    flags = {
        "last_step": "--steps",
        "formats": "--format",
        "aggregate": "--no-aggregate",
        "grid_frames": "--grid-frames",
    }
    parts = []
    for err in e.errors():
        key = str(err["loc"][0]) if err["loc"] else "?"
        parts.append(f"{flags.get(key, '--' + key.replace('_', '-'))}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)
