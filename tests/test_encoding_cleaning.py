"""Cleaning transform: split, train-only fit, policy, closed-form statistics, persistence, name checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow.parquet as pq
import pytest
from synthetic_features import write_synthetic_run

from spinlock.encoding.cleaning import FeatureCleaner
from spinlock.encoding.schema import FeatureBatch, FeatureNameMismatch, FeatureSchema
from spinlock.encoding.sketch import BottomKSample, Moments
from spinlock.encoding.split import Split


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_synthetic_run(tmp_path_factory.mktemp("clean"), n_operators=300, n_shards=3)


@pytest.fixture(scope="module")
def blocks(run):
    schema, files = FeatureSchema.from_parquet_dir(run.out / "features")
    return schema, [schema.batch_from_arrow(pq.read_table(f)) for f in files]


def _concat(batches: list[FeatureBatch]) -> FeatureBatch:
    return FeatureBatch(*(np.concatenate([getattr(b, f.name) for b in batches])
                          for f in dataclasses.fields(FeatureBatch)))


def _fit(schema, batches, **kw) -> FeatureCleaner:
    return FeatureCleaner(schema, Split(7, 0.25), **kw).fit(lambda: batches)


def test_split_is_a_pure_function_of_seed_and_index():
    split = Split(3, 0.2)
    idx = np.arange(20_000)
    val = split.is_validation(idx)
    assert abs(val.mean() - 0.2) < 0.01
    # same answer in any order / partition, different for another seed
    perm = np.random.default_rng(0).permutation(idx)
    assert np.array_equal(split.is_validation(perm), val[perm])
    assert np.array_equal(np.concatenate([split.is_validation(idx[:777]), split.is_validation(idx[777:])]), val)
    assert (Split(4, 0.2).is_validation(idx) != val).mean() > 0.2


def test_fit_ignores_validation_and_diverged_rows(blocks):
    schema, batches = blocks
    base = _fit(schema, batches)
    split = base.split
    poisoned = []
    for b in batches:
        excluded = split.is_validation(b.operator_index) | (b.status != 0)
        scalar, temporal = b.scalar.copy(), b.temporal.copy()
        scalar[excluded] = 1e9  # would move every statistic if it were used
        temporal[excluded] = -1e9
        poisoned.append(dataclasses.replace(b, scalar=scalar, temporal=temporal))
    again = _fit(schema, poisoned)
    for name in FeatureCleaner._ARRAYS:
        assert np.array_equal(getattr(base, name), getattr(again, name)), name
    assert base.drop_reason_ == again.drop_reason_


def test_drop_policy_names_each_reason(blocks):
    schema, batches = blocks
    c = _fit(schema, batches)
    assert c.drop_reason_["architecture.mostly_nan"].startswith("non-finite")
    assert c.drop_reason_["summary.constant"] == "near-constant"
    assert c.drop_reason_["summary.dup_of_g3f0"].startswith("duplicate of summary.g3.f0")
    assert len(c.drop_reason_) == 3
    assert c.names_out == [n for n in schema.scalar if n not in c.drop_reason_]


def test_statistics_match_closed_form(blocks):
    """Sample covers every fitting row → quantiles are exact; center/scale are the clipped moments."""
    schema, batches = blocks
    c = _fit(schema, batches, sample_size=10_000, clip_quantile=0.05)
    full = _concat(batches)
    rows = c.split.fit_rows(full.operator_index, full.status)
    x = full.scalar[rows].astype(np.float64)
    j = schema.scalar.index("summary.g4.f0")  # the column with 1e6 outliers
    col = x[:, j]
    lo, med, hi = np.quantile(col, [0.05, 0.5, 0.95])
    assert (c.lower_[j], c.median_[j], c.upper_[j]) == pytest.approx((lo, med, hi), rel=1e-12)
    clipped = np.clip(col, lo, hi)
    k = c.names_out.index("summary.g4.f0")
    assert c.center_[k] == pytest.approx(clipped.mean(), rel=1e-10)
    assert c.scale_[k] == pytest.approx(clipped.std(ddof=1), rel=1e-10)
    out = c.transform(full).x[rows]
    assert np.allclose(out.mean(0), 0, atol=1e-5) and np.allclose(out.std(0, ddof=1), 1, atol=1e-4)


def test_fit_does_not_depend_on_block_partition(blocks):
    schema, batches = blocks
    a = _fit(schema, batches)
    full = _concat(batches)
    cuts = np.array_split(np.arange(len(full)), 7)
    b = _fit(schema, [full.select(c) for c in cuts[::-1]])  # other blocks, other order
    assert np.array_equal(a.mask_, b.mask_)
    for name in ("median_", "lower_", "upper_", "temporal_median_"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name  # exact (bottom-k sample)
    for name in ("center_", "scale_", "correlation_", "temporal_scale_"):
        assert np.allclose(getattr(a, name), getattr(b, name), rtol=1e-10, atol=1e-12), name


def test_transform_imputes_diverged_rows(blocks, run):
    schema, batches = blocks
    c = _fit(schema, batches)
    full = _concat(batches)
    out = c.transform(full)
    assert np.isfinite(out.x).all() and np.isfinite(out.temporal).all()
    div = run.diverged[full.operator_index]
    expected = (c.median_[c.mask_] - c.center_) / c.scale_
    assert np.allclose(out.x[div], expected.astype(np.float32), atol=1e-6)
    assert out.temporal.shape == (len(full), schema.temporal_length, len(c.temporal_names_out))


def test_save_load_round_trip(blocks, tmp_path):
    schema, batches = blocks
    c = _fit(schema, batches)
    c.save(tmp_path / "cleaning.npz")
    d = FeatureCleaner.load(tmp_path / "cleaning.npz")
    assert d.schema == c.schema and d.split == c.split and d.params() == c.params()
    assert d.drop_reason_ == c.drop_reason_ and d.names_out == c.names_out
    for b in batches:
        assert np.array_equal(d.transform(b).x, c.transform(b).x)
        assert np.array_equal(d.transform(b).temporal, c.transform(b).temporal)


def test_refuses_different_feature_names_with_a_diff(blocks):
    schema, batches = blocks
    c = _fit(schema, batches)
    renamed = dataclasses.replace(schema, scalar=tuple("summary.renamed" if n == "summary.g5.f1" else n
                                                       for n in schema.scalar))
    with pytest.raises(FeatureNameMismatch, match=r"missing 1: 'summary.g5.f1'.*unexpected 1: 'summary.renamed'"):
        c.check_schema(renamed, "other table")
    reordered = dataclasses.replace(schema, scalar=schema.scalar[::-1])
    with pytest.raises(FeatureNameMismatch, match="different order"):
        c.check_schema(reordered, "other table")


def test_moments_and_sample_merge_exactly():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 4)) * [1, 10, 100, 0.1] + 5
    parts = np.array_split(x, 9)
    merged = Moments.of(parts[0])
    for p in parts[1:]:
        merged = merged.merge(Moments.of(p))
    one = Moments.of(x)
    assert merged.n == 500
    assert np.allclose(merged.mean, one.mean) and np.allclose(merged.m2, one.m2, rtol=1e-10)
    assert np.allclose(merged.correlation(), np.corrcoef(x.T), atol=1e-12)
    keys = rng.permutation(1000).astype(np.int64)
    vals = {"v": np.arange(1000.0)}
    a = BottomKSample.of(50, keys[:600], {"v": vals["v"][:600]}).merge(
        BottomKSample.of(50, keys[600:], {"v": vals["v"][600:]}))
    b = BottomKSample.of(50, keys, vals)
    assert np.array_equal(a.keys, b.keys) and np.array_equal(a.values["v"], b.values["v"])
