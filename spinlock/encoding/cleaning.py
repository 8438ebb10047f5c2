"""The cleaning transform: non-finite policy, robust clipping, variance filter, de-duplication, scaling.

Fitted in two streaming passes over the *training* rows of non-diverged operators (``Split.fit_rows``);
each pass reduces a block to small mergeable statistics, so memory is bounded by the sample size and
D x D co-moments, never by the number of operators:

1. ``pass1_partial``: per-column counts of finite values and a bottom-k row sample (``sketch``).
   ``fit_pass1`` drops columns with too many non-finite values and takes each column's median and
   clipping quantiles [q, 1-q] from the sample.
2. ``pass2_partial``: moments of the imputed, clipped values. ``fit_pass2`` drops near-constant
   columns, then greedily drops the later of any pair with |r| > ``dedup_threshold`` (in column
   order, so the result does not depend on data order), and keeps mean and std for standardisation.

``transform`` applies to any row: non-finite → training median, clip to [lower, upper], then
``(x - center) / scale`` on the kept columns. Diverged operators (all NaN) therefore map to the
imputed median vector and get well-defined tokens; ``/status`` tells them apart downstream.
Temporal curves get the same treatment per curve feature (statistics pooled over rows and steps),
without de-duplication.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spinlock import __version__
from spinlock.encoding.schema import FeatureBatch, FeatureSchema, check_names
from spinlock.encoding.sketch import BottomKSample, Moments, row_keys
from spinlock.encoding.split import Split
from spinlock.errors import DataError

CLEANER_FORMAT = 1


@dataclass
class Pass1Stats:
    """Mergeable pass-1 statistics of one block; ``first_index`` orders blocks for a stable merge."""

    rows: int
    finite: np.ndarray
    """[D] int64 finite values per scalar column."""
    temporal_finite: np.ndarray
    """[Dt] int64 finite values per curve feature (over rows and steps)."""
    sample: BottomKSample
    first_index: int

    def merge(self, other: Pass1Stats) -> Pass1Stats:
        return Pass1Stats(self.rows + other.rows, self.finite + other.finite,
                          self.temporal_finite + other.temporal_finite, self.sample.merge(other.sample),
                          min(self.first_index, other.first_index))


@dataclass
class Pass2Stats:
    scalar: Moments
    temporal: Moments
    first_index: int

    def merge(self, other: Pass2Stats) -> Pass2Stats:
        return Pass2Stats(self.scalar.merge(other.scalar), self.temporal.merge(other.temporal),
                          min(self.first_index, other.first_index))


@dataclass(frozen=True)
class CleanFeatures:
    """Cleaned block: ``x`` [B, D'] and ``temporal`` [B, T', Dt'] float32 (standardised)."""

    x: np.ndarray
    temporal: np.ndarray


def _rows_by_step(t: np.ndarray) -> np.ndarray:
    """[B, T', Dt] → [B·T', Dt] (explicit shape so Dt = 0 works)."""
    return t.reshape(t.shape[0] * t.shape[1], t.shape[2])


def merge_ordered(parts: Iterable[Pass1Stats | Pass2Stats]):
    """Merge partial statistics in order of their first operator index (reproducible rounding)."""
    parts = sorted(parts, key=lambda p: p.first_index)
    if not parts:
        raise DataError("no training rows: every operator is diverged or in the validation split")
    out = parts[0]
    for p in parts[1:]:
        out = out.merge(p)
    return out


class FeatureCleaner:
    """sklearn-style transform over raw feature blocks (see the module docstring for the policy).

    Learned attributes (after ``fit``): ``mask_`` [D] kept scalar columns, ``median_``, ``lower_``,
    ``upper_`` [D] imputation value and clip bounds, ``center_``, ``scale_`` [D'] standardisation of
    kept columns, ``correlation_`` [D', D'] of kept columns (clipped values), ``drop_reason_`` (name →
    reason), ``finite_fraction_`` [D], ``n_fit_rows_``; and the ``temporal_*`` counterparts [Dt].
    """

    def __init__(
        self,
        schema: FeatureSchema,
        split: Split,
        *,
        max_nonfinite_fraction: float = 0.1,
        min_relative_std: float = 1e-6,
        dedup_threshold: float = 0.995,
        clip_quantile: float = 0.01,
        sample_size: int = 4096,
    ):
        self.schema = schema
        self.split = split
        self.max_nonfinite_fraction = max_nonfinite_fraction
        self.min_relative_std = min_relative_std
        self.dedup_threshold = dedup_threshold
        self.clip_quantile = clip_quantile
        self.sample_size = sample_size

    # ----------------------------------------------------------------- pass 1
    def pass1_partial(self, batch: FeatureBatch) -> Pass1Stats:
        """Statistics of the fitting rows of ``batch`` (training split, status 0)."""
        b = batch.select(self.split.fit_rows(batch.operator_index, batch.status))
        keys = row_keys(self.split.seed, "tokenizer.cleaning.sample", b.operator_index)
        sample = BottomKSample.of(self.sample_size, keys, {"scalar": b.scalar, "temporal": b.temporal})
        return Pass1Stats(
            rows=len(b),
            finite=np.isfinite(b.scalar).sum(axis=0).astype(np.int64),
            temporal_finite=np.isfinite(b.temporal).sum(axis=(0, 1)).astype(np.int64),
            sample=sample,
            first_index=int(batch.operator_index.min()) if len(batch) else np.iinfo(np.int64).max,
        )

    def fit_pass1(self, stats: Pass1Stats) -> FeatureCleaner:
        if stats.rows == 0:
            raise DataError("no training rows: every operator is diverged or in the validation split")
        self.n_fit_rows_ = int(stats.rows)
        self.finite_fraction_ = stats.finite / stats.rows
        steps = max(self.schema.temporal_length, 1)
        self.temporal_finite_fraction_ = stats.temporal_finite / (stats.rows * steps)
        q = [0.5, self.clip_quantile, 1.0 - self.clip_quantile]
        s = stats.sample.values["scalar"].astype(np.float64)
        t = _rows_by_step(stats.sample.values["temporal"].astype(np.float64))
        s[~np.isfinite(s)] = np.nan
        t[~np.isfinite(t)] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are dropped below
            qs = np.nan_to_num(np.nanquantile(s, q, axis=0)) if s.size else np.zeros((3, s.shape[1]))
            qt = np.nan_to_num(np.nanquantile(t, q, axis=0)) if t.size else np.zeros((3, t.shape[1]))
        self.median_, self.lower_, self.upper_ = qs
        self.temporal_median_, self.temporal_lower_, self.temporal_upper_ = qt
        self._pass1_done = True
        return self

    # ----------------------------------------------------------------- pass 2
    def _impute_clip(self, batch: FeatureBatch) -> tuple[np.ndarray, np.ndarray]:
        """Raw → imputed and clipped, [B, D] and [B, T', Dt] float64."""
        s = batch.scalar.astype(np.float64)
        s = np.where(np.isfinite(s), s, self.median_)
        s = np.clip(s, self.lower_, self.upper_)
        t = batch.temporal.astype(np.float64)
        t = np.where(np.isfinite(t), t, self.temporal_median_)
        t = np.clip(t, self.temporal_lower_, self.temporal_upper_)
        return s, t

    def pass2_partial(self, batch: FeatureBatch) -> Pass2Stats:
        if not getattr(self, "_pass1_done", False):
            raise RuntimeError("pass2_partial needs fit_pass1 first")
        b = batch.select(self.split.fit_rows(batch.operator_index, batch.status))
        s, t = self._impute_clip(b)
        return Pass2Stats(
            scalar=Moments.of(s, full=True),
            temporal=Moments.of(_rows_by_step(t), full=False),
            first_index=int(batch.operator_index.min()) if len(batch) else np.iinfo(np.int64).max,
        )

    def fit_pass2(self, stats: Pass2Stats) -> FeatureCleaner:
        names = self.schema.scalar
        reason: dict[str, str] = {}
        keep_nonfinite = self.finite_fraction_ >= 1.0 - self.max_nonfinite_fraction
        mean, std = stats.scalar.mean, np.sqrt(stats.scalar.variance)
        constant = (std == 0) | (std <= self.min_relative_std * np.abs(mean))
        for j, n in enumerate(names):
            if not keep_nonfinite[j]:
                reason[n] = f"non-finite in {1 - self.finite_fraction_[j]:.1%} of training rows"
            elif constant[j]:
                reason[n] = "near-constant"
        candidates = [j for j in range(len(names)) if names[j] not in reason]
        corr = stats.scalar.correlation()
        kept: list[int] = []
        for j in candidates:
            dup = next((i for i in kept if abs(corr[i, j]) > self.dedup_threshold), None)
            if dup is None:
                kept.append(j)
            else:
                reason[names[j]] = f"duplicate of {names[dup]} (|r| = {abs(corr[dup, j]):.4f})"
        if not kept:
            raise DataError("cleaning dropped every scalar feature column; see the drop reasons in the log")
        self.mask_ = np.zeros(len(names), dtype=bool)
        self.mask_[kept] = True
        self.center_ = mean[kept]
        self.scale_ = std[kept]
        self.correlation_ = corr[np.ix_(kept, kept)]
        tmean, tstd = stats.temporal.mean, np.sqrt(stats.temporal.variance)
        tkeep = (self.temporal_finite_fraction_ >= 1.0 - self.max_nonfinite_fraction) & ~(
            (tstd == 0) | (tstd <= self.min_relative_std * np.abs(tmean)))
        for j, n in enumerate(self.schema.temporal):
            if not tkeep[j]:
                reason[f"temporal.{n}"] = "non-finite or near-constant curve"
        self.temporal_mask_ = tkeep
        self.temporal_center_ = tmean[tkeep]
        self.temporal_scale_ = tstd[tkeep]
        self.drop_reason_ = reason
        return self

    # ----------------------------------------------------------------- whole fit
    def fit(self, batches: Callable[[], Iterable[FeatureBatch]]) -> FeatureCleaner:
        """Two passes over ``batches()`` (called twice); the in-process twin of the Ray Data fit."""
        self.fit_pass1(merge_ordered(self.pass1_partial(b) for b in batches()))
        return self.fit_pass2(merge_ordered(self.pass2_partial(b) for b in batches()))

    # ----------------------------------------------------------------- apply
    @property
    def names_out(self) -> list[str]:
        """Kept scalar column names, [D'] in output order."""
        return [n for n, k in zip(self.schema.scalar, self.mask_, strict=True) if k]

    @property
    def temporal_names_out(self) -> list[str]:
        return [n for n, k in zip(self.schema.temporal, self.temporal_mask_, strict=True) if k]

    def transform(self, batch: FeatureBatch) -> CleanFeatures:
        """Raw block → standardised ``x`` [B, D'] and ``temporal`` [B, T', Dt'] (every row, any status)."""
        if not hasattr(self, "mask_"):
            raise RuntimeError("FeatureCleaner is not fitted")
        s, t = self._impute_clip(batch)
        x = (s[:, self.mask_] - self.center_) / self.scale_
        tt = (t[:, :, self.temporal_mask_] - self.temporal_center_) / self.temporal_scale_
        return CleanFeatures(x.astype(np.float32), tt.astype(np.float32))

    def check_schema(self, schema: FeatureSchema, source: str) -> None:
        """Refuse a table whose feature names differ from the fitted ones (with a diff)."""
        check_names(self.schema.scalar, schema.scalar, f"{source} (scalar features)")
        check_names(self.schema.temporal, schema.temporal, f"{source} (temporal curves)")
        if schema.temporal_length != self.schema.temporal_length:
            raise DataError(f"{source}: temporal curves have {schema.temporal_length} steps,"
                            f" the cleaner was fitted on {self.schema.temporal_length}")

    # ----------------------------------------------------------------- persistence
    _ARRAYS = ("mask_", "median_", "lower_", "upper_", "center_", "scale_", "correlation_",
               "finite_fraction_", "temporal_mask_", "temporal_median_", "temporal_lower_",
               "temporal_upper_", "temporal_center_", "temporal_scale_", "temporal_finite_fraction_")

    def params(self) -> dict:
        return {"max_nonfinite_fraction": self.max_nonfinite_fraction,
                "min_relative_std": self.min_relative_std, "dedup_threshold": self.dedup_threshold,
                "clip_quantile": self.clip_quantile, "sample_size": self.sample_size}

    def save(self, path: str | Path) -> None:
        """One ``.npz`` (no pickles): learned arrays plus a JSON header with names and parameters."""
        meta = {"format": CLEANER_FORMAT, "spinlock_version": __version__, "schema": self.schema.to_json(),
                "split": {"seed": self.split.seed, "validation_fraction": self.split.validation_fraction},
                "params": self.params(), "drop_reason": self.drop_reason_, "n_fit_rows": self.n_fit_rows_}
        arrays = {k: getattr(self, k) for k in self._ARRAYS}
        with open(path, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> FeatureCleaner:
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k: z[k] for k in cls._ARRAYS}
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"{path}: not a cleaning transform file: {e}") from None
        if meta.get("format") != CLEANER_FORMAT:
            raise DataError(f"{path}: cleaning format {meta.get('format')} (expected {CLEANER_FORMAT})")
        obj = cls(FeatureSchema.from_json(meta["schema"]), Split(**meta["split"]), **meta["params"])
        for k, v in arrays.items():
            setattr(obj, k, v)
        obj.drop_reason_ = meta["drop_reason"]
        obj.n_fit_rows_ = meta["n_fit_rows"]
        obj._pass1_done = True
        return obj
