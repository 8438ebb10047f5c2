"""Codebook sizing and maintenance rules of the VQ-VAE (no Ray): level caps, the effective number of inputs,
step-relative dead-code thresholds, the cosine schedule, health metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spinlock.encoding.layout import TokenLayout
from spinlock.encoding.metrics import codebook_health, token_health
from spinlock.encoding.model import ModelSpec, effective_inputs, scale_codebook_sizes
from spinlock.encoding.training import TrainSettings, build_model, epoch_learning_rate, train_model


def test_level_sizes_keep_rows_per_code():
    assert scale_codebook_sizes((128, 256, 512), 4096) == (128, 256, 512)  # 4096 / 8 = 512
    assert scale_codebook_sizes((128, 256, 512), 3445) == (128, 256, 256)  # 430 -> 256
    assert scale_codebook_sizes((128, 256, 512), 600) == (64, 64, 64)
    assert scale_codebook_sizes((128, 256, 512), 600, rows_per_code=4) == (128, 128, 128)
    assert scale_codebook_sizes((128, 256, 512), 3) == (2, 2, 2)


def test_effective_inputs():
    rng = np.random.default_rng(0)
    three = rng.integers(0, 3, (3000, 2)).astype(np.float64) * 0.7  # 9 equally likely cells
    assert effective_inputs(three, 0.05) == pytest.approx(9, rel=0.02)
    skewed = np.where(rng.random((3000, 1)) < 0.9, 0.0, 1.0)  # one value 90 % of the time
    assert effective_inputs(skewed, 0.05) == pytest.approx(math.exp(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1))),
                                                           rel=0.05)
    uniform = rng.uniform(-1.7, 1.7, (3000, 1))  # a continuous 1-D input: ~ range / resolution cells
    assert 60 < effective_inputs(uniform, 0.05) <= 68
    wide = rng.normal(size=(3000, 20))  # high-dimensional: every row its own cell
    assert effective_inputs(wide, 0.05) == pytest.approx(3000)


def test_spec_validates_and_round_trips_encoder_sizes():
    spec = ModelSpec(((0, 1), (2,)), 3, 0, 0, 0, 8, codebook_sizes=(8, 16, 16),
                     encoder_codebook_sizes=((8, 16, 16), (3, 1, 1)))
    assert ModelSpec.from_json(spec.to_json()) == spec
    old = spec.to_json()
    del old["encoder_codebook_sizes"]  # a tokenizer.json written before per-encoder sizes
    assert ModelSpec.from_json(old).encoder_codebook_sizes == ((8, 16, 16), (8, 16, 16))
    with pytest.raises(ValueError, match="encoder_codebook_sizes"):
        ModelSpec(((0, 1), (2,)), 3, 0, 0, 0, 8, codebook_sizes=(8, 16, 16),
                  encoder_codebook_sizes=((8, 32, 16), (3, 1, 1)))
    model = build_model(spec, 0)
    assert [int(level.sizes[1]) for level in model.quantizer.levels] == [3, 1, 1]


def test_dead_code_thresholds_are_relative_to_the_step():
    spec = ModelSpec(((0, 1, 2, 3),), 4, 0, 0, 0, 8, latent_dim=4, hidden_dim=16, codebook_sizes=(4, 8, 16),
                     dead_code_threshold=0.5)
    model = build_model(spec, 0)
    model.set_step_rows(64)
    levels = model.quantizer.levels
    assert [float(lv.dead_threshold[0]) for lv in levels] == [8.0, 4.0, 2.0]  # 0.5 * 64 / K
    assert [float(lv.reset_count[0]) for lv in levels] == [16.0, 8.0, 4.0]     # the fair share 64 / K
    # k-means counts are rescaled from the init batch (256 rows) to one step (32 rows)
    model = build_model(ModelSpec(**{**spec.to_json(), "category_columns": ((0, 1, 2, 3),),
                                     "codebook_sizes": (4, 8, 16), "encoder_names": (),
                                     "encoder_codebook_sizes": (), "dead_code_threshold": 0.0}), 0)
    x = torch.randn(256, 4, generator=torch.Generator().manual_seed(0))
    model.initialize_codebooks(x, None, None, step_rows=32)
    for level in model.quantizer.levels:
        assert float(level.cluster_size[0].sum()) == pytest.approx(32.0, rel=1e-4)
    # PCA-initialised category streams replace no codes; the IC stream (random initialisation) does
    pca = build_model(ModelSpec(((0, 1, 2, 3),), 4, 0, 0, 2, 8, latent_dim=4, hidden_dim=16, codebook_sizes=(4, 8, 16),
                                dead_code_threshold=0.5, stream_components=2), 0)
    pca.set_step_rows(64)
    assert [lv.dead_threshold.tolist() for lv in pca.quantizer.levels] == [[0.0, 8.0], [0.0, 4.0], [0.0, 2.0]]


def test_cosine_schedule():
    s = TrainSettings(10, 1e-3, 0.0, 1.0, 1.0, 64, 0)
    assert epoch_learning_rate(s, 0) == pytest.approx(1e-3)
    assert epoch_learning_rate(s, 5) == pytest.approx(5e-4)
    assert epoch_learning_rate(s, 9) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(0.9 * math.pi)))
    flat = TrainSettings(10, 1e-3, 0.0, 1.0, 1.0, 64, 0, lr_schedule="constant")
    assert epoch_learning_rate(flat, 9) == 1e-3


def test_health_metrics():
    counts = [[np.array([5, 5, 0, 0]), np.array([10]), np.array([4, 4, 1, 1])]]
    h = codebook_health(counts)
    assert h["codebook_usage"][::2] == [0.5, 1.0] and h["rows"] == 10
    assert np.isnan(h["codebook_usage"][1]) and h["single_code_books"] == [0, 1, 0]  # K = 1: left out
    assert h["perplexity"][0] == pytest.approx(2.0) and h["perplexity_ratio"][2] == pytest.approx(3.3 / 4, abs=0.01)
    assert h["usage_ceiling"][0] == pytest.approx(1 - 0.75**10)
    spec = ModelSpec(((0,),), 1, 0, 0, 0, 8, codebook_sizes=(2, 2, 4), encoder_codebook_sizes=((2, 1, 4),))
    tokens = np.array([[0, 0], [1, 1], [1, 2]])  # the K = 1 level is no column
    t = token_health(tokens, TokenLayout.plan(spec))
    assert t["codebook_usage"][::2] == [1.0, 0.75] and t["rows"] == 3 and t["single_code_books"] == [0, 1, 0]


def test_planted_clusters_use_every_code():
    """32 planted clusters with Gaussian spread: after a short fit every level is well used."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(32, 8, generator=g) * 4
    labels = torch.arange(2048) % 32
    x = centers[labels] + 0.5 * torch.randn(2048, 8, generator=g)
    spec = ModelSpec((tuple(range(4)), tuple(range(4, 8))), 8, 0, 0, 0, 8, latent_dim=8, hidden_dim=32,
                     codebook_sizes=(32, 32, 32))

    def batches(epoch: int):
        perm = torch.randperm(2048, generator=torch.Generator().manual_seed(epoch))
        for lo in range(0, 2048, 128):
            yield {"x": x[perm[lo:lo + 128]]}

    model = build_model(spec, 0)
    state = train_model(model, TrainSettings(6, 3e-3, 0.0, 1.0, 1.0, 1024, 0), batches, lambda e: [{"x": x}])
    h = state.history[-1]["validation"]
    assert h["rows"] == 2048
    assert min(h["codebook_usage"]) >= 0.9, h["codebook_usage"]
    assert min(h["perplexity_ratio"]) >= 0.5, h["perplexity_ratio"]
    assert h["r2"]["all"][2] > 0.5
