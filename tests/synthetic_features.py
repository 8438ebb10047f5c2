"""A tiny synthetic run directory in the feature-table contract, for the tokenizer tests and bench.

Layout written (the same as ``spinlock generate`` produces, minus trajectories and parameters)::

    OUT/config.yaml                    seed + tokenizer section
    OUT/features/shard-NNNNN.parquet   operator_index, status, ic_type, <family>.<name>, temporal.<name>
    OUT/dataset.h5                     /operators/index, /ics/fields, /features/*, /status

Features have *planted groups*: every scalar feature is a noisy monotone function of one of
``len(GROUPS)`` latent factors, so clustering by correlation should recover the groups exactly. The
table also carries the awkward cases the cleaner must handle: a constant column, an exact affine
duplicate, a column that is mostly NaN, heavy outliers, and diverged operators (status 1, all NaN).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

# planted groups: (family, number of features); group g is driven by latent factor g
GROUPS: list[tuple[str, int]] = [
    ("initial", 5),
    ("initial", 4),
    ("architecture", 6),
    ("summary", 7),
    ("summary", 6),
    ("summary", 8),
]
"""Each entry is one planted group of features sharing a latent factor."""

TEMPORAL_NAMES = ["energy", "roughness"]
TEMPORAL_LENGTH = 8
IC_SHAPE = (2, 16, 16)


@dataclass(frozen=True)
class SyntheticRun:
    out: Path
    n_operators: int
    names: dict[str, list[str]]
    """Per-family feature names (without the family prefix) as stored in the schema metadata."""
    groups: dict[str, int]
    """Full column name → planted group id, for the structured (non-degenerate) columns."""
    diverged: np.ndarray
    """[N] bool, operators written with status 1 and NaN features."""


def _factors(n: int, rng: np.random.Generator) -> np.ndarray:
    """[N, G, 2] latent factors: a primary and a secondary one per group (uniform, independent)."""
    return rng.uniform(-1.0, 1.0, size=(n, len(GROUPS), 2))


def _scalar_columns(z: np.ndarray, rng: np.random.Generator) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Feature j of group g is a monotone map of ``z_g1 + c_j z_g2`` plus 5 % noise.

    Mixing weights c_j in [-0.5, 0.5] keep within-group |r| high (>= 0.6) while the group's manifold
    is two-dimensional, so finer quantization levels have something left to encode.
    """
    n = z.shape[0]
    families: dict[str, dict[str, np.ndarray]] = {"initial": {}, "architecture": {}, "summary": {}}
    groups: dict[str, int] = {}
    for g, (family, count) in enumerate(GROUPS):
        for j in range(count):
            mix = -0.5 + j / max(count - 1, 1)
            shape = [np.tanh, np.sinh, lambda v: v, lambda v: v**3 + v][j % 4]
            clean = shape(0.8 * (z[:, g, 0] + mix * z[:, g, 1]))
            values = (clean / clean.std() + 0.05 * rng.standard_normal(n)) * (1.0 + 10.0 * j)
            name = f"g{g}.f{j}"
            families[family][name] = values
            groups[f"{family}.{name}"] = g
    # degenerate columns the cleaner must drop
    families["summary"]["constant"] = np.full(n, 3.25)
    families["summary"]["dup_of_g3f0"] = 2.0 * families["summary"]["g3.f0"] + 1.0
    mostly_nan = rng.standard_normal(n)
    mostly_nan[rng.uniform(size=n) < 0.6] = np.nan
    families["architecture"]["mostly_nan"] = mostly_nan
    # heavy outliers in one structured column (robust clipping keeps its correlation)
    outliers = rng.uniform(size=n) < 0.005
    families["summary"]["g4.f0"] = np.where(outliers, 1e6, families["summary"]["g4.f0"])
    return families, groups


def _temporal(z: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """[N, T'] curves: a decay whose rate follows factor 3 and an oscillation following factor 5."""
    n = z.shape[0]
    t = np.arange(TEMPORAL_LENGTH, dtype=np.float64)[None, :] / TEMPORAL_LENGTH
    energy = np.exp(-(1.5 + z[:, 3:4, 0]) * 3.0 * t) + 0.01 * rng.standard_normal((n, TEMPORAL_LENGTH))
    rough = np.sin((2.0 + z[:, 5:6, 0]) * 4.0 * t + z[:, 5:6, 1]) + 0.01 * rng.standard_normal((n, TEMPORAL_LENGTH))
    return {"energy": energy, "roughness": rough}


def _ic_fields(z: np.ndarray) -> np.ndarray:
    """[N, C, H, W] sinusoids whose wavenumber follows factor 0 and amplitude factor 1."""
    c, h, w = IC_SHAPE
    yy, xx = np.meshgrid(np.arange(h) / h, np.arange(w) / w, indexing="ij")
    k = np.round(1.0 + 1.5 * (z[:, 0, 0] + 1.0))[:, None, None]
    amp = (1.5 + z[:, 1, 0])[:, None, None]
    f0 = amp * np.sin(2 * np.pi * k * xx[None])
    f1 = amp * np.cos(2 * np.pi * k * yy[None])
    return np.stack([f0, f1], axis=1)[:, :c].astype(np.float32)


def write_synthetic_run(
    out: str | Path,
    n_operators: int = 240,
    n_shards: int = 3,
    seed: int = 0,
    diverged_fraction: float = 0.03,
    tokenizer: dict | None = None,
    data_seed: int = 1234,
) -> SyntheticRun:
    """Write a run directory of ``n_operators`` synthetic operators split over ``n_shards`` tables.

    ``seed`` is the run seed stored in config.yaml; ``data_seed`` drives the synthetic values.
    ``tokenizer`` is written as the config's ``tokenizer`` section (defaults apply for missing keys).
    """
    out = Path(out)
    (out / "features").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(data_seed)
    z = _factors(n_operators, rng)
    families, groups = _scalar_columns(z, rng)
    temporal = _temporal(z, rng)
    ics = _ic_fields(z)
    diverged = rng.uniform(size=n_operators) < diverged_fraction
    diverged[1] = True  # at least one, in the first shard
    status = diverged.astype(np.int8)
    ic_types = np.array(["sine", "cosine", "mixed"])[np.arange(n_operators) % 3]

    names = {fam: list(cols) for fam, cols in families.items()}
    names["temporal"] = list(TEMPORAL_NAMES)
    scalar = {
        f"{fam}.{name}": np.where(diverged, np.nan, v).astype(np.float32)
        for fam, cols in families.items()
        for name, v in cols.items()
    }
    curves = {name: np.where(diverged[:, None], np.nan, v).astype(np.float32) for name, v in temporal.items()}
    meta = {b"spinlock": json.dumps({"names": names, "temporal_stride": 4}).encode()}

    bounds = np.linspace(0, n_operators, n_shards + 1).astype(int)
    for s in range(n_shards):
        lo, hi = bounds[s], bounds[s + 1]
        cols: dict[str, pa.Array] = {
            "operator_index": pa.array(np.arange(lo, hi, dtype=np.int64)),
            "status": pa.array(status[lo:hi]),
            "ic_type": pa.array(ic_types[lo:hi].tolist(), type=pa.string()),
        }
        for name, v in scalar.items():
            cols[name] = pa.array(v[lo:hi])
        for name, v in curves.items():
            flat = pa.array(v[lo:hi].reshape(-1))
            cols[f"temporal.{name}"] = pa.FixedSizeListArray.from_arrays(flat, TEMPORAL_LENGTH)
        table = pa.table(cols).replace_schema_metadata(meta)
        pq.write_table(table, out / "features" / f"shard-{s:05d}.parquet")

    with h5py.File(out / "dataset.h5", "w") as f:
        f["operators/index"] = np.arange(n_operators, dtype=np.int64)
        f["ics/fields"] = ics
        f["status"] = status
        for fam, cols in families.items():
            ds = f.create_dataset(
                f"features/{fam}",
                data=np.stack([scalar[f"{fam}.{c}"] for c in cols], axis=1),
            )
            ds.attrs["names"] = list(cols)
        ds = f.create_dataset("features/temporal", data=np.stack([curves[n] for n in TEMPORAL_NAMES], axis=2))
        ds.attrs["names"] = TEMPORAL_NAMES
        ds.attrs["stride"] = 4

    (out / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "tokenizer": tokenizer or {}}))
    return SyntheticRun(out=out, n_operators=n_operators, names=names, groups=groups, diverged=diverged)


def untrained_tokenizer(run_dir, first_stream: tuple[int, int, int] = (4, 8, 8)):
    """A Tokenizer fitted (cleaning, categories, k-means codebook initialisation; no training) on the
    first feature table of a synthetic run; its first stream is planned ``first_stream``.

    Returns ``(tokenizer, schema, files, batch, ic)`` with ``batch``/``ic`` the first table's rows.
    (Imports here: the plain run writer above is also used where torch is not needed.)"""
    import torch

    from spinlock.encoding.categories import CategoryDiscovery
    from spinlock.encoding.cleaning import FeatureCleaner
    from spinlock.encoding.icfields import ICReader
    from spinlock.encoding.model import ModelSpec
    from spinlock.encoding.schema import FeatureSchema
    from spinlock.encoding.split import Split
    from spinlock.encoding.tokenizer import Tokenizer, prepare_inputs
    from spinlock.encoding.training import build_model

    schema, files = FeatureSchema.from_parquet_dir(Path(run_dir) / "features")
    batch = schema.batch_from_arrow(pq.read_table(files[0]))
    cleaner = FeatureCleaner(schema, Split(3, 0.2)).fit(lambda: [batch])
    cats = CategoryDiscovery(2, 10).fit(cleaner.correlation_, cleaner.names_out)
    ic = ICReader(Path(run_dir) / "dataset.h5").read(batch.operator_index)
    n = len(cats.categories_)
    spec = ModelSpec(category_columns=tuple(c.columns for c in cats.categories_), n_features=len(cleaner.names_out),
                     temporal_features=2, temporal_length=schema.temporal_length, ic_channels=2, ic_resolution=8,
                     latent_dim=8, hidden_dim=16, codebook_sizes=(4, 8, 8),
                     encoder_codebook_sizes=(first_stream,) + ((4, 8, 8),) * (n + 1))
    model = build_model(spec, 0)
    inputs = {k: torch.from_numpy(v) for k, v in prepare_inputs(cleaner, batch, ic, 8).items()}
    model.initialize_codebooks(inputs["x"], inputs["temporal"], inputs["ic"])
    tok = Tokenizer(cleaner, cats, model, config_hash="x", seed=0, ic_shape=tuple(ic.shape[1:]))
    return tok, schema, files, batch, ic
