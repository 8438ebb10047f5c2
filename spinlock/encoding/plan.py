"""Sizing a tokenizer fit to its data (no Ray): the model spec, the training settings, their log lines.

:func:`plan_model` takes the cleaned rows k-means will start from as a numpy array, so the same plan
comes out of a unit test, a benchmark and the tokenize stage (which reads the rows through Ray Data,
:func:`spinlock.distributed.tokenize_stage.kmeans_sample`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from spinlock.config.tokenizer import ModelConfig, TokenizerConfig
from spinlock.encoding.layout import TokenLayout
from spinlock.encoding.model import ModelSpec, effective_inputs, scale_codebook_sizes, stream_names
from spinlock.encoding.rates import allocate_tokens, category_variances, stream_sizes, tokens_per_level
from spinlock.encoding.training import TrainSettings
from spinlock.storage.layout import SCALAR_FAMILIES

if TYPE_CHECKING:  # only its name and columns are read; the module imports SciPy and scikit-learn
    from spinlock.encoding.categories import DiscoveredCategory


def plan_model(m: ModelConfig, categories: Sequence[DiscoveredCategory], sample: np.ndarray, *, temporal_features: int,
               temporal_length: int, ic_channels: int, ic_resolution: int) -> tuple[ModelSpec, dict]:
    """The model spec of a fit, with codebook sizes scaled to the data, and the numbers behind them.

    ``sample`` [n, D'] holds the cleaned training rows k-means starts from (the first
    ``min(training rows, training.kmeans_init_rows)``); D' is the cleaned feature count.
    Level sizes: ``scale_codebook_sizes(codebook_sizes, n, rows_per_code)``. Tokens: ``model.tokens`` per
    level prefix; the temporal stream takes one per level and the IC stream one coarse token, the
    categories the rest, allocated by ``allocate_tokens`` over the variance of each category's principal
    components in the sample (which streams, with a token at which levels). A category whose effective
    inputs in the sample (``effective_inputs``) are at most the level-1 codes is discrete: one token of
    ``ceil(effective)`` codes explains it. Without rows nothing is measured: one stream per category with
    a token at every level. Returns the spec and a JSON-able dict of those numbers (``summary.json`` →
    ``codebook_plan``).
    """
    if sample.ndim != 2:
        raise ValueError(f"sample must be [rows, features], got shape {sample.shape}")
    init_rows = len(sample)
    levels = scale_codebook_sizes(m.codebook_sizes, init_rows, m.rows_per_code)
    measured = [effective_inputs(sample[:, list(c.columns)], m.code_resolution) if init_rows else None
                for c in categories]
    effective = [e if e is not None and e <= levels[0] else None for e in measured]
    # the temporal stream has a token at every level; the IC stream one coarse token (its finer levels
    # added < 0.005 to its statistics' R², docs/tokenizer.md "IC branch")
    other = [(1, 1, 1)] * bool(temporal_features) + [(1, 0, 0)]
    prefix = [m.tokens[0], m.tokens[1] - m.tokens[0], m.tokens[2] - m.tokens[1]]
    budgets = [max(0, b - sum(o[lv] for o in other)) for lv, b in enumerate(prefix)]
    if init_rows >= 2:
        patterns = allocate_tokens(category_variances(sample, [c.columns for c in categories]), budgets,
                                   m.components_per_stream, levels, effective)
    else:
        patterns = [[(True, True, True)] for _ in categories]
    per_category = [stream_sizes(p, levels, e) for p, e in zip(patterns, effective, strict=True)]
    sizes = [k for s in per_category for k in s]
    streams = [len(s) for s in per_category]
    names = (*stream_names([c.name for c in categories], streams), *(("temporal",) if temporal_features else ()),
             "ic")
    sizes += [tuple(k if t else 1 for k, t in zip(levels, o, strict=True)) for o in other]
    spec = ModelSpec(
        category_columns=tuple(c.columns for c in categories),
        n_features=sample.shape[1],
        temporal_features=temporal_features,
        temporal_length=temporal_length if temporal_features else 0,
        ic_channels=ic_channels,
        ic_resolution=ic_resolution,
        latent_dim=m.latent_dim,
        hidden_dim=m.hidden_dim,
        codebook_sizes=levels,
        commitment_weight=m.commitment_weight,
        ema_decay=m.ema_decay,
        dead_code_threshold=m.dead_code_threshold,
        kmeans_iters=m.kmeans_iters,
        encoder_names=names,
        encoder_codebook_sizes=tuple(sizes),
        category_streams=tuple(streams),
        stream_components=m.components_per_stream,
    )
    plan = {"configured": list(m.codebook_sizes), "init_rows": init_rows, "rows_per_code": m.rows_per_code,
            "code_resolution": m.code_resolution, "tokens": list(m.tokens),
            "components_per_stream": m.components_per_stream,
            "category_tokens": {c.name: tokens_per_level(p) for c, p in zip(categories, patterns, strict=True)},
            "category_streams": {c.name: s for c, s in zip(categories, streams, strict=True)},
            "effective_inputs": {c.name: (round(e, 1) if e is not None else None)
                                 for c, e in zip(categories, measured, strict=True)}}
    return spec, plan


def train_settings(cfg: TokenizerConfig, seed: int, names_out: list[str]) -> TrainSettings:
    """The training loop's settings from the tokenizer section; ``names_out`` (the cleaned feature names)
    gives each scalar family's columns for per-family validation R²."""
    t = cfg.training
    fams = [n.split(".", 1)[0] for n in names_out]
    family_columns = {f: [j for j, g in enumerate(fams) if g == f] for f in SCALAR_FAMILIES}
    return TrainSettings(epochs=t.epochs, learning_rate=t.learning_rate, weight_decay=t.weight_decay,
                         temporal_weight=cfg.model.temporal_weight, ic_weight=cfg.model.ic_weight,
                         kmeans_init_rows=t.kmeans_init_rows, seed=seed, family_columns=family_columns,
                         lr_schedule=t.lr_schedule, patience=t.patience, scalar_lr_scale=t.scalar_lr_scale)


def codebook_message(spec: ModelSpec, plan: dict) -> str:
    """One log line: the level sizes (and why, when scaled down), the tokens of each category per level,
    and the discrete categories."""
    msg = f"codebooks: {list(spec.codebook_sizes)} codes per level"
    if list(spec.codebook_sizes) != plan["configured"]:
        msg += (f" (configured {plan['configured']}, scaled down: <= {plan['init_rows']} k-means rows"
                f" / rows_per_code {plan['rows_per_code']})")
    per = plan["category_tokens"]
    counts = [sum(t[lv] for t in per.values()) for lv in range(3)]
    msg += (f"; tokens {plan['tokens']} at coarse/+medium/all, categories' per level {counts}"
            f" ({plan['components_per_stream']} principal components per stream): "
            + ", ".join(f"{n} {'/'.join(map(str, t))}" for n, t in per.items()))
    discrete = [f"{n} (~{e:.0f} inputs)" for n, e in plan["effective_inputs"].items()
                if e is not None and e <= spec.codebook_sizes[0]]
    if discrete:
        msg += f"; discrete, one token (resolution {plan['code_resolution']}): " + ", ".join(discrete)
    return msg + f"; {spec.n_encoders} token streams"


def layout_message(layout: TokenLayout, fit_rows: int) -> str:
    """One log line: how many token positions, and which levels are not positions and why."""
    one_code = [p.name for p, _ in layout.dropped if p.codebook_size == 1]
    collapsed = [p.name for p, _ in layout.dropped if p.codebook_size > 1]
    msg = (f"token layout: {len(layout.positions)} positions from {len(layout.streams)} streams"
           f" x 3 levels; not emitted: {len(one_code)} levels with one code")
    if collapsed:
        msg += (f", {len(collapsed)} codebooks of which the {fit_rows} training operators use one code: "
                + ", ".join(collapsed[:8]) + (" ..." if len(collapsed) > 8 else ""))
    return msg
