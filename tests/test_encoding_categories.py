"""Category discovery: planted feature groups are recovered; range clipping; persistence."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import adjusted_rand_score
from synthetic_features import write_synthetic_run

from spinlock.encoding.categories import CategoryDiscovery, correlation_distance
from spinlock.encoding.cleaning import FeatureCleaner
from spinlock.encoding.schema import FeatureSchema
from spinlock.encoding.split import Split


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory):
    run = write_synthetic_run(tmp_path_factory.mktemp("cats"), n_operators=400, n_shards=2)
    schema, files = FeatureSchema.from_parquet_dir(run.out / "features")
    batches = [schema.batch_from_arrow(pq.read_table(f)) for f in files]
    return run, FeatureCleaner(schema, Split(0, 0.2)).fit(lambda: batches)


def test_recovers_planted_groups(cleaned):
    run, c = cleaned
    cats = CategoryDiscovery(min_categories=2, max_categories=12).fit(c.correlation_, c.names_out)
    truth = [run.groups[n] for n in c.names_out]
    assert cats.n_categories_ == 6
    assert adjusted_rand_score(truth, cats.labels_) == 1.0
    assert max(cats.scores_, key=cats.scores_.get) == 6
    members = [f for cat in cats.categories_ for f in cat.features]
    assert sorted(members) == sorted(c.names_out)  # every feature in exactly one category
    assert [cat.name for cat in cats.categories_][:3] == ["c00_initial", "c01_initial", "c02_architecture"]
    for cat in cats.categories_:
        assert [c.names_out[j] for j in cat.columns] == list(cat.features)


def test_default_range_is_clipped_to_the_data():
    d = CategoryDiscovery()  # 8..15
    assert list(d.candidate_range(40)) == list(range(8, 16))
    assert list(d.candidate_range(6)) == [5]  # at most D - 1 for silhouette
    assert list(d.candidate_range(2)) == []
    two = d.fit(np.array([[1.0, 0.3], [0.3, 1.0]]), ["a.x", "a.y"])
    assert two.n_categories_ == 1 and two.labels_.tolist() == [0, 0]


def test_sign_does_not_matter_and_numbering_is_by_first_member():
    r = np.array([[1.0, 0.1, -0.95, 0.0], [0.1, 1.0, 0.0, 0.97], [-0.95, 0.0, 1.0, 0.05],
                  [0.0, 0.97, 0.05, 1.0]])
    assert np.allclose(np.diag(correlation_distance(r)), 0.0)
    cats = CategoryDiscovery(2, 3).fit(r, ["s.a", "s.b", "s.c", "s.d"])
    assert cats.labels_.tolist() == [0, 1, 0, 1]


def test_save_load_round_trip(cleaned, tmp_path):
    _, c = cleaned
    cats = CategoryDiscovery(2, 9).fit(c.correlation_, c.names_out)
    cats.save(tmp_path / "categories.json")
    back = CategoryDiscovery.load(tmp_path / "categories.json")
    assert back.categories_ == cats.categories_ and back.scores_ == pytest.approx(cats.scores_)
