"""`spinlock neighbors DIR --operator I [-k K] [--levels L] [--tokenizer TOKDIR] [--dataset OTHER] [--out PNG]`:
the operators of a tokenized run whose behaviour is nearest to operator I of the run, or to operator I of
another run encoded with the trained tokenizer, by the distance between what their tokens decode to
(``spinlock.encoding.search``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEY_PARAMETERS = ("depth", "width", "kernel_size", "activation", "update_policy", "noise_level")
"""Parameters printed next to each neighbour (those the run has; a run with none of them: its first four)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="tokenized run directory (holds dataset.h5 with /tokens): the operators searched")
    p.add_argument("--operator", type=int, required=True, metavar="I",
                   help="global index of the query operator (in DIR, or in --dataset when given)")
    p.add_argument("-k", type=int, default=10, help="number of neighbours (default 10)")
    p.add_argument("--levels", type=int, default=3, choices=(1, 2, 3),
                   help="decode token prefixes of this many levels per stream (1 = coarse only; default 3)")
    p.add_argument("--tokenizer", default=None, metavar="TOKDIR",
                   help="the trained tokenizer that wrote DIR's tokens (default DIR/tokenizer): it decodes them"
                        " and encodes a --dataset query")
    p.add_argument("--dataset", default=None, metavar="OTHER",
                   help="another run directory holding the query operator: its features are encoded with the"
                        " tokenizer")
    p.add_argument("--out", type=Path, default=None, metavar="PNG",
                   help="PNG of the query's and neighbours' final frames (needs stored trajectories)")


def parameter_text(f, rows: list[int]) -> list[str]:  # noqa: ANN001 (an open h5py.File)
    """``name=value`` text of :data:`KEY_PARAMETERS` for each row (choice parameters by their label)."""
    if "parameters/values" not in f:
        return [""] * len(rows)
    ds = f["parameters/values"]
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in ds.attrs["names"]]
    raw = ds.attrs.get("choices", "{}")
    choices = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    values = ds[sorted(set(rows))]
    at = {r: i for i, r in enumerate(sorted(set(rows)))}
    shown = [n for n in KEY_PARAMETERS if n in names] or names[:4]
    out = []
    for r in rows:
        parts = []
        for name in shown:
            v = values[at[r], names.index(name)]
            parts.append(f"{name}={choices[name][int(v)] if name in choices else f'{v:.4g}'}")
        out.append(" ".join(parts))
    return out


def render_neighbors(run, query_row: int, neighbors, out: Path, query_run=None,  # noqa: ANN001 (RunData)
                     query_label: str | None = None) -> None:
    """PNG: the final frame (realization 0) of the query operator, then of each neighbour, labelled with
    operator index and distance. ``query_run``: the run holding the query (default ``run``)."""
    from spinlock.viz.canvas import ClipCanvas
    from spinlock.viz.frames import Panel
    from spinlock.viz.render import default_mode, last_frames
    from spinlock.viz.video import write_png

    qrun = query_run or run
    mode = default_mode(run.channels or 1)
    q = last_frames(qrun, [query_row], mode, "viridis", 1.0)
    nb = last_frames(run, [int(r) for r in neighbors.rows], mode, "viridis", 1.0)
    label = query_label or f"query op {int(qrun.operator_index[query_row])}"
    panels = [Panel(label, q[0][None])] + [
        Panel(f"op {int(run.operator_index[r])} d={d:.2f}", img[None])
        for r, d, img in zip(neighbors.rows, neighbors.distances, nb, strict=True)]
    shapes = {p.pixels.shape for p in panels}
    if len(shapes) != 1:
        from spinlock.errors import DataError

        raise DataError(f"the query's and the neighbours' frames differ in size ({sorted(shapes)})")
    scale = max(1, 96 // panels[0].pixels.shape[1])
    canvas = ClipCanvas(panels, [int(run.frame_steps()[-1])], title="nearest behaviour (final frames)",
                        ncols=min(len(panels), 6), scale=scale)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(canvas.frame(0), out)


def run(args: argparse.Namespace) -> int:
    import h5py

    from spinlock.encoding.search import SearchIndex, encode_operators
    from spinlock.encoding.tokenizer import Tokenizer
    from spinlock.errors import DataError
    from spinlock.features.census import CLASSES
    from spinlock.storage.reader import read_census
    from spinlock.viz.rundata import RunData

    if args.k < 1:
        raise DataError(f"-k must be >= 1, got {args.k}")
    data = RunData(args.dir)
    if not data.has_tokens:
        raise DataError(f"{data.dataset_path}: no /tokens (run 'spinlock tokenize' or 'spinlock encode' first)")
    qrun = data if args.dataset is None else RunData(args.dataset)
    qrow = qrun.rows_of([args.operator])[0]
    tokdir = Path(args.tokenizer) if args.tokenizer else data.tokenizer_dir
    tok = Tokenizer.load(tokdir)
    index = SearchIndex.open(data.out_dir, tok, args.levels)
    with h5py.File(data.dataset_path, "r") as f:
        census, _ = read_census(f)
        if qrun is data:
            query, exclude, where = f["tokens"][qrow], [qrow], f"operator {args.operator}"
    if qrun is not data:
        query = encode_operators(tok, qrun.out_dir, [args.operator])[0]
        exclude, where = None, f"operator {args.operator} of {qrun.out_dir} (encoded with {tokdir})"
    nb = index.query(query, args.k, exclude)
    if qrun is not data:
        with h5py.File(qrun.dataset_path, "r") as f:
            qcensus, _ = read_census(f)
    else:
        qcensus = census
    with h5py.File(data.dataset_path, "r") as f:
        params = parameter_text(f, [int(r) for r in nb.rows])
    built = f"built in {index.seconds:.1f} s" if index.seconds else "loaded"
    print(f"{len(nb.rows)} nearest to {where} (census {CLASSES[int(qcensus[qrow])].name}) in {data.out_dir}"
          f" ({data.n} operators; {index.describe()}; {built})")
    print(f"{'rank':>4}  {'operator':>8}  {'distance':>8}  {'census':<15}  parameters")
    for i, (r, d, ptxt) in enumerate(zip(nb.rows, nb.distances, params, strict=True), start=1):
        print(f"{i:>4}  {int(data.operator_index[r]):>8}  {d:>8.3f}  {CLASSES[int(census[r])].name:<15}  {ptxt}")
    if args.out is not None:
        if data.trajectory_shape is None or qrun.trajectory_shape is None:
            print(f"no picture: {'the query run' if data.trajectory_shape else data.dataset_path} stores no"
                  " trajectories (storage.trajectories.store: false)")
        else:
            render_neighbors(data, qrow, nb, args.out, qrun)
            print(f"wrote {args.out}")
    return 0
