"""Feature-table schema: which columns are scalar features, which are temporal curves, and their names.

The per-shard Parquet tables (``OUT/features/shard-NNNNN.parquet``) hold ``operator_index``,
``status``, ``ic_type``, one float32 column ``<family>.<name>`` per scalar feature and one
fixed-size list column ``temporal.<name>`` (length T') per temporal curve. The Parquet schema
metadata key ``spinlock`` lists the names per family; the tokenizer keeps them and refuses data whose
names differ (with a diff), so a column can never be silently misaligned.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from spinlock.errors import DataError
from spinlock.storage.layout import FEATURE_TABLE_GLOB, SCALAR_FAMILIES, TEMPORAL_FAMILY

META_KEY = b"spinlock"


class FeatureNameMismatch(DataError):
    """Features arrived under different names than the transform or model was fitted on."""


def name_diff(expected: Sequence[str], got: Sequence[str]) -> str:
    """Human-readable difference of two name lists (missing, unexpected, or reordered)."""
    exp, have = list(expected), list(got)
    missing = [n for n in exp if n not in set(have)]
    extra = [n for n in have if n not in set(exp)]
    parts = []
    if missing:
        parts.append(f"missing {len(missing)}: {_short(missing)}")
    if extra:
        parts.append(f"unexpected {len(extra)}: {_short(extra)}")
    if not parts:
        first = next((i for i, (a, b) in enumerate(zip(exp, have, strict=False)) if a != b), None)
        if first is None or len(exp) != len(have):
            parts.append(f"repeated names ({len(exp)} expected, {len(have)} given)")
        else:
            parts.append(f"same names in a different order (first difference at column {first}:"
                         f" expected {exp[first]!r}, got {have[first]!r})")
    return "; ".join(parts)


def _short(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... (+{len(names) - limit})" if len(names) > limit else "")


def check_names(expected: Sequence[str], got: Sequence[str], what: str) -> None:
    """Raise :class:`FeatureNameMismatch` with a diff unless ``got`` equals ``expected`` exactly."""
    if list(expected) != list(got):
        raise FeatureNameMismatch(f"{what}: feature names differ from the fitted ones: {name_diff(expected, got)}")


@dataclass(frozen=True)
class FeatureBatch:
    """A block of operators' raw features.

    ``operator_index`` [B] int64, ``status`` [B] int8 (0 ok), ``scalar`` [B, D] float32 in
    ``FeatureSchema.scalar`` order, ``temporal`` [B, T', Dt] float32 (Dt may be 0).
    """

    operator_index: np.ndarray
    status: np.ndarray
    scalar: np.ndarray
    temporal: np.ndarray

    def __len__(self) -> int:
        return int(self.operator_index.shape[0])

    def select(self, rows: np.ndarray) -> FeatureBatch:
        """Rows by boolean mask or index array."""
        return FeatureBatch(self.operator_index[rows], self.status[rows], self.scalar[rows], self.temporal[rows])


@dataclass(frozen=True)
class FeatureSchema:
    """Names of the scalar columns (``family.name``) and temporal curves (``name``), and T'."""

    scalar: tuple[str, ...]
    temporal: tuple[str, ...]
    temporal_length: int

    @property
    def families(self) -> list[str]:
        """Family of each scalar column, [D]."""
        return [n.split(".", 1)[0] for n in self.scalar]

    @property
    def temporal_columns(self) -> list[str]:
        return [f"{TEMPORAL_FAMILY}.{n}" for n in self.temporal]

    def to_json(self) -> dict:
        return {"scalar": list(self.scalar), "temporal": list(self.temporal),
                "temporal_length": self.temporal_length}

    @classmethod
    def from_json(cls, d: dict) -> FeatureSchema:
        return cls(tuple(d["scalar"]), tuple(d["temporal"]), int(d["temporal_length"]))

    @classmethod
    def from_arrow(cls, schema: pa.Schema, source: str = "<table>") -> FeatureSchema:
        """Schema of a feature table from its ``spinlock`` metadata, checked against its columns."""
        meta = schema.metadata or {}
        if META_KEY not in meta:
            raise DataError(f"{source}: feature table has no 'spinlock' schema metadata (names per family)")
        try:
            names = json.loads(meta[META_KEY])["names"]
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{source}: unreadable 'spinlock' schema metadata: {e}") from None
        scalar = tuple(f"{fam}.{n}" for fam in SCALAR_FAMILIES for n in names.get(fam, []))
        temporal = tuple(names.get(TEMPORAL_FAMILY, []))
        missing = [c for c in (*scalar, *(f"{TEMPORAL_FAMILY}.{n}" for n in temporal)) if c not in schema.names]
        for required in ("operator_index", "status"):
            if required not in schema.names:
                missing.insert(0, required)
        if missing:
            raise DataError(f"{source}: columns named in the metadata are missing: {_short(missing)}")
        length = 0
        for n in temporal:
            t = schema.field(f"{TEMPORAL_FAMILY}.{n}").type
            if not pa.types.is_fixed_size_list(t):
                raise DataError(f"{source}: column 'temporal.{n}' must be a fixed-size list, got {t}")
            if length and t.list_size != length:
                raise DataError(f"{source}: temporal curves have different lengths ({length} vs {t.list_size})")
            length = t.list_size
        return cls(scalar, temporal, length)

    @classmethod
    def from_parquet_dir(cls, directory: str | Path) -> tuple[FeatureSchema, list[Path]]:
        """Schema shared by every feature table (``shard-*.parquet``) under ``directory`` (refuses a mix) and
        the files."""
        files = sorted(Path(directory).glob(FEATURE_TABLE_GLOB))
        return cls.from_parquet_files(files, str(directory)), files

    @classmethod
    def from_parquet_files(cls, files: list, where: str, filesystem=None) -> FeatureSchema:
        """Schema shared by ``files`` (paths on ``filesystem``, a pyarrow filesystem; default local)."""
        if not files:
            raise DataError(f"no feature tables ({FEATURE_TABLE_GLOB}) under {where}")
        first = cls.from_arrow(pq.read_schema(files[0], filesystem=filesystem), str(files[0]))
        for f in files[1:]:
            other = cls.from_arrow(pq.read_schema(f, filesystem=filesystem), str(f))
            if other != first:
                check_names(first.scalar + first.temporal, other.scalar + other.temporal, str(f))
                raise DataError(f"{f}: temporal length {other.temporal_length} != {first.temporal_length}")
        return first

    def batch_from_arrow(self, table: pa.Table, source: str = "<table>") -> FeatureBatch:
        """Extract a :class:`FeatureBatch` from a feature table (extra columns are ignored)."""
        names = set(table.column_names)  # a set: table.column_names builds a new list at every call
        missing = [c for c in ("operator_index", "status", *self.scalar, *self.temporal_columns) if c not in names]
        if missing:
            raise FeatureNameMismatch(f"{source}: feature table lacks fitted columns: {_short(missing)}")
        n = table.num_rows
        scalar = np.empty((n, len(self.scalar)), dtype=np.float32)
        for j, c in enumerate(self.scalar):
            scalar[:, j] = _float_column(table.column(c))
        temporal = np.empty((n, self.temporal_length, len(self.temporal)), dtype=np.float32)
        for j, c in enumerate(self.temporal_columns):
            temporal[:, :, j] = _curve_column(table.column(c), n, self.temporal_length)
        return FeatureBatch(
            operator_index=np.asarray(table.column("operator_index"), dtype=np.int64),
            status=np.asarray(table.column("status"), dtype=np.int8),
            scalar=scalar,
            temporal=temporal,
        )


def _float_column(col: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(col.fill_null(np.nan), dtype=np.float32)


def _curve_column(col: pa.ChunkedArray, n: int, length: int) -> np.ndarray:
    """[n, length] float32 from a fixed-size list column; a null curve or element becomes NaN."""
    arr = col.combine_chunks()
    if arr.null_count:
        # a null list slot has no values in flatten(); fill it explicitly
        arr = pa.compute.if_else(arr.is_null(), pa.scalar([None] * length, arr.type), arr)
    flat = arr.flatten().fill_null(np.nan)
    return np.asarray(flat, dtype=np.float32).reshape(n, length)
