"""Read-only view of a run directory for the plots: dataset.h5 metadata, features, tokens, tokenizer.

Everything optional in the output contract (trajectories, tokens, tokenizer/, temporal features) is
reported as ``None`` rather than raising, so each plot can be omitted with a reason. Rollouts come from
``/trajectories`` (or the run's Zarr array with ``storage.trajectories.format: zarr``) when stored,
otherwise from :func:`spinlock.replay.replay_operator` (bit-identical re-run). The HDF5 file is opened
per call, never held, so a ``RunData`` is cheap and picklable.

Driver memory stays bounded at any N: figures that show a distribution read a seeded sample of at most
:data:`MAX_PLOT_OPERATORS` operators (:meth:`RunData.plot_rows`), in row blocks, only those rows and one
shard file at a time (:func:`spinlock.storage.rows.read_table`);
tokens, the one per-operator table read whole (selections and code counts need every operator), are held
as int16 codes (int32 beyond 32 767 codes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from spinlock.encoding.layout import TokenLayout
from spinlock.encoding.model import LEVELS
from spinlock.errors import DataError, SpinlockError
from spinlock.rng import numpy_rng
from spinlock.storage.layout import (
    CATEGORIES_FILE,
    CONFIG_FILE,
    FEATURE_FAMILIES,
    METRICS_FILE,
    STATUS_NAMES,
    TEMPORAL_FAMILY,
    TOKENIZER_DIR,
)
from spinlock.storage.reader import dataset_file
from spinlock.storage.rows import read_table, table_blocks
from spinlock.storage.zarrstore import ZarrRows, open_trajectories

MAX_PLOT_OPERATORS = 20_000
"""Most operators a distribution figure reads (histograms, correlations, temporal bands, embeddings)."""


def sample_note(shown: int, total: int, what: str = "ok operators") -> str:
    """"all 812 ok operators" or "a sample of 20000 of the 1000000 ok operators" (figure captions)."""
    return f"all {total} {what}" if shown == total else f"a sample of {shown} of the {total} {what}"


def status_name(code: int) -> str:
    """The name of a ``/status`` code; any other code is shown as ``code <n>``."""
    return STATUS_NAMES.get(int(code), f"code {int(code)}")


@dataclass(frozen=True)
class FeatureTable:
    """One scalar feature family: ``values`` [N, D] float32 and one name per column."""

    family: str
    values: np.ndarray
    names: list[str]


@dataclass(frozen=True)
class TemporalTable:
    """``values`` [N, T', D] float32, ``names`` [D], ``steps`` [T'] simulation step of each sample."""

    values: np.ndarray
    names: list[str]
    steps: np.ndarray


@dataclass(frozen=True)
class Tokens:
    """``codes`` [N, K, L] int: token stream k (``categories[k]``), level l (0 is the coarsest), from the
    ``/tokens`` layout; -1 where that level is not a token position (spinlock.encoding.layout)."""

    codes: np.ndarray
    categories: list[str]

    @property
    def levels(self) -> int:
        return int(self.codes.shape[2])

    def category_index(self, category: str | int | None) -> int:
        """Index of a category given by name or position (``None`` → 0), or a SpinlockError."""
        k = len(self.categories)
        if category is None:
            return 0
        if isinstance(category, int) or (isinstance(category, str) and category.isdigit()):
            i = int(category)
            if 0 <= i < k:
                return i
        elif category in self.categories:
            return self.categories.index(category)
        raise SpinlockError(f"unknown token category {category!r}; expected one of {self.categories} or 0..{k - 1}")


@dataclass(frozen=True)
class CategoryMembers:
    """A discovered feature category as the plots read it from ``tokenizer/categories.json``: its name and
    members (the saved form of :class:`spinlock.encoding.categories.DiscoveredCategory`)."""

    name: str
    features: list[str]


def _decode_str(a: np.ndarray) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(a).ravel()], dtype=object)


def _json_attr(v: Any) -> Any:
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str):
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    if isinstance(v, np.ndarray):
        return [x.decode() if isinstance(x, bytes) else x for x in v.tolist()]
    return v


class RunData:
    """A run output directory (``OUT/``) or a bare ``dataset.h5`` (its folder is taken as ``OUT/``)."""

    def __init__(self, path: str | Path):
        self.dataset_path = dataset_file(path)  # a URI: the run's files mirrored to the node's cache
        self.out_dir = self.dataset_path.parent
        with self._open() as f:
            self.operator_index = np.asarray(read_table(f["operators/index"]), dtype=np.int64)
            self.status = np.asarray(read_table(f["status"]), dtype=np.int64) if "status" in f else None
            self.ic_shape = tuple(int(s) for s in f["ics/fields"].shape[1:]) if "ics/fields" in f else None
            self.seed = int(f.attrs.get("seed", 0))
            self._config_attr = f.attrs.get("config")
            self.feature_widths = {
                fam: int(f[f"features/{fam}"].shape[-1])
                for fam in FEATURE_FAMILIES
                if f"features/{fam}" in f
            }
            tr = open_trajectories(f, self.dataset_path)  # /trajectories or the run's Zarr array
            self.trajectory_shape = tuple(int(s) for s in tr.shape) if tr is not None else None
            self._stored_steps = self._trajectory_steps(tr) if tr is not None else None
            self.n_parameters = int(f["parameters/values"].shape[1]) if "parameters/values" in f else None
            self.has_tokens = "tokens" in f
        self.n = int(self.operator_index.shape[0])
        if self.status is None:
            self.status = np.zeros(self.n, dtype=np.int64)
        self._by_index = np.argsort(self.operator_index, kind="stable")  # rows_of looks indices up in it

    def ic_type_counts(self) -> dict[str, int] | None:
        """Operators per initial-condition type (``/ics/type``, counted in row blocks), or ``None``."""
        with self._open() as f:
            if "ics/type" not in f:
                return None
            ds = f["ics/type"]
            counts: dict[str, int] = {}
            for a in range(0, ds.shape[0], 1 << 16):
                names, n = np.unique(np.asarray(ds[a:a + (1 << 16)]), return_counts=True)
                for name, k in zip(_decode_str(names).tolist(), n.tolist(), strict=True):
                    counts[name] = counts.get(name, 0) + k
        return counts

    def _open(self) -> h5py.File:
        try:
            return h5py.File(self.dataset_path, "r")
        except OSError as e:
            raise DataError(f"cannot open {self.dataset_path}: {e}") from e

    @staticmethod
    def _trajectory_steps(ds: h5py.Dataset | ZarrRows) -> np.ndarray:
        if "steps" in ds.attrs:
            return np.asarray(ds.attrs["steps"], dtype=np.int64)
        stride = int(ds.attrs.get("stride", 1))
        return np.arange(ds.shape[2], dtype=np.int64) * stride

    # ---- config ---------------------------------------------------------------------------------

    @cached_property
    def config(self) -> dict[str, Any]:
        """Resolved run config as a dict (file attr ``config``, else ``OUT/config.yaml``; {} if none)."""
        text = self._config_attr
        if text is None and (self.out_dir / CONFIG_FILE).is_file():
            text = (self.out_dir / CONFIG_FILE).read_text()
        if isinstance(text, bytes):
            text = text.decode()
        cfg = yaml.safe_load(text) if text else None
        return cfg if isinstance(cfg, dict) else {}

    def _sim(self, key: str) -> int | None:
        v = self.config.get("simulation", {}).get(key)
        return int(v) if v is not None else None

    @property
    def realizations(self) -> int | None:
        return self.trajectory_shape[1] if self.trajectory_shape else self._sim("realizations")

    @property
    def channels(self) -> int | None:
        return self.ic_shape[0] if self.ic_shape else self._sim("channels")

    @property
    def simulation_steps(self) -> int | None:
        """Last simulation step T (from the config, else the last stored step)."""
        t = self._sim("steps")
        if t is None and self._stored_steps is not None:
            t = int(self._stored_steps[-1])
        return t

    @property
    def stored_steps(self) -> np.ndarray | None:
        """Simulation steps held in ``/trajectories`` (``None`` when trajectories were not stored)."""
        return self._stored_steps

    @property
    def stored_stride(self) -> int | None:
        """Steps between stored frames (``None`` when trajectories were not stored)."""
        st = self._stored_steps
        if st is None:
            return None
        return int(st[1] - st[0]) if len(st) > 1 else max(1, int(self.simulation_steps or 1))

    # ---- rows -----------------------------------------------------------------------------------

    def rows_of(self, indices: Sequence[int]) -> list[int]:
        """Row positions of global operator indices, or a SpinlockError naming the unknown ones."""
        want = np.asarray([int(i) for i in indices], np.int64)
        ordered = self.operator_index[self._by_index]
        pos = np.clip(np.searchsorted(ordered, want), 0, max(self.n - 1, 0))
        found = (ordered[pos] == want) if self.n else np.zeros(want.size, bool)
        if not found.all():
            raise SpinlockError(
                f"operator(s) {want[~found][:10].tolist()} not in {self.dataset_path} (indices "
                f"{int(self.operator_index.min())}..{int(self.operator_index.max())})"
            )
        return [int(r) for r in self._by_index[pos]]

    @property
    def ok_rows(self) -> np.ndarray:
        """Rows with status 0 (ok)."""
        return np.flatnonzero(self.status == 0)

    def plot_rows(self, limit: int | None = None) -> np.ndarray:
        """The ok rows a distribution figure shows: all of them up to ``limit`` (default
        :data:`MAX_PLOT_OPERATORS`), else ``limit`` of them drawn without replacement from
        ``numpy_rng(run seed, "viz.plot_rows")``, sorted (the same rows on every call, so the report's
        figures show the same operators)."""
        ok = self.ok_rows
        limit = MAX_PLOT_OPERATORS if limit is None else int(limit)
        if ok.size <= limit:
            return ok
        return np.sort(numpy_rng(self.seed, "viz.plot_rows").choice(ok, size=limit, replace=False))

    # ---- features and tokens --------------------------------------------------------------------

    def features(self, family: str, rows: np.ndarray | None = None) -> FeatureTable | None:
        """``/features/<family>`` [N, D] (only ``rows``, sorted, when given) with names, or ``None``
        when absent."""
        with self._open() as f:
            if f"features/{family}" not in f:
                return None
            ds = f[f"features/{family}"]
            names = [str(n) for n in _json_attr(ds.attrs.get("names", []))]
            values = np.asarray(read_table(ds, rows), dtype=np.float32)
        if len(names) != values.shape[-1]:
            raise DataError(f"/features/{family}: {len(names)} names for {values.shape[-1]} columns")
        return FeatureTable(family, values, names)

    def temporal(self, rows: np.ndarray | None = None) -> TemporalTable | None:
        """``/features/temporal`` [N, T', D] (only ``rows``, sorted, when given) with names and the step
        of each sample, or ``None``."""
        with self._open() as f:
            if f"features/{TEMPORAL_FAMILY}" not in f:
                return None
            ds = f[f"features/{TEMPORAL_FAMILY}"]
            names = [str(n) for n in _json_attr(ds.attrs.get("names", []))]
            values = np.asarray(read_table(ds, rows), dtype=np.float32)
            if "steps" in ds.attrs:
                steps = np.asarray(ds.attrs["steps"], dtype=np.int64)
            else:
                steps = np.arange(values.shape[1], dtype=np.int64) * int(ds.attrs.get("stride", 1))
        if len(names) != values.shape[-1] or len(steps) != values.shape[1]:
            raise DataError(f"/features/temporal: shape {values.shape} vs {len(names)} names, {len(steps)} steps")
        return TemporalTable(values, names, steps)

    def tokens(self) -> Tokens | None:
        """``/tokens`` as [N, K, L] codes (int16, or int32 for a codebook beyond 32 767 codes) with
        category names, or ``None`` before tokenization. Read in row blocks, so the int32 file rows are
        never all in memory at once."""
        with self._open() as f:
            if "tokens" not in f:
                return None
            ds = f["tokens"]
            layout = TokenLayout.from_attrs(ds.attrs, f"{self.dataset_path}:/tokens")
            streams = list(layout.streams)
            big = max((p.codebook_size for p in layout.positions), default=0) > np.iinfo(np.int16).max
            codes = np.full((ds.shape[0], len(streams), LEVELS), -1, np.int32 if big else np.int16)
            if ds.ndim != 2 or ds.shape[1] != len(layout.positions):
                layout.check(np.zeros((0, *ds.shape[1:]), np.int32), f"{self.dataset_path}:/tokens")
            for a, flat in table_blocks(ds):
                layout.check(flat, f"{self.dataset_path}:/tokens")
                for j, p in enumerate(layout.positions):
                    codes[a:a + len(flat), streams.index(p.stream), p.level - 1] = flat[:, j]
        return Tokens(codes, streams)

    @property
    def tokenizer_dir(self) -> Path:
        return self.out_dir / TOKENIZER_DIR

    def categories(self) -> list[CategoryMembers] | None:
        """Feature categories from ``tokenizer/categories.json`` (``{"categories": [{name, features}]}``)."""
        path = self.tokenizer_dir / CATEGORIES_FILE
        if not path.is_file():
            return None
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: invalid JSON ({e})") from e
        items = doc.get("categories") if isinstance(doc, dict) else doc
        if not isinstance(items, list) or not all(isinstance(c, dict) and "name" in c for c in items):
            raise DataError(f"{path}: expected {{'categories': [{{'name': ..., 'features': [...]}}]}}")
        return [CategoryMembers(str(c["name"]), [str(x) for x in c.get("features", [])]) for c in items]

    def metrics(self) -> list[dict[str, Any]]:
        """Epoch records from ``tokenizer/metrics.jsonl`` (blank and non-object lines skipped)."""
        path = self.tokenizer_dir / METRICS_FILE
        if not path.is_file():
            return []
        records = []
        for i, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{i}: invalid JSON ({e})") from e
            if isinstance(rec, dict):
                records.append(rec)
        return records

    # ---- rollouts -------------------------------------------------------------------------------

    def frame_steps(self, last: int | None = None, stride: int | None = None) -> np.ndarray:
        """Simulation steps to render: ``0, stride, 2 stride, ... <= last``.

        Defaults: every stored step (or every step when replaying) up to the final one. With stored
        trajectories ``stride`` must be a multiple of the stored stride.
        """
        t_max = self.simulation_steps
        if t_max is None:
            raise DataError(f"{self.dataset_path}: cannot tell the number of steps (no config, no trajectories)")
        last = t_max if last is None else int(last)
        if not 0 <= last <= t_max:
            raise SpinlockError(f"--steps {last} out of range: the run has steps 0..{t_max}")
        base = self.stored_stride or 1
        stride = base if stride is None else int(stride)
        if stride < 1 or stride % base:
            raise SpinlockError(f"--stride {stride} must be a positive multiple of the stored stride {base}")
        return np.arange(0, last + 1, stride, dtype=np.int64)

    def trajectory(self, row: int, steps: Sequence[int], realizations: Sequence[int] | None = None) -> np.ndarray:
        """Rollout of row ``row`` at simulation ``steps`` → float32 [M', T', C, H, W].

        Read from ``/trajectories`` when stored, else re-run with ``spinlock.replay.replay_operator``.
        """
        steps = np.asarray(steps, dtype=np.int64)
        m_all = self.realizations or 1
        reals = list(range(m_all)) if realizations is None else [int(r) for r in realizations]
        if not reals or any(not 0 <= r < m_all for r in reals):
            raise SpinlockError(f"realizations {reals} out of range 0..{m_all - 1}")
        stored = self._stored_steps
        if stored is not None:
            lookup = {int(v): i for i, v in enumerate(stored)}
            missing = [int(v) for v in steps if int(v) not in lookup]
            if missing:
                raise SpinlockError(
                    f"steps {missing[:8]} are not stored in /trajectories (stored: {stored[:3].tolist()}"
                    f" ... {int(stored[-1])}); choose --stride as a multiple of the stored stride"
                )
            pos = np.array([lookup[int(v)] for v in steps], dtype=np.int64)
            with self._open() as f:
                ds = open_trajectories(f, self.dataset_path)
                if len(pos) > 1 and (np.diff(pos) == pos[1] - pos[0]).all() and pos[1] > pos[0]:
                    sel: Any = slice(int(pos[0]), int(pos[-1]) + 1, int(pos[1] - pos[0]))
                else:
                    sel = pos.tolist()
                out = np.stack([np.asarray(ds[row, r, sel], dtype=np.float32) for r in reals])
            return out
        full = self._replay(row)
        if steps.max(initial=0) >= full.shape[1]:
            raise DataError(f"replay of operator {int(self.operator_index[row])} returned {full.shape[1]} steps")
        return np.ascontiguousarray(full[reals][:, steps], dtype=np.float32)

    def _replay(self, row: int) -> np.ndarray:
        from spinlock.replay import replay_operator  # deferred: the generation stack, for unstored trajectories only

        out = replay_operator(self.out_dir, int(self.operator_index[row])).trajectory
        if out.ndim != 5:
            raise DataError(f"replay_operator returned shape {out.shape}, expected [M, T+1, C, H, W]")
        return out
