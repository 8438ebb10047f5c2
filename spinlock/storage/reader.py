"""Read-side helpers: a human summary of a dataset or shard file (``spinlock info``)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import yaml

from spinlock.errors import DataError
from spinlock.features import census
from spinlock.storage.layout import FEATURE_FAMILIES, LEARNED_FAMILY, STATUS_FAULT, STATUS_NAMES
from spinlock.storage.zarrstore import ZarrRows, open_trajectories


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


CENSUS_BLOCK_ROWS = 1 << 16


def read_census(f: h5py.File) -> tuple[np.ndarray, list[str]]:
    """Census codes [N] int8 of a dataset or shard file and the notes on rules it cannot apply.

    Reads /status, the run's M (attr ``config``) and only the census columns of /features/summary, in
    row blocks, so memory stays O(N) whatever the feature width.
    """
    status = f["status"][()]
    sim = yaml.safe_load(f.attrs.get("config") or "{}").get("simulation", {})
    m = int(sim.get("realizations", 1))
    if "features/summary" not in f:
        return census.classify(np.zeros((len(status), 0), np.float32), [], status, m), ["no /features/summary"]
    ds = f["features/summary"]
    names = [x.decode() if isinstance(x, bytes) else str(x) for x in ds.attrs["names"]]
    cols = sorted({names.index(c) for c in census.INPUTS if c in names})
    block = np.empty((len(status), len(cols)), np.float32)
    for a in range(0, len(status), CENSUS_BLOCK_ROWS):
        b = min(a + CENSUS_BLOCK_ROWS, len(status))
        if cols:
            block[a:b] = ds[a:b, cols]
    codes = census.classify(block, [names[j] for j in cols], status, m)
    return codes, census.rule_notes(names, m)


def describe(path: str | Path) -> str:
    from spinlock.storage.remote import local_copy

    p = local_copy(path)  # a URI: fetched to the node's cache
    if p.is_dir():
        p = p / "dataset.h5"
    if not p.exists():
        raise DataError(f"no such file: {p}")
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise DataError(f"{p}: not a readable HDF5 file ({e})") from None
    lines = []
    with f:
        a = f.attrs
        kind = "shard" if "shard_id" in a else "dataset"
        lines.append(
            f"{p} — Spinlock {kind}, format {a.get('format_version')}, spinlock {a.get('spinlock_version')}"
        )
        if kind == "shard":
            lines.append(f"  shard {a['shard_id']}: operators [{a['operator_start']}, {a['operator_stop']})"
                         f", complete={bool(a.get('complete'))}")
        else:
            lines.append(f"  merged from {a.get('num_shards')} shards ({a.get('merge')})")
        lines.append(f"  seed {a.get('seed')}, config hash {a.get('config_hash')}")
        if "operators/index" not in f:
            raise DataError(f"{p}: missing /operators/index")
        n = f["operators/index"].shape[0]
        lines.append(f"  operators: {n}")
        st = Counter(f["status"][()].tolist())
        faults = st.get(STATUS_FAULT, 0)
        # every defined status is listed, zeros included, so "fault 0" is a visible all-clear
        counts = [f"{name} {st.pop(code, 0)}" for code, name in sorted(STATUS_NAMES.items())]
        counts += [f"undefined code {k}: {v}" for k, v in sorted(st.items())]
        lines.append("  status: " + ", ".join(counts))
        if faults:
            lines.append("  WARNING: numerical faults (status 2: a non-finite value from the noise, the IC or a"
                         " feature, not the dynamics) — a bug to report; see docs/dataset-format.md")
        codes, notes = read_census(f)
        lines.append("  census: " + census.format_counts(codes) + "".join(f"; {x}" for x in notes))
        names = [str(x) for x in f["parameters/values"].attrs["names"]]
        lines.append(f"  parameters ({len(names)}): {', '.join(names)}")
        if "stratification" in f["parameters"].attrs:
            m = json.loads(f["parameters"].attrs["stratification"])
            prefix = m.get("discrepancy_n", m["n"])
            lines.append(
                f"  stratification: d={m['d']}, centered discrepancy {m['centered_discrepancy']:.3g}"
                f"{'' if prefix == m['n'] else f' (first {prefix} points)'},"
                f" max |corr| {m['max_abs_corr']:.3g}, min 1-D stratum occupancy {m['min_stratum_occupancy']:.3f}"
            )
        ic = f["ics/fields"]
        types = Counter(s.decode() if isinstance(s, bytes) else s for s in f["ics/type"][()])
        lines.append(f"  ICs {tuple(ic.shape[1:])}: " + ", ".join(f"{k} {v}" for k, v in types.most_common()))
        t = open_trajectories(f, p)
        if t is not None:
            where = f" in Zarr {t.location}" if isinstance(t, ZarrRows) else ""
            lines.append(f"  trajectories {tuple(t.shape)} {t.dtype}{where}, stride {t.attrs['stride']},"
                         f" {_fmt_bytes(np.prod(t.shape) * t.dtype.itemsize)} uncompressed")
        else:
            lines.append("  trajectories: not stored (use `spinlock replay` to re-run an operator)")
        # the learned family right after the one it embeds
        for fam in (FEATURE_FAMILIES[0], LEARNED_FAMILY, *FEATURE_FAMILIES[1:]):
            key = f"features/{fam}"
            if key in f:
                ds = f[key]
                vals = ds[()]
                nan = float(np.isnan(vals).mean()) if vals.size else 0.0
                lines.append(f"  features/{fam}: {tuple(ds.shape)}, NaN fraction {nan:.3f}")
        if "tokens" in f:
            t = f["tokens"]
            streams = list(dict.fromkeys(str(s) for s in t.attrs.get("stream", [])))
            lines.append(f"  tokens {tuple(t.shape)}: {t.shape[1]} positions from {len(streams)} token streams")
    return "\n".join(lines)
