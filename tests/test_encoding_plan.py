"""Model planning on a numpy sample (no Ray): streams per category, codebook sizes per stream, the plan's
numbers and log line, the training settings."""

from __future__ import annotations

import numpy as np
import pytest

from spinlock.config.tokenizer import ModelConfig, TokenizerConfig
from spinlock.encoding.categories import DiscoveredCategory
from spinlock.encoding.plan import codebook_message, plan_model, train_settings


def _categories() -> list[DiscoveredCategory]:
    return [DiscoveredCategory("c00_cont", ("summary.a",), (0,)),
            DiscoveredCategory("c01_wide", tuple(f"summary.w{j}" for j in range(12)), tuple(range(1, 13))),
            DiscoveredCategory("c02_discrete", ("architecture.depth",), (13,))]


def _sample(rows: int = 3000) -> np.ndarray:
    """[rows, 14]: column 0 takes 30 values equally often, 1-12 are independent normals (all 12
    components needed for 95 % of their variance), 13 takes 3 values equally often."""
    rng = np.random.default_rng(0)
    x = np.empty((rows, 14), dtype=np.float32)
    x[:, 0] = np.repeat(np.arange(30) * 0.1, rows // 30)
    x[:, 1:13] = rng.normal(size=(rows, 12))
    x[:, 13] = np.repeat([-0.7, 0.0, 0.7], rows // 3)
    return x


def test_plan_sizes_streams_and_codebooks_to_the_sample():
    spec, plan = plan_model(ModelConfig(), _categories(), _sample(), temporal_features=2, temporal_length=16,
                            ic_channels=3, ic_resolution=8)
    # 3000 rows / 8 per code = 375 -> levels capped at 256 (the configured 256 each)
    assert spec.codebook_sizes == (256, 256, 256)
    # tokens 24 / 48 / 96: temporal takes one per level, ic one coarse, so the categories may take 22 / 23 / 47.
    # The wide category's 12 components fill three coarse tokens of 4; then there is nothing new, and
    # its finer tokens refine those three streams; each discrete category is explained by one coarse token,
    # and the budget is not spent on codes that explain nothing
    assert plan["category_tokens"] == {"c00_cont": [1, 0, 0], "c01_wide": [3, 3, 3], "c02_discrete": [1, 0, 0]}
    assert spec.category_streams == (1, 3, 1)
    assert spec.encoder_names == ("c00_cont", "c01_wide.0", "c01_wide.1", "c01_wide.2", "c02_discrete", "temporal",
                                  "ic")
    levels = (256, 256, 256)
    # 30 and 3 distinguishable inputs: one token of that many codes; the IC stream has one coarse token
    assert spec.encoder_codebook_sizes == ((30, 1, 1), levels, levels, levels, (3, 1, 1), levels, (256, 1, 1))
    assert spec.stream_components == 4
    assert (spec.n_features, spec.temporal_features, spec.temporal_length) == (14, 2, 16)
    assert (spec.ic_channels, spec.ic_resolution) == (3, 8)
    assert spec.category_columns == ((0,), tuple(range(1, 13)), (13,))
    assert plan == {"configured": [256, 256, 256], "init_rows": 3000, "rows_per_code": 8, "code_resolution": 0.05,
                    "tokens": [24, 48, 96], "components_per_stream": 4,
                    "category_tokens": {"c00_cont": [1, 0, 0], "c01_wide": [3, 3, 3], "c02_discrete": [1, 0, 0]},
                    "category_streams": {"c00_cont": 1, "c01_wide": 3, "c02_discrete": 1},
                    "effective_inputs": {"c00_cont": 30.0, "c01_wide": 3000.0, "c02_discrete": 3.0}}
    msg = codebook_message(spec, plan)
    assert "[256, 256, 256] codes per level;" in msg  # not scaled down: no "configured" note
    assert "categories' per level [5, 3, 3]" in msg and "c01_wide 3/3/3" in msg
    assert "one token (resolution 0.05): c00_cont (~30 inputs), c02_discrete (~3 inputs); 7 token streams" in msg


def test_plan_spends_the_token_budget_of_each_prefix():
    """A category of 40 components of falling variance takes every category token the budget leaves; the
    budget is per prefix (coarse, +medium, all), temporal and IC tokens included."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 40)) * np.linspace(3.0, 0.5, 40)
    cats = [DiscoveredCategory("c00_wide", tuple(f"summary.w{j}" for j in range(40)), tuple(range(40)))]
    spec, plan = plan_model(ModelConfig(tokens=(5, 9, 15)), cats, x, temporal_features=2, temporal_length=16,
                            ic_channels=3, ic_resolution=8)
    assert plan["category_tokens"] == {"c00_wide": [3, 3, 5]}  # 5 - 2, 4 - 1, 6 - 1
    positions = np.array(spec.encoder_codebook_sizes) > 1
    assert [int(positions[:, :lv + 1].sum()) for lv in range(3)] == [5, 9, 15]
    # variance falls slowly, so a new stream (4 more components) explains more than a finer code of an open
    # one at level 2; at level 3 the three next streams come first, then the residuals of the two largest
    # coarse streams (2^(-14/4) of their variance with K = 128, for 2000 rows)
    K = 128
    assert spec.encoder_codebook_sizes[:9] == ((K, 1, K),) * 2 + ((K, 1, 1),) + ((1, K, 1),) * 3 + ((1, 1, K),) * 3


def test_plan_without_temporal_curves_or_rows():
    spec, plan = plan_model(ModelConfig(), _categories(), np.empty((0, 14), np.float32), temporal_features=0,
                            temporal_length=16, ic_channels=3, ic_resolution=8)
    assert spec.temporal_length == 0 and spec.encoder_names == ("c00_cont", "c01_wide", "c02_discrete", "ic")
    assert spec.codebook_sizes == (2, 2, 2)  # no rows: the smallest levels, and nothing measured
    assert spec.encoder_codebook_sizes == ((2, 2, 2),) * 3 + ((2, 1, 1),)  # a token per level; ic one
    assert plan["init_rows"] == 0 and set(plan["effective_inputs"].values()) == {None}


def test_plan_refuses_a_sample_that_is_not_a_table():
    with pytest.raises(ValueError, match=r"\[rows, features\]"):
        plan_model(ModelConfig(), _categories(), np.zeros(14), temporal_features=0, temporal_length=0,
                   ic_channels=0, ic_resolution=8)


def test_train_settings_from_the_section():
    cfg = TokenizerConfig(training={"epochs": 7, "learning_rate": 0.01, "lr_schedule": "constant",
                                    "scalar_lr_scale": 0.2}, model={"temporal_weight": 0.5})
    s = train_settings(cfg, 3, ["initial.a", "summary.b", "architecture.c", "summary.d"])
    assert (s.epochs, s.learning_rate, s.lr_schedule, s.temporal_weight, s.seed) == (7, 0.01, "constant", 0.5, 3)
    assert s.scalar_lr_scale == 0.2
    assert s.family_columns == {"initial": [0], "architecture": [2], "summary": [1, 3]}


@pytest.mark.parametrize("tokens", [(2, 8, 16), (8, 8, 16), (8, 16, 16), (8, 6, 16)])
def test_a_token_budget_below_the_fixed_streams_is_refused(tokens):
    """The temporal and IC streams take 2 coarse tokens and the temporal one per finer level: a budget
    that leaves the categories nothing at the coarse level, or no growth, would be exceeded silently."""
    with pytest.raises(ValueError, match="must start at >= 3 and grow at every level"):
        ModelConfig(tokens=tokens)
    assert ModelConfig(tokens=(3, 4, 5)).tokens == (3, 4, 5)
