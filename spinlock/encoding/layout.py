"""Token layout: which (stream, level) codebooks a tokenizer emits as token positions, and their sizes.

Every token stream has a three-level quantizer, but not every level carries information:

* the planner gives a level one code (K = 1) once the coarser levels resolve the stream's input
  (:func:`spinlock.encoding.model.encoder_codebook_sizes`: a discrete category with 5 values gets
  ``[5, 1, 1]``); the quantizer keeps such a level (a constant offset of the residual) but its code
  is always 0;
* a codebook with K >= 2 may still come out of training using a single code for every training
  operator.

Neither is a token position. The layout is fixed when the tokenizer is fitted: :meth:`TokenLayout.plan`
keeps the K >= 2 levels, then :meth:`TokenLayout.trim` drops those the fit's training operators
(converged, training split) all map to one code. It is saved in ``tokenizer.json`` (with the dropped
levels and their one code) and written with the tokens: ``/tokens`` attrs ``names``, ``stream``,
``level`` (1 coarse .. 3 fine), ``codebook_size`` (one entry per column), and the ``spinlock`` metadata
of ``tokens.parquet``. Encoding other data with a saved tokenizer gives the same layout.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from spinlock.encoding.model import LEVELS, ModelSpec
from spinlock.errors import DataError
from spinlock.storage.layout import TOKENS_FILE

ATTRS = ("names", "stream", "level", "codebook_size")
"""The ``/tokens`` attributes that describe the layout, one entry per column."""


@dataclass(frozen=True)
class Position:
    """One codebook: stream name, level (1 coarse .. 3 fine) and its number of codes K."""

    stream: str
    level: int
    codebook_size: int

    @property
    def name(self) -> str:
        """Column name: ``<stream>.l<level>``."""
        return f"{self.stream}.l{self.level}"

    def to_json(self) -> dict:
        return {"stream": self.stream, "level": self.level, "codebook_size": self.codebook_size}


@dataclass(frozen=True)
class TokenLayout:
    """``positions``: the emitted codebooks in column order; ``dropped``: (codebook, its one code)."""

    streams: tuple[str, ...]
    """Every token stream of the model, in quantizer order (a stream may have no position)."""
    positions: tuple[Position, ...]
    dropped: tuple[tuple[Position, int], ...] = ()

    @classmethod
    def plan(cls, spec: ModelSpec) -> TokenLayout:
        """Every level with K >= 2, in stream-then-level order; K = 1 levels are dropped (code 0)."""
        books = [Position(s, lv + 1, int(k)) for s, sizes in zip(spec.encoder_names, spec.encoder_codebook_sizes,
                                                                 strict=True) for lv, k in enumerate(sizes)]
        return cls(tuple(spec.encoder_names), tuple(p for p in books if p.codebook_size > 1),
                   tuple((p, 0) for p in books if p.codebook_size == 1))

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.positions]

    @property
    def columns(self) -> np.ndarray:
        """Column of each position in the model's flattened codes [B, E·3] (stream e, level l: 3e + l - 1)."""
        return np.array([LEVELS * self.streams.index(p.stream) + p.level - 1 for p in self.positions], np.int64)

    def full_codes(self, tokens: np.ndarray) -> np.ndarray:
        """The model's codes [N, E, 3] int64 from ``tokens`` [N, positions]: the dropped levels get their one
        code back (what :meth:`spinlock.encoding.model.HierarchicalVQVAE.decode_indices` reads)."""
        self.check(np.asarray(tokens), "tokens to decode")
        full = np.zeros((len(tokens), len(self.streams), LEVELS), np.int64)
        for p, code in self.dropped:
            full[:, self.streams.index(p.stream), p.level - 1] = code
        full.reshape(len(tokens), -1)[:, self.columns] = tokens
        return full

    def trim(self, tokens: np.ndarray) -> tuple[TokenLayout, np.ndarray]:
        """Drop the positions where ``tokens`` [n, positions] (the fit's training operators) hold one
        code; returns the new layout and the kept columns of ``tokens``."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] != len(self.positions) or tokens.shape[0] == 0:
            raise ValueError(f"trim needs [n >= 1, {len(self.positions)}] tokens, got {tokens.shape}")
        return self.trim_single((tokens == tokens[:1]).all(axis=0), tokens[0], tokens.shape[0])

    def trim_single(self, single: np.ndarray, first: np.ndarray, rows: int) -> tuple[TokenLayout, np.ndarray]:
        """:meth:`trim` from streamed statistics of the ``rows`` training operators: ``single`` [positions]
        (every row holds one code there) and ``first`` [positions] (the first row's codes)."""
        keep = np.flatnonzero(~np.asarray(single, bool))
        if keep.size == 0:
            raise DataError(f"every token position holds one code for all {rows} training operators:"
                            " the tokenizer carries no information (too few or identical operators?)")
        dropped = self.dropped + tuple((self.positions[j], int(first[j])) for j in np.flatnonzero(single))
        return TokenLayout(self.streams, tuple(self.positions[j] for j in keep), dropped), keep

    def check(self, tokens: np.ndarray, source: str) -> None:
        """Raise DataError unless ``tokens`` [N, positions] has one column per position and codes in [0, K)."""
        if tokens.ndim != 2 or tokens.shape[1] != len(self.positions):
            raise DataError(f"{source}: tokens have shape {tokens.shape}, the layout has {len(self.positions)}"
                            " positions")
        if tokens.shape[0]:
            sizes = np.array([p.codebook_size for p in self.positions])
            bad = np.flatnonzero((tokens.min(axis=0) < 0) | (tokens.max(axis=0) >= sizes))
            if bad.size:
                raise DataError(f"{source}: codes outside [0, K) in column(s) "
                                + ", ".join(f"{self.positions[j].name} (K={sizes[j]})" for j in bad[:8]))

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> dict:
        return {"streams": list(self.streams), "positions": [p.to_json() for p in self.positions],
                "dropped": [{**p.to_json(), "code": c} for p, c in self.dropped]}

    @classmethod
    def from_json(cls, d: Mapping, source: str = "<layout>") -> TokenLayout:
        try:
            streams = tuple(str(s) for s in d["streams"])
            positions = tuple(Position(str(p["stream"]), int(p["level"]), int(p["codebook_size"]))
                              for p in d["positions"])
            dropped = tuple((Position(str(p["stream"]), int(p["level"]), int(p["codebook_size"])), int(p["code"]))
                            for p in d.get("dropped", ()))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{source}: unreadable token layout: {e!r}") from None
        layout = cls(streams, positions, dropped)
        layout.validate(source)
        return layout

    def validate(self, source: str) -> None:
        """Raise DataError on a layout no tokenizer writes (unknown stream, bad level, K < 2, repeats)."""
        problems = [f"{p.name}: unknown stream" for p in self.positions if p.stream not in self.streams]
        problems += [f"{p.name}: level {p.level} not in 1..{LEVELS}" for p in self.positions
                     if not 1 <= p.level <= LEVELS]
        problems += [f"{p.name}: codebook size {p.codebook_size} < 2 (a one-code level is never emitted)"
                     for p in self.positions if p.codebook_size < 2]
        if len(set(self.names)) != len(self.names):
            problems.append("repeated positions")
        if problems:
            raise DataError(f"{source}: invalid token layout: " + "; ".join(problems[:8]))

    def write_attrs(self, attrs) -> None:
        """Store the per-column layout as HDF5 attributes (``ATTRS``) of ``/tokens``."""
        attrs["names"] = self.names
        attrs["stream"] = [p.stream for p in self.positions]
        attrs["level"] = np.array([p.level for p in self.positions], np.int32)
        attrs["codebook_size"] = np.array([p.codebook_size for p in self.positions], np.int32)

    @classmethod
    def from_attrs(cls, attrs: Mapping, source: str = "/tokens") -> TokenLayout:
        """The layout of a ``/tokens`` dataset from its attributes (``dropped`` is not stored there)."""
        missing = [a for a in ATTRS if a not in attrs]
        if missing:
            raise DataError(f"{source}: no token layout attribute(s) {missing} (written by a spinlock before the"
                            " layout was stored: run 'spinlock encode' or 'spinlock tokenize' again)")
        names = [_str(n) for n in attrs["names"]]
        stream = [_str(s) for s in attrs["stream"]]
        level = np.asarray(attrs["level"]).tolist()
        size = np.asarray(attrs["codebook_size"]).tolist()
        if not len(names) == len(stream) == len(level) == len(size):
            raise DataError(f"{source}: layout attributes have different lengths (names {len(names)}, stream"
                            f" {len(stream)}, level {len(level)}, codebook_size {len(size)})")
        positions = tuple(Position(s, int(lv), int(k)) for s, lv, k in zip(stream, level, size, strict=True))
        layout = cls(tuple(dict.fromkeys(stream)), positions)
        layout.validate(source)
        if layout.names != names:
            raise DataError(f"{source}: attribute 'names' does not match stream and level ({names[:4]} ...)")
        return layout


def read_parquet_layout(schema, source: str = TOKENS_FILE) -> TokenLayout:
    """The layout of a ``tokens.parquet`` table from its ``spinlock`` schema metadata (a ``pyarrow.Schema``),
    checked against its columns (``operator_index``, then one per position)."""
    meta = (schema.metadata or {}).get(b"spinlock")
    try:
        positions = json.loads(meta)["positions"]
    except (TypeError, ValueError, KeyError):
        raise DataError(f"{source}: no token layout in the 'spinlock' schema metadata (written by a spinlock"
                        " before the layout was stored: run 'spinlock encode' again)") from None
    streams = list(dict.fromkeys(str(p.get("stream")) for p in positions if isinstance(p, dict)))
    layout = TokenLayout.from_json({"streams": streams, "positions": positions}, source)
    if list(schema.names) != ["operator_index", *layout.names]:
        raise DataError(f"{source}: columns {list(schema.names)[:4]} ... do not follow the layout in its metadata")
    return layout


def _str(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
