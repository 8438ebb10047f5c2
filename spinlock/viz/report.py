"""The run report: ``OUT/report/`` with PNG/GIF plots, a self-contained ``index.html`` and ``summary.md``.

Sections: dataset summary, behaviour census, feature plots, tokenizer dashboards, rollout renderings. Anything the run
does not have (tokens, tokenizer/, temporal features, trajectories without a replay) is omitted with a
sentence saying why, never an error. In ``index.html`` every image is inlined (base64) and wrapped in
a link to its file, so the page works alone and every plot stays reachable.
"""

from __future__ import annotations

import base64
import html
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from spinlock import __version__
from spinlock.errors import SpinlockError
from spinlock.features import census
from spinlock.storage.layout import REPORT_DIR, SCALAR_FAMILIES
from spinlock.storage.reader import read_census
from spinlock.viz import census_plots as cp
from spinlock.viz import feature_plots as fp
from spinlock.viz import tokenizer_plots as tp
from spinlock.viz.aggregate import plot_aggregate
from spinlock.viz.colors import FIELD_CMAP
from spinlock.viz.render import RenderOptions, default_mode, render_group
from spinlock.viz.rundata import RunData, sample_note, status_name
from spinlock.viz.select import random_group

MAX_REPORT_FRAMES = 64
_INLINE_MAX_BYTES = 8 << 20


@dataclass
class Plot:
    path: Path
    caption: str


@dataclass
class Section:
    title: str
    lines: list[str] = field(default_factory=list)
    """Markdown-free sentences (escaped in HTML)."""
    table: list[tuple[str, str]] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path)
    return path


def dataset_section(run: RunData, out: Path) -> Section:
    s = Section("Dataset")
    status = Counter({status_name(c): int(k) for c, k in zip(*np.unique(run.status, return_counts=True), strict=True)})
    s.table = [
        ("dataset", str(run.dataset_path)),
        ("operators N", str(run.n)),
        ("status", ", ".join(f"{k}: {v}" for k, v in sorted(status.items()))),
        ("parameters P", str(run.n_parameters) if run.n_parameters is not None else "absent"),
        ("realizations M", str(run.realizations)),
        ("steps T", str(run.simulation_steps)),
        (
            "channels C, grid",
            f"{run.channels}, {run.ic_shape[1]}×{run.ic_shape[2]}" if run.ic_shape else "unknown",
        ),
        (
            "trajectories",
            f"stored every {run.stored_stride} step(s)" if run.stored_steps is not None else "not stored",
        ),
        ("feature widths", ", ".join(f"{k}: {v}" for k, v in run.feature_widths.items()) or "no features"),
        ("tokens", "present" if run.has_tokens else "absent (tokenizer not run)"),
    ]
    counts = run.ic_type_counts()
    if counts is not None:
        names = sorted(counts, key=lambda k: (-counts[k], k))
        fig = Figure(figsize=(6.0, 0.9 + 0.22 * len(names)), dpi=100)
        FigureCanvasAgg(fig)
        fig.subplots_adjust(
            left=0.3,
            right=0.95,
            top=1 - 0.3 / (0.9 + 0.22 * len(names)),
            bottom=0.5 / (0.9 + 0.22 * len(names)),
        )
        ax = fig.add_subplot(1, 1, 1)
        ax.barh(range(len(names)), [counts[n] for n in names], color="#4c72b0")
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.invert_yaxis()
        ax.set_xlabel("operators", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_title(f"IC types ({len(names)})", fontsize=8)
        s.plots.append(Plot(_save(fig, out / "dataset-ic-types.png"), "operators per initial-condition type"))
        s.table.append(("IC types", ", ".join(f"{n}: {counts[n]}" for n in names)))
    return s


def census_section(run: RunData, out: Path, seed: int) -> Section:
    s = Section("Behaviour census")
    with h5py.File(run.dataset_path, "r") as f:
        codes, notes = read_census(f)
        params = cp.parameter_bins(f, run.config.get("parameters") or {})
    c = census.counts(codes)
    s.lines.append(
        "Each operator's class from /status and four summary features (docs/features.md, Behaviour census); "
        "the first rule that holds wins. Per parameter, bars show the class fractions of each value or "
        "quarter of its range, most informative parameter first: narrow the ranges that feed the classes "
        "you do not want before a large run."
    )
    s.lines += notes
    s.table = [(k.name, f"{c[k.name]} ({100 * c[k.name] / max(run.n, 1):.1f} %): {k.criterion}")
               for k in census.CLASSES if c[k.name]]
    fig = cp.plot_census(codes, params)
    s.plots.append(Plot(_save(fig, out / "census.png"), "behaviour census, overall and per sampled parameter"))
    if run.stored_steps is None:
        s.lines.append("Class examples omitted: trajectories are not stored (they would need a replay per operator).")
        return s
    try:
        fig = cp.plot_class_examples(run, codes, seed)
    except SpinlockError as e:
        s.lines.append(f"Class examples omitted: {e}")
        return s
    if fig is not None:
        s.plots.append(Plot(_save(fig, out / "census-examples.png"), "a few operators of each class"))
    return s


def features_section(run: RunData, out: Path) -> Section:
    s = Section("Features")
    ok = run.ok_rows
    rows = run.plot_rows()
    shown = sample_note(rows.size, ok.size)
    s.lines.append(f"Statistics over {shown} (status 0)" + (
        "." if rows.size == ok.size else ", drawn with the run seed (the figures read a bounded sample)."))
    tables = {fam: run.features(fam, rows) for fam in SCALAR_FAMILIES}
    for fam, t in tables.items():
        if t is None:
            s.lines.append(f"No /features/{fam} in the dataset.")
            continue
        fig = fp.plot_distributions(t.values, t.names, f"{fam} features", total=ok.size)
        s.plots.append(Plot(_save(fig, out / f"features-{fam}.png"), f"{fam}: distributions over {shown}"))
    corr_table = tables.get("summary")
    if corr_table is not None:
        cats = run.categories()
        # correlate every scalar family when categories span families, else the summary family only
        if cats:
            present = [t for t in tables.values() if t is not None]
            values = np.concatenate([t.values for t in present], axis=1)
            names = [f"{t.family}.{n}" for t in present for n in t.names]
        else:
            values, names = corr_table.values, corr_table.names
        del tables, corr_table
        fig = fp.plot_correlation(values, names, cats, ("features" if cats else "summary features")
                                 + ("" if rows.size == ok.size else f", {fp.operator_count(rows.size, ok.size)}"))
        how = "blocks = tokenizer categories" if cats else "clustered order (no tokenizer/categories.json)"
        s.plots.append(Plot(_save(fig, out / "features-correlation.png"), f"feature correlation over {shown}, {how}"))
    temporal = run.temporal(rows)
    if temporal is None:
        s.lines.append("No /features/temporal in the dataset: temporal plot omitted.")
    else:
        fig = fp.plot_temporal(temporal.values, temporal.names, temporal.steps, total=ok.size)
        s.plots.append(Plot(_save(fig, out / "features-temporal.png"), f"temporal features over time, {shown}"))
    return s


def tokenizer_section(run: RunData, out: Path, mode: str, seed: int, cmap: str = FIELD_CMAP) -> Section:
    s = Section("Tokenizer")
    records = run.metrics()
    cats = run.categories()
    tokens = run.tokens()
    if not run.tokenizer_dir.is_dir() and tokens is None:
        s.lines.append("No tokenizer/ directory and no /tokens: the tokenizer has not run; section omitted.")
        return s
    if records:
        for fig, name, cap in (
            (tp.plot_training_curves(records), "tokenizer-training.png", "training curves"),
            (
                tp.plot_codebook_training(records),
                "tokenizer-codebook-training.png",
                "codebook usage / perplexity",
            ),
        ):
            if fig is not None:
                s.plots.append(Plot(_save(fig, out / name), cap))
    else:
        s.lines.append("No tokenizer/metrics.jsonl: training curves omitted.")
    if cats:
        s.plots.append(
            Plot(_save(tp.plot_category_sizes(cats), out / "tokenizer-category-sizes.png"), "category sizes")
        )
    else:
        s.lines.append("No tokenizer/categories.json: category sizes omitted.")
    if tokens is None:
        s.lines.append("No /tokens in the dataset: code usage, embedding and same-token panels omitted.")
        return s
    from spinlock.encoding.frontier import run_frontier  # torch + the quantizer library: only when tokenized

    try:
        fig = tp.plot_frontier(run_frontier(run.out_dir))
        s.plots.append(Plot(_save(fig, out / "tokenizer-frontier.png"), "validation R² against tokens, vs PCA + PQ"))
    except (SpinlockError, KeyError) as e:
        s.lines.append(f"Frontier omitted: {e}")
    s.table = [("categories", ", ".join(tokens.categories)), ("levels", str(tokens.levels))]
    s.plots.append(Plot(_save(tp.plot_code_usage(tokens), out / "tokenizer-code-usage.png"), "final code usage"))
    try:
        fig = tp.plot_token_embedding(run, tokens)
        shown = sample_note(run.plot_rows().size, run.ok_rows.size)
        s.plots.append(Plot(_save(fig, out / "tokenizer-embedding.png"),
                            f"2-D embedding of {shown}, coloured by coarse token"))
    except SpinlockError as e:
        s.lines.append(f"Embedding omitted: {e}")
    try:
        fig = tp.plot_same_token(run, tokens, mode, cmap, seed=seed)
        s.plots.append(Plot(_save(fig, out / "tokenizer-same-token.png"), "same coarse token, different operators"))
    except SpinlockError as e:
        s.lines.append(f"Same-token panel omitted: {e}")
    return s


def rollout_section(run: RunData, out: Path, n_operators: int, seed: int, mode: str) -> Section:
    s = Section("Rollouts")
    try:
        base = run.stored_stride or 1
        n_frames = (run.simulation_steps or 0) // base + 1
        stride = base * max(1, math.ceil(n_frames / MAX_REPORT_FRAMES))
        opts = RenderOptions(mode=mode, realizations=2, stride=stride, formats=("gif", "grid"), aggregate=False)
        group = random_group(run, n_operators, seed)
        paths = render_group(run, group, out / "rollouts", opts)
        steps = run.frame_steps(None, stride)
        first = group.rows[0]
        traj = run.trajectory(first, steps)
        fig = plot_aggregate(
            traj,
            steps.tolist(),
            list(range(min(traj.shape[2], 3))),
            f"{group.labels[0]}: realization mean, variance, power spectrum ({traj.shape[0]} realizations)",
        )
        agg = _save(fig, out / "rollouts" / f"op{int(run.operator_index[first])}-aggregate.png")
    except SpinlockError as e:
        s.lines.append(f"Rollout renderings omitted: {e}")
        return s
    s.lines.append(f"{group.title}, rendered in {mode} mode every {stride} step(s).")
    for p in paths:
        s.plots.append(Plot(p, "rollout clip" if p.suffix == ".gif" else "evenly spaced frames of the clip"))
    s.plots.append(Plot(agg, "aggregate panel of the first operator"))
    return s


def write_report(
    out_dir: str | Path, report_dir: str | Path | None = None, seed: int | None = None, rollouts: int = 4
) -> Path:
    """Write the report of the run in ``out_dir`` to ``report_dir`` (default ``out_dir/report``) and
    return that directory. ``seed`` (default: the run seed) picks the ``rollouts`` rendered operators."""
    run = RunData(out_dir)
    out = Path(report_dir) if report_dir is not None else run.out_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    seed = run.seed if seed is None else int(seed)
    mode = default_mode(run.channels or 1)
    sections = [
        dataset_section(run, out),
        census_section(run, out, seed),
        features_section(run, out),
        tokenizer_section(run, out, mode, seed),
        rollout_section(run, out, rollouts, seed, mode),
    ]
    (out / "index.html").write_text(render_html(sections, out, run))
    (out / "summary.md").write_text(render_markdown(sections, out, run))
    return out


def _rel(p: Path, root: Path) -> str:
    return p.relative_to(root).as_posix()


def render_markdown(sections: list[Section], root: Path, run: RunData) -> str:
    lines = [f"# Spinlock report: {run.out_dir.name}", "", f"spinlock {__version__}", ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        if s.table:
            lines += ["| | |", "|---|---|"] + [f"| {k} | {v.replace('|', '/')} |" for k, v in s.table] + [""]
        lines += [f"- {t}" for t in s.lines] + ([""] if s.lines else [])
        lines += [f"![{p.caption}]({_rel(p.path, root)})" for p in s.plots] + [""]
    return "\n".join(lines)


def _img_src(p: Path, root: Path) -> str:
    data = p.read_bytes()
    if len(data) > _INLINE_MAX_BYTES:
        return html.escape(_rel(p, root))
    mime = {".png": "image/png", ".gif": "image/gif"}.get(p.suffix, "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def render_html(sections: list[Section], root: Path, run: RunData) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        "<html><head><meta charset='utf-8'>",
        f"<title>Spinlock report: {e(run.out_dir.name)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
        "img{max-width:100%;border:1px solid #ddd}figure{margin:1em 0}td{padding:2px 8px}"
        "td:first-child{font-weight:bold}</style>",
        "</head><body>",
        f"<h1>Spinlock report: {e(run.out_dir.name)}</h1><p>spinlock {e(__version__)}</p>",
        "<ul>" + "".join(f"<li><a href='#s{i}'>{e(s.title)}</a></li>" for i, s in enumerate(sections)) + "</ul>",
    ]
    for i, s in enumerate(sections):
        parts.append(f"<h2 id='s{i}'>{e(s.title)}</h2>")
        if s.table:
            parts.append(
                "<table>" + "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in s.table) + "</table>"
            )
        parts += [f"<p>{e(t)}</p>" for t in s.lines]
        for p in s.plots:
            rel = e(_rel(p.path, root))
            parts.append(
                f"<figure><a href='{rel}'><img src='{_img_src(p.path, root)}' alt='{e(p.caption)}'></a>"
                f"<figcaption>{e(p.caption)} (<a href='{rel}'>{rel}</a>)</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)
