"""Hierarchical VQ-VAE and its training core (no Ray): round trips, level ordering, determinism, resume."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from synthetic_features import write_synthetic_run

from spinlock.encoding.categories import CategoryDiscovery
from spinlock.encoding.cleaning import FeatureCleaner
from spinlock.encoding.icfields import ICReader
from spinlock.encoding.metrics import evaluate
from spinlock.encoding.model import LEVELS, ModelSpec, scale_codebook_sizes, stream_names
from spinlock.encoding.quantizer import kmeans
from spinlock.encoding.rates import allocate_tokens, stream_components, stream_sizes, tokens_per_level
from spinlock.encoding.schema import FeatureSchema
from spinlock.encoding.split import Split
from spinlock.encoding.tokenizer import prepare_inputs
from spinlock.encoding.training import (
    SCALAR_PATH,
    TrainSettings,
    TrainState,
    build_model,
    train_model,
    validation_score,
)

SEED = 5



@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Cleaned training / validation inputs of a 300-operator synthetic run, and a small model spec."""
    run = write_synthetic_run(tmp_path_factory.mktemp("model"), n_operators=300, n_shards=2)
    schema, files = FeatureSchema.from_parquet_dir(run.out / "features")
    batches = [schema.batch_from_arrow(pq.read_table(f)) for f in files]
    split = Split(SEED, 0.2)
    cleaner = FeatureCleaner(schema, split).fit(lambda: batches)
    cats = CategoryDiscovery(2, 10).fit(cleaner.correlation_, cleaner.names_out).categories_
    reader = ICReader(run.out / "dataset.h5")

    def inputs(validation: bool) -> dict[str, torch.Tensor]:
        parts = []
        for b in batches:
            keep = b.select((b.status == 0) & (split.is_validation(b.operator_index) == validation))
            parts.append(prepare_inputs(cleaner, keep, reader.read(keep.operator_index), 8))
        return {k: torch.from_numpy(np.concatenate([p[k] for p in parts])) for k in parts[0]}

    spec = ModelSpec(
        category_columns=tuple(c.columns for c in cats), n_features=len(cleaner.names_out),
        temporal_features=2, temporal_length=schema.temporal_length, ic_channels=2, ic_resolution=8,
        latent_dim=8, hidden_dim=48, codebook_sizes=(4, 8, 16),
        encoder_names=(*(c.name for c in cats), "temporal", "ic"),
    )
    return inputs(False), inputs(True), spec


def _settings(epochs: int, seed: int = SEED, schedule: str = "cosine") -> TrainSettings:
    return TrainSettings(epochs=epochs, learning_rate=3e-3, weight_decay=0.0, temporal_weight=1.0,
                         ic_weight=0.5, kmeans_init_rows=512, seed=seed, lr_schedule=schedule)


def _batches(train: dict[str, torch.Tensor], size: int = 32):
    n = len(train["x"])

    def epoch_batches(epoch: int):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        for lo in range(0, n - size + 1, size):
            yield {k: v[perm[lo:lo + size]] for k, v in train.items()}
    return epoch_batches


def _train(data, epochs: int, seed: int = SEED, start: TrainState | None = None, states=None,
           schedule: str = "cosine"):
    train, val, spec = data
    model = build_model(spec, seed)
    state = train_model(model, _settings(epochs, seed, schedule), _batches(train), lambda e: [val], start=start,
                        on_epoch_end=(lambda s, r: states.append(s)) if states is not None else None)
    model.load_state_dict(state.model_state)
    return model.eval(), state


def test_decoding_codes_equals_the_eval_forward(data):
    train, _, spec = data
    model = build_model(spec, 0)
    model.initialize_codebooks(train["x"], train["temporal"], train["ic"])
    model.eval()
    idx, emb = model.encode(train["x"], train["temporal"], train["ic"])
    out = model(train["x"], train["temporal"], train["ic"])
    x, t, ic = model.decode_indices(idx)
    assert torch.equal(idx, out.indices)
    assert torch.allclose(x, out.x, atol=1e-6) and torch.allclose(t, out.temporal, atol=1e-6)
    assert torch.allclose(ic, out.ic, atol=1e-6)
    assert idx.shape == (len(train["x"]), spec.n_encoders, LEVELS) and emb.shape == (len(train["x"]), 28)
    for lv, size in enumerate(spec.codebook_sizes):  # codes in range; counts sum to N
        counts = torch.bincount(idx[:, :, lv].flatten(), minlength=size)
        assert len(counts) == size and counts.sum() == idx.shape[0] * idx.shape[1]


SPECTRA = [np.array([10.0] * 4 + [5.0] * 4 + [1.0] * 4), np.array([8.0] * 4 + [6.0] * 2), np.array([0.1])]


def test_ic_statistics_are_standardised_by_the_init_rows(data):
    """The IC head's target is each statistic standardised by its mean and std over the k-means rows, so its
    loss is on the features' scale; the raw statistics of these fields are far from it."""
    train, _, spec = data
    model = build_model(spec, 0)
    _, _, raw = model.latents(train["x"], train["temporal"], train["ic"])  # before: mean 0, scale 1
    assert float(raw.abs().mean()) > 2.0  # log power spectra: magnitudes far from 1
    model.initialize_codebooks(train["x"], train["temporal"], train["ic"])
    torch.testing.assert_close(model.ic_mean, raw.mean(0))
    torch.testing.assert_close(model.ic_scale, raw.std(0).clamp(min=1e-3))
    _, _, target = model.latents(train["x"], train["temporal"], train["ic"])  # training mode: the same batch norm
    torch.testing.assert_close(target.mean(0), torch.zeros_like(target[0]), atol=1e-4, rtol=0)
    varying = raw.std(0) > 1e-3  # a constant statistic keeps the floor scale
    assert bool(varying.any())
    torch.testing.assert_close(target.std(0)[varying], torch.ones(int(varying.sum())), atol=1e-3, rtol=0)
    assert "ic_mean" in model.state_dict() and "ic_scale" in model.state_dict()  # saved with the tokenizer


def test_tokens_go_where_their_codes_explain_most_variance():
    """Level by level, each token goes to the candidate that explains most: a category's next stream (4
    more components) or a finer code of one of its coarser streams. A 256-code token over 4 equal components
    leaves 2^(-16/4) = 1/16 of them, so A's first stream explains 40·15/16 = 37.5, B's 30, A's second 18.75,
    B's second (2-D: 1/256 left) 11.95, A's third 3.75; a medium code of A's first stream explains
    2.5·15/16 = 2.34, less than A's second stream."""
    sizes, p = (256, 256, 256), 4
    T, F = True, False
    assert allocate_tokens(SPECTRA, (2, 1, 0), p, sizes, [None] * 3) == [[(T, F, F), (F, T, F)], [(T, F, F)], []]
    assert allocate_tokens(SPECTRA, (3, 0, 0), p, sizes, [None] * 3) == [[(T, F, F), (T, F, F)], [(T, F, F)], []]
    # once A's three streams are open, its fine tokens refine: the first stream's (2.34) before the
    # second's (1.17), so the first skips the medium level
    assert allocate_tokens(SPECTRA[:1], (1, 1, 2), p, sizes, [None]) == [[(T, F, T), (F, T, F), (F, F, T)]]
    # a discrete category (3 values, variance 3) is explained by one token, taken where it ranks: after the
    # five coarse streams (the last 3.75), first at level 2 (before A's and B's refinements, 2.34 and less);
    # its stream is never refined, and the budget is not spent where nothing is left to explain
    discrete = [SPECTRA[0], SPECTRA[1], np.array([3.0, 0.0])]
    assert allocate_tokens(discrete, (5, 9, 0), p, sizes, [None, None, 3.0]) == [
        [(T, T, F)] * 3, [(T, T, F)] * 2, [(F, T, F)]]
    # components without variance get no stream
    assert allocate_tokens(SPECTRA, (50, 0, 0), p, sizes, [None] * 3) == [[(T, F, F)] * 3, [(T, F, F)] * 2,
                                                                         [(T, F, F)]]


def test_streams_hold_consecutive_components_and_one_code_where_they_have_no_token():
    assert [stream_components(j, 4, 10) for j in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    T, F = True, False
    patterns = [(T, F, T), (F, T, F), (F, F, T)]
    assert tokens_per_level(patterns) == [1, 1, 2]
    assert stream_sizes(patterns, (128, 256, 256), None) == [(128, 1, 256), (1, 256, 1), (1, 1, 256)]
    assert stream_sizes([(F, T, F)], (128, 256, 256), 2.6) == [(1, 3, 1)]  # a discrete category's one token
    assert stream_sizes([], (128, 256, 256), None) == [(1, 1, 1)]


def test_levels_refine_the_pca_code_and_a_stream_opens_where_it_has_its_first_token():
    """Three features of standard deviation 3, 2, 1 (their own principal axes), one stream holding all three
    components: its linear part is the identity and every level lowers the error. Two streams of 2
    components over five features (standard deviation 5 .. 1), the second with a fine token only: it
    holds components 2 and 3, which the coarse and medium prefixes do not code (their one code is the mean)
    and the fine level does."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 3, generator=g) * torch.tensor([3.0, 2.0, 1.0])
    spec = ModelSpec(((0, 1, 2),), 3, 0, 0, 0, 8, latent_dim=3, hidden_dim=16, codebook_sizes=(8, 8, 8),
                     stream_components=3)
    model = build_model(spec, 0)
    with torch.no_grad():
        model.initialize_codebooks(x, None, None)
    assert torch.allclose(model.category_linear[0].weight.abs(), torch.eye(3), atol=0.05)
    idx, _ = model.encode(x, None, None)
    errors = [float(torch.mean((model.decode_indices(idx, lv)[0] - x) ** 2)) for lv in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[0] < 14 / 3 * 0.5  # 8 codes of the 3-D latent leave less than half of its variance
    with pytest.raises(ValueError, match="stream_components"):
        ModelSpec(((0, 1, 2),), 3, 0, 0, 0, 8, latent_dim=3, stream_components=4)
    assert ModelSpec.from_json(spec.to_json()) == spec
    x5 = torch.randn(600, 5, generator=g) * torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    two = ModelSpec(((0, 1, 2, 3, 4),), 5, 0, 0, 0, 8, latent_dim=3, hidden_dim=16, codebook_sizes=(8, 8, 8),
                    category_streams=(2,), encoder_codebook_sizes=((8, 8, 8), (1, 1, 8)), stream_components=2)
    model = build_model(two, 0)
    with torch.no_grad():
        model.initialize_codebooks(x5, None, None)
    rows = model.category_linear[0].weight.abs()  # [2 streams x 3 dims, 5 features]
    assert torch.allclose(rows[:2], torch.eye(5)[:2], atol=0.1) and torch.allclose(rows[3:5], torch.eye(5)[2:4],
                                                                                    atol=0.1)
    assert not rows[2].any() and not rows[5].any()  # the encoder MLP's own dimension of each stream
    idx, _ = model.encode(x5, None, None)
    per_feature = [torch.mean((model.decode_indices(idx, lv)[0] - x5) ** 2, dim=0) for lv in (1, 2, 3)]
    for lv in (0, 1):  # components 2 and 3 at their mean: their whole variance (9 and 4) is left
        torch.testing.assert_close(per_feature[lv][2:4], torch.tensor([9.0, 4.0]), rtol=0.15, atol=0)
    assert bool((per_feature[2][2:4] < 0.5 * torch.tensor([9.0, 4.0])).all())


def test_the_temporal_stream_starts_from_the_curves_pca():
    """Curves [n, 4 steps, 1 feature] whose flattened vectors have standard deviation 3, 2, 1, 0.01 along the
    four steps: the temporal stream's linear part maps all its latent dimensions (0, 1, 2) to steps 0, 1, 2
    and the curves' head maps them back, so the untrained model reconstructs the curves from the
    unquantized latent up to the dropped step, and its coarse code already explains most of their
    variance."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 2, generator=g)
    t = (torch.randn(600, 4, generator=g) * torch.tensor([3.0, 2.0, 1.0, 0.01]) + 5.0)[:, :, None]
    spec = ModelSpec(((0, 1),), 2, 1, 4, 0, 8, latent_dim=3, hidden_dim=16, codebook_sizes=(8, 8, 8),
                     stream_components=1)
    model = build_model(spec, 0)
    with torch.no_grad():
        model.initialize_codebooks(x, t, None)
        assert torch.allclose(model.temporal_linear.weight.abs(), torch.eye(4)[:3], atol=0.05)
        z = model.temporal_linear(t.flatten(1))
        w = model.head_t.weight[:, spec.hidden_dim + spec.latent_dim:]  # the temporal stream's latent → curves
        back = z @ w.T + model.head_t.bias
        assert torch.allclose(back[:, :3], t[:, :3, 0], atol=0.15) and torch.allclose(back[:, 3], t[:, 3, 0].mean(),
                                                                                         atol=0.01)
        model.eval()
        r2 = 1 - float(torch.mean((model(x, t, None).temporal - t) ** 2)) / float(t.var(0).mean())
    assert r2 > 0.9  # a linear code of 3 levels of 8 codes (0.97); without the initialisation it is < 0


def test_kmeans_finds_planted_clusters():
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = centers.repeat(100, 1) + 0.1 * torch.randn(400, 2, generator=g)
    torch.manual_seed(0)
    means, counts = kmeans(x, 4, iters=5)
    found = means[torch.argsort(means[:, 0] * 100 + means[:, 1])]
    assert torch.allclose(found, centers[[0, 2, 1, 3]], atol=0.05) and counts.tolist() == [100.0] * 4


def test_a_category_with_several_streams_emits_one_token_triple_per_stream(data):
    train, _, spec = data
    streams = (2,) + (1,) * (len(spec.category_columns) - 1)
    multi = ModelSpec(**{**spec.to_json(), "category_columns": spec.category_columns, "encoder_names": (),
                         "codebook_sizes": spec.codebook_sizes, "encoder_codebook_sizes": (),
                         "category_streams": streams})
    names = stream_names([f"c{i:02d}" for i in range(len(streams))], streams)
    assert multi.encoder_names == (*names, "temporal", "ic") and names[:3] == ["c00.0", "c00.1", "c01"]
    assert multi.n_encoders == spec.n_encoders + 1
    model = build_model(multi, 0)
    model.initialize_codebooks(train["x"], train["temporal"], train["ic"])
    idx, _ = model.encode(train["x"], train["temporal"], train["ic"])
    assert idx.shape == (len(train["x"]), spec.n_encoders + 1, LEVELS)
    assert not torch.equal(idx[:, 0], idx[:, 1])  # two latents of one encoder, two code sequences
    assert ModelSpec.from_json(multi.to_json()) == multi
    with pytest.raises(ValueError, match="category_streams"):
        ModelSpec(**{**multi.to_json(), "category_columns": spec.category_columns, "encoder_names": (),
                     "codebook_sizes": spec.codebook_sizes, "encoder_codebook_sizes": (),
                     "category_streams": (0,) * len(streams)})


def test_each_level_lowers_reconstruction_error(data):
    _, val, spec = data
    model, state = _train(data, epochs=12, schedule="constant")  # 84 steps: annealing would stop short
    history = state.history
    assert history[-1]["train_total"] < 0.5 * history[0]["train_total"]
    idx, _ = model.encode(val["x"], val["temporal"], val["ic"])
    errors = [float(torch.mean((model.decode_indices(idx, lv)[0] - val["x"]) ** 2)) for lv in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2], errors
    r2 = history[-1]["validation"]["r2"]["all"]
    assert r2[0] < r2[1] < r2[2] and r2[2] > 0.5, r2
    usage = history[-1]["validation"]["codebook_usage"]
    assert all(0.0 < u <= 1.0 for u in usage)


def test_training_is_deterministic_and_resumes_exactly(data):
    _, val, spec = data
    states: list[TrainState] = []
    a, sa = _train(data, epochs=2, states=states)
    _, sb = _train(data, epochs=2)
    for k in sa.model_state:
        assert torch.equal(sa.model_state[k], sb.model_state[k]), k
    # resume from the epoch-0 checkpoint: the same final weights as the uninterrupted run
    c, sc = _train(data, epochs=2, start=states[0])
    for k in sa.model_state:
        assert torch.equal(sa.model_state[k], sc.model_state[k]), k
    assert [r["attempt_start_epoch"] for r in sc.history] == [0, 1]
    assert torch.equal(a.encode(val["x"], val["temporal"], val["ic"])[0],
                       c.encode(val["x"], val["temporal"], val["ic"])[0])
    # another seed gives other weights and tokens after the same epoch
    after_one = build_model(spec, SEED)
    after_one.load_state_dict(states[0].model_state)
    other, _ = _train(data, epochs=1, seed=SEED + 1)
    args = (val["x"], val["temporal"], val["ic"])
    assert not torch.equal(after_one.eval().encode(*args)[0], other.encode(*args)[0])


def test_training_leaves_global_torch_state_alone(data):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    _train(data, epochs=1)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert not torch.are_deterministic_algorithms_enabled()


def test_metrics_match_definitions(data):
    _, val, spec = data
    model = build_model(spec, 0)
    model.initialize_codebooks(val["x"], val["temporal"], val["ic"])
    m = evaluate(model, [val], {"initial": [0, 1]})
    idx, _ = model.encode(val["x"], val["temporal"], val["ic"])
    rx = model.decode_indices(idx, 3)[0].double()
    y = val["x"].double()
    r2_all = 1 - ((y - rx) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()
    assert m["r2"]["all"][2] == pytest.approx(float(r2_all), abs=1e-6)
    counts = np.bincount(idx[:, 0, 0].numpy(), minlength=spec.codebook_sizes[0])
    p = counts[counts > 0] / counts.sum()
    assert m["usage_by_encoder"][0][0] == pytest.approx((counts > 0).mean())
    assert m["rows"] == len(val["x"]) and np.exp(-(p * np.log(p)).sum()) <= spec.codebook_sizes[0]


def test_codebook_size_rule():
    assert scale_codebook_sizes((128, 256, 512), 4096) == (128, 256, 512)
    assert scale_codebook_sizes((128, 256, 512), 600) == (64, 64, 64)
    assert scale_codebook_sizes((128, 256, 512), 3) == (2, 2, 2)


def test_scalar_path_trains_at_its_own_rate(data):
    """The category encoders and the scalar head take ``scalar_lr_scale`` times the epoch's rate."""
    train, val, spec = data
    model = build_model(spec, SEED)
    settings = TrainSettings(epochs=1, learning_rate=1e-3, weight_decay=0.0, temporal_weight=1.0, ic_weight=0.5,
                             kmeans_init_rows=512, seed=SEED, scalar_lr_scale=0.25)
    state = train_model(model, settings, _batches(train), None)
    groups = state.optimizer_state["param_groups"]
    assert sorted((g["lr"], g["lr_scale"]) for g in groups) == [(2.5e-4, 0.25), (1e-3, 1.0)]
    scalar = [n for n, _ in model.named_parameters() if n.startswith(SCALAR_PATH)]
    assert len(next(g for g in groups if g["lr_scale"] == 0.25)["params"]) == len(scalar) > 0


def test_epoch_line_reports_loss_and_validation_per_level():
    from spinlock.encoding.training import epoch_line

    record = {"epoch": 3, "train_total": 0.41234, "train_recon": 0.3, "train_seconds": 2.54,
              "validation": {"r2": {"all": [0.7, 0.8, 0.85]}, "codebook_usage": [0.9, 0.8, 0.7]}}
    assert epoch_line(record, 40) == ("epoch 4/40: loss 0.4123 (features 0.3000), 2.5 s; validation R²"
                                      " 0.700/0.800/0.850 (coarse/+medium/all), codebook usage 0.90/0.80/0.70")
    del record["validation"]
    assert epoch_line(record, 40).endswith("2.5 s")


def test_patience_stops_and_keeps_the_best_epoch(data, monkeypatch, tmp_path):
    """Scripted validation scores: the best epoch's weights are kept, training stops ``patience`` epochs
    after it, a resume from a mid-run checkpoint ends identically, and a stopped state trains no more."""
    import spinlock.encoding.training as T

    scores = iter([0.5, 0.7, 0.6, 0.65, 0.69, 0.4, 0.9, 0.9] * 3)
    monkeypatch.setattr(T, "evaluate", lambda *a, **k: {"r2": {"all": [next(scores)] * 3}})  # scalar R² only
    train, val, spec = data
    settings = dataclasses.replace(_settings(8), patience=3)

    def run(start=None, states=None):
        return train_model(build_model(spec, SEED), settings, _batches(train), lambda e: [val], start=start,
                           on_epoch_end=(lambda s, r: states.append(s)) if states is not None else None)

    states: list[TrainState] = []
    state = run(states=states)
    assert state.epoch == 5 and state.stopped and state.best_epoch == 1  # 0.7 at epoch 1, 3 epochs without better
    assert [T.validation_score(r, settings) for r in state.history] == pytest.approx([0.5, 0.7, 0.6, 0.65, 0.69])
    assert state.final_record["epoch"] == 1
    for k in state.model_state:  # the kept weights are epoch 1's snapshot, not the last epoch's
        assert torch.equal(state.final_model_state[k], states[1].model_state[k]), k
    assert any(not torch.equal(state.model_state[k], states[1].model_state[k]) for k in state.model_state)

    scores = iter([0.6, 0.65, 0.69, 0.4])  # what epochs 2.. score again after a resume from epoch 1's checkpoint
    states[1].save(tmp_path / "state.pt")
    resumed = run(start=T.TrainState.load(tmp_path / "state.pt"))
    assert resumed.epoch == 5 and resumed.best_epoch == 1
    for k in state.model_state:
        assert torch.equal(state.final_model_state[k], resumed.final_model_state[k]), k
    assert run(start=state) is state  # patience ran out: nothing more is trained



def test_validation_score_weights_families_as_the_loss():
    settings = dataclasses.replace(_settings(1), temporal_weight=1.0, ic_weight=0.5)
    record = {"validation": {"r2": {"all": [0.6, 0.7, 0.8], "temporal": [0.0, 0.3, 0.3], "ic": [-0.5, 0.0, 0.5],
                                    "summary": [9.0, 9.0, 9.0]}}}
    assert validation_score(record, settings) == pytest.approx((0.7 + 0.2 + 0.5 * 0.0) / 2.5)
    assert validation_score({"validation": {"r2": {"all": [0.6, 0.7, 0.8]}}}, settings) == pytest.approx(0.7)
    assert validation_score({"epoch": 0}, settings) is None
