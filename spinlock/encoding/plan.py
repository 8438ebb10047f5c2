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
from spinlock.encoding.model import (
    ModelSpec,
    effective_inputs,
    encoder_codebook_sizes,
    scale_codebook_sizes,
    stream_names,
)
from spinlock.encoding.rates import plan_streams
from spinlock.encoding.training import TrainSettings
from spinlock.storage.layout import SCALAR_FAMILIES

if TYPE_CHECKING:  # only its name and columns are read; the module imports SciPy and scikit-learn
    from spinlock.encoding.categories import DiscoveredCategory


def plan_model(m: ModelConfig, categories: Sequence[DiscoveredCategory], sample: np.ndarray, *, temporal_features: int,
               temporal_length: int, ic_channels: int, ic_resolution: int) -> tuple[ModelSpec, dict]:
    """The model spec of a fit, with codebook sizes scaled to the data, and the numbers behind them.

    ``sample`` [n, D'] holds the cleaned training rows k-means starts from (the first
    ``min(training rows, training.kmeans_init_rows)``); D' is the cleaned feature count.
    Level sizes: ``scale_codebook_sizes(codebook_sizes, n, rows_per_code)``. Token streams per category:
    ``plan_streams`` (``model.streams`` allocated by the variance of each category's principal
    components in the sample). Per stream: ``encoder_codebook_sizes`` from
    the effective inputs of each single-stream category in the sample (categories with several streams,
    the temporal and IC encoders are high-dimensional, so they keep the level sizes; with no rows
    nothing is measured). Returns the spec and a JSON-able dict of those numbers (``summary.json`` →
    ``codebook_plan``).
    """
    if sample.ndim != 2:
        raise ValueError(f"sample must be [rows, features], got shape {sample.shape}")
    init_rows = len(sample)
    levels = scale_codebook_sizes(m.codebook_sizes, init_rows, m.rows_per_code)
    # per category: its streams, and (single-stream categories only; several streams mean a
    # high-dimensional input) its effective inputs, one entry per stream
    effective: list[float | None] = []
    streams = plan_streams(sample, [c.columns for c in categories], m.streams, m.components_per_stream)
    for c, s in zip(categories, streams, strict=True):
        cols = sample[:, list(c.columns)]
        effective += [effective_inputs(cols, m.code_resolution) if init_rows else None] if s == 1 else [None] * s
    names = (*stream_names([c.name for c in categories], streams), *(("temporal",) if temporal_features else ()),
             "ic")
    effective += [None] * (len(names) - len(effective))
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
        encoder_codebook_sizes=encoder_codebook_sizes(levels, effective, init_rows, m.rows_per_code),
        category_streams=tuple(streams),
        pca_components=m.components_per_stream,
    )
    plan = {"configured": list(m.codebook_sizes), "init_rows": init_rows, "rows_per_code": m.rows_per_code,
            "code_resolution": m.code_resolution, "streams": m.streams,
            "components_per_stream": m.components_per_stream,
            "category_streams": {c.name: s for c, s in zip(categories, streams, strict=True)},
            "effective_inputs": {n: (round(e, 1) if e is not None else None)
                                 for n, e in zip(names, effective, strict=True)}}
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
                         lr_schedule=t.lr_schedule, patience=t.patience)


def codebook_message(spec: ModelSpec, plan: dict) -> str:
    """One log line: the level sizes (and why, when scaled down) and the encoders given fewer codes."""
    msg = f"codebooks: {list(spec.codebook_sizes)} codes per level"
    if list(spec.codebook_sizes) != plan["configured"]:
        msg += (f" (configured {plan['configured']}, scaled down: <= {plan['init_rows']} k-means rows"
                f" / rows_per_code {plan['rows_per_code']})")
    small = [f"{n} {list(k)} (~{plan['effective_inputs'][n]:.0f} inputs)"
             for n, k in zip(spec.encoder_names, spec.encoder_codebook_sizes, strict=True)
             if tuple(k) != tuple(spec.codebook_sizes)]
    if small:
        msg += f"; few distinguishable inputs (resolution {plan['code_resolution']}): " + ", ".join(small)
    single = sum(1 for k in spec.encoder_codebook_sizes for v in k if v == 1)
    if single:
        msg += f" ({single} levels with one code: not token positions)"
    multi = [f"{n} x{s}" for n, s in plan["category_streams"].items() if s > 1]
    if multi:
        msg += (f"; {spec.n_encoders} token streams, several for wide categories (one per"
                f" {plan['components_per_stream']} principal components, by variance): " + ", ".join(multi))
    return msg


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
