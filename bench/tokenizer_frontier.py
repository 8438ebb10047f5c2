"""Tokenizer frontier (not a test): validation R² against informative tokens per operator, for the
trained tokenizer and for linear baselines on the same cleaned features and the same split.

    PYTHONPATH=. python bench/tokenizer_frontier.py --run /tmp/tok4k --out /tmp/frontier
    PYTHONPATH=. python bench/tokenizer_frontier.py --run /tmp/tok4k --variant /tmp/tok4k-96 --out /tmp/frontier

``--run`` is a tokenized run (``spinlock tokenize``); each ``--variant`` is a copy of the same run
tokenized with another tokenizer config (e.g. another ``tokenizer.model.tokens``). Its
cleaning transform must equal the run's (same names kept, same split), so every point is measured on
the same rows and columns.

**Data.** The run's features (``features/shard-*.parquet``) through the tokenizer's own fitted
``FeatureCleaner`` (``tokenizer/cleaning.npz``): training rows are its fit rows (training split,
status 0), validation rows the converged operators of its validation split, exactly the rows the
tokenizer reports its validation R² on. Two feature sets, measured separately: the cleaned scalar
features [D'] and the cleaned temporal curves flattened to [T'·Dt'].

**R²** is pooled over columns, ``1 - sum(SSE) / sum(SST)`` with each column's SST about its own
validation mean (``spinlock.encoding.metrics.R2Accumulator``, the function the tokenizer's metrics use).

**The tokenizer.** Its validation R² per level (coarse = level 1 of every stream, + medium, all) from
``tokenizer/summary.json`` (family ``all`` for the scalar features, ``temporal`` for the curves), at
the number of token positions of levels ≤ l in its layout (``/tokens`` attrs ``level``: only
informative positions are emitted). The same tokens serve both feature sets (one shared decoder), so
a tokenizer point counts every token, temporal and IC streams included.

**Baselines** (fitted on the training rows, seeded, sklearn ``KMeans`` with ``n_init=1``), at token
budgets B (default 24, 32, 48, 64, 96); one token is one code out of K = 256 (8 bits):

* *PCA + PQ*: PCA to 2B components, then k-means with K codes per 2-D subspace (components 2j, 2j+1):
  B tokens.
* *PCA + RQ*: PCA to 6G components, G = round(B / 3) groups of 6 consecutive components, each
  quantized by a three-level residual k-means (K codes per level on what the coarser levels left):
  3G tokens, hierarchical like the tokenizer; its level-1 and level-1+2 prefixes are listed too.
* *PCA* (no quantization) with 2B components: the linear reconstruction the quantizers approximate.

Components are ordered by explained variance, so the k-means of subspace j (group g) is the same at
every budget that contains it and is fitted once. K is capped at the number of training rows (only
matters for tiny runs). Writes ``frontier.json``, ``frontier.md`` (Markdown tables) and
``frontier.png`` (R² against informative tokens, one line per method, one panel per feature set) to
``--out``; the baseline fits are cached in ``frontier.json`` and reused when the run and settings
match.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spinlock.encoding.cleaning import FeatureCleaner
from spinlock.encoding.frontier import SUBSPACE_DIM, fit_pca, kmeans, load_split, pca_pq, r2, tokenizer_points
from spinlock.errors import DataError

LEVEL_LABELS = ("coarse", "+medium", "all")
GROUP_DIM = 6  # PCA components per RQ group (3 tokens: same 2 components per token as PQ)
METHODS_VERSION = 2  # part of the cache key: bump when a baseline changes


# ---------------------------------------------------------------------------------------------- baselines
def quantize(ztr: np.ndarray, zva: np.ndarray, levels: int, k: int, seed: int) -> list[np.ndarray]:
    """Residual k-means of one block of components; returns the validation reconstruction after each
    level ([levels] of [n_val, dims]); ``levels = 1`` is one PQ subspace."""
    rtr, rva, out = ztr.copy(), zva.copy(), []
    for lv in range(levels):
        km = kmeans(rtr, k, seed + 1000 * lv)
        rtr -= km.cluster_centers_[km.labels_]
        rva -= km.cluster_centers_[km.predict(rva)]
        out.append(zva - rva)
    return out


def baselines(train: np.ndarray, val: np.ndarray, budgets: list[int], k: int, seed: int) -> dict:
    """PCA, PCA + PQ and PCA + RQ validation R² at each token budget (see the module docstring)."""
    groups = {b: max(1, round(b / 3)) for b in budgets}
    dims = min(max(max(budgets) * SUBSPACE_DIM, max(groups.values()) * GROUP_DIM), train.shape[1], len(train))
    mean, comps = fit_pca(train, dims)
    ztr, zva = (train - mean) @ comps.T, (val - mean) @ comps.T

    def back(z: np.ndarray) -> np.ndarray:
        return z @ comps[: z.shape[1]] + mean

    n_sub = min(max(budgets), dims // SUBSPACE_DIM)
    n_grp = min(max(groups.values()), dims // GROUP_DIM)
    rq_rec = [quantize(ztr[:, GROUP_DIM * g:GROUP_DIM * (g + 1)], zva[:, GROUP_DIM * g:GROUP_DIM * (g + 1)],
                       3, k, seed + 100_000 + g) for g in range(n_grp)]
    out: dict = {"pca": [], "pq": pca_pq(train, val, budgets, k, seed), "rq": [], "dims": dims,
                 "codes": min(k, len(train))}
    for b in budgets:
        m = min(b, n_sub)
        out["pca"].append({"budget": b, "components": SUBSPACE_DIM * m, "r2": r2(val, back(zva[:, :SUBSPACE_DIM * m]))})
        g = min(groups[b], n_grp)
        out["rq"].append({"budget": b, "tokens": 3 * g, "components": GROUP_DIM * g, "groups": g,
                          "r2_levels": [r2(val, back(np.concatenate([rq_rec[i][lv] for i in range(g)], axis=1)))
                                        for lv in range(3)]})
    return out


def category_baseline(train: np.ndarray, val: np.ndarray, labels: np.ndarray, budgets: list[int], k: int,
                      seed: int) -> list[dict]:
    """PCA + PQ *within* the tokenizer's categories, tokens allocated across categories by variance.

    Each category gets its own PCA; its 2-D subspaces (components 2j, 2j+1, the last one maybe 1-D)
    are pooled over categories and the B of largest variance are quantized (K codes each, as PQ), the
    others left at the training mean. What the category split costs a linear code at equal tokens
    when the rate goes where the variance is (the tokenizer gives every stream three tokens)."""
    blocks = []  # (variance, category, j)
    pcas = {}
    for c in np.unique(labels):
        cols = np.flatnonzero(labels == c)
        mean, comps = fit_pca(train[:, cols], min(len(cols), len(train)))
        ztr = (train[:, cols] - mean) @ comps.T
        pcas[c] = (cols, mean, comps, ztr, (val[:, cols] - mean) @ comps.T)
        var = ztr.var(0)
        blocks += [(float(var[j:j + SUBSPACE_DIM].sum()), int(c), j) for j in range(0, len(var), SUBSPACE_DIM)]
    blocks.sort(key=lambda b: -b[0])  # within a category variance falls with j, so prefixes are kept
    rec: dict[tuple[int, int], np.ndarray] = {}
    out = []
    for b in budgets:
        chosen = blocks[:b]
        for _, c, j in chosen:
            if (c, j) not in rec:
                _, _, _, ztr, zva = pcas[c]
                sub = slice(j, j + SUBSPACE_DIM)
                rec[c, j] = quantize(ztr[:, sub], zva[:, sub], 1, k, seed + 7919 * c + j)[0]
        xhat = np.tile(train.mean(0), (len(val), 1))
        for c, (cols, mean, comps, _, _) in pcas.items():
            js = sorted(j for _, cc, j in chosen if cc == c)
            if js:
                assert js == list(range(0, SUBSPACE_DIM * len(js), SUBSPACE_DIM)), (c, js)  # a prefix
                z = np.concatenate([rec[c, j] for j in js], axis=1)
                xhat[:, cols] = z @ comps[: z.shape[1]] + mean
        per_cat = np.bincount([c for _, c, _ in chosen], minlength=len(pcas))
        out.append({"budget": b, "tokens": len(chosen), "r2": r2(val, xhat),
                    "tokens_per_category": per_cat.tolist()})
    return out


# ---------------------------------------------------------------------------------------------- output
def machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"


def tables(result: dict) -> list[str]:
    lines = []
    for fs, label in (("scalar", "cleaned scalar features"), ("temporal", "cleaned temporal curves, flattened")):
        if fs not in result["baselines"]:
            continue
        base = result["baselines"][fs]
        lines += [f"**{label}** (D = {base['columns']}; {base['train_rows']} training / {base['validation_rows']}"
                  f" validation rows; K = {base['codes']} codes per token for the baselines)", "",
                  "| tokens | PCA + PQ | PCA + RQ (tokens: L1 / L1+2 / all) | PCA, 2·tokens components (unquantized) |",
                  "|---|---|---|---|"]
        for p, q, c in zip(base["pq"], base["rq"], base["pca"], strict=True):
            lv = " / ".join(f"{v:.3f}" for v in q["r2_levels"])
            lines.append(f"| {p['budget']} | {p['r2']:.3f} | {lv} ({q['groups']} / {2 * q['groups']} / {q['tokens']}) |"
                         f" {c['r2']:.3f} ({c['components']}) |")
        if "category_pq" in base:
            lines += ["", "Per-category PCA + PQ (the tokenizer's categories, tokens allocated by variance):"
                      " validation R² " + ", ".join(f"{c['tokens']} tokens {c['r2']:.3f}" for c in base["category_pq"])
                      + "; tokens per category at the largest budget: "
                      + ", ".join(map(str, base["category_pq"][-1]["tokens_per_category"])) + "."]
        lines += ["", "| tokenizer | streams | tokens L1 / L1+2 / all (of them category streams) | bits"
                  " L1 / L1+2 / all | validation R² coarse / +medium / all | IC statistics R² (all) |",
                  "|---|---|---|---|---|---|"]
        for t in result["tokenizer"]:
            if t[fs] is None:
                continue
            lines.append(f"| {setting_label(t)} | {t['streams']} | "
                         + " / ".join(map(str, t["tokens"])) + " (" + " / ".join(map(str, t["category_tokens"]))
                         + ") | " + " / ".join(f"{b:.0f}" for b in t["bits"]) + " | "
                         + " / ".join(f"{v:.3f}" for v in t[fs])
                         + (f" | {t['ic'][2]:.3f} |" if t.get("ic") else " | — |"))
        lines.append("")
    gaps = gap_lines(result)
    if gaps:
        lines += gaps + [""]
    lines.append(f"Machine: {result['machine']}; baselines {result['seconds']:.0f} s.")
    return lines


def setting_label(t: dict) -> str:
    """A tokenizer's model settings that set its size (the keys its config has)."""
    keys = ("tokens", "streams", "components_per_level", "components_per_stream", "latent_dim")  # formats 4, 5-7, 8
    return ", ".join(f"{k} {'/'.join(map(str, v)) if isinstance(v, list) else v}" for k in keys
                     if (v := t["model"].get(k)) is not None)


def interpolate(points: list[tuple[float, float]], x: float) -> float:
    """R² of a method at ``x`` tokens, linear between its measured points (NaN outside them)."""
    xs, ys = zip(*sorted(points), strict=True)
    return float(np.interp(x, xs, ys, left=np.nan, right=np.nan))


def gap_lines(result: dict) -> list[str]:
    """Tokenizer R² minus PCA + PQ R² at the tokenizer's own token counts (PQ interpolated)."""
    out = []
    for fs in ("scalar", "temporal"):
        if fs not in result["baselines"]:
            continue
        pq_pts = [(p["tokens"], p["r2"]) for p in result["baselines"][fs]["pq"]]
        gaps = [f"{n} tokens {v:.3f} vs {interpolate(pq_pts, n):.3f}"
                for t in result["tokenizer"] if t[fs] is not None for n, v in zip(t["tokens"], t[fs], strict=True)
                if not math.isnan(interpolate(pq_pts, n))]
        if gaps:
            out.append(f"Tokenizer vs PCA + PQ at the same tokens ({fs}; PQ interpolated between budgets): "
                       + "; ".join(gaps) + ".")
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [fs for fs in ("scalar", "temporal") if fs in result["baselines"]]
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.5), squeeze=False)
    for ax, fs in zip(axes[0], sets, strict=True):
        base = result["baselines"][fs]
        ax.plot([p["tokens"] for p in base["pq"]], [p["r2"] for p in base["pq"]], "o-", color="C0",
                label=f"PCA + PQ ({base['codes']} codes / token)")
        ax.plot([p["tokens"] for p in base["rq"]], [p["r2_levels"][2] for p in base["rq"]], "s-", color="C1",
                label="PCA + RQ, 3 levels")
        if "category_pq" in base:
            ax.plot([p["tokens"] for p in base["category_pq"]], [p["r2"] for p in base["category_pq"]], "^--",
                    color="C2", label="per-category PCA + PQ, tokens by variance")
        ax.plot([p["budget"] for p in base["pca"]], [p["r2"] for p in base["pca"]], ":", color="gray",
                label="PCA, 2 components / token (unquantized)")
        for i, t in enumerate(result["tokenizer"]):
            if t[fs] is not None:
                ax.plot(t["tokens"], t[fs], "D-", color=f"C{3 + i}",
                        label=f"tokenizer ({setting_label(t)}): coarse, +medium, all")
        ax.set_xlabel("informative tokens per operator")
        ax.set_ylabel("validation R² (pooled)")
        ax.set_title(f"{fs}: {base['columns']} columns, {base['validation_rows']} validation rows")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower right", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- main
def cache_key(run: Path, args: argparse.Namespace, data: dict) -> str:
    h = hashlib.sha256((run / "tokenizer" / "cleaning.npz").read_bytes())
    h.update(json.dumps([METHODS_VERSION, args.budgets, args.codes, args.seed, {s: {k: v.shape for k, v in d.items()}
                                                               for s, d in data.items()}]).encode())
    return h.hexdigest()[:16]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a tokenized run directory")
    ap.add_argument("--variant", type=Path, action="append", default=[],
                    help="a copy of the run tokenized with another tokenizer config (repeatable)")
    ap.add_argument("--out", type=Path, required=True, help="folder for frontier.json / .md / .png")
    ap.add_argument("--budgets", type=int, nargs="+", default=[24, 32, 48, 64, 96])
    ap.add_argument("--codes", type=int, default=256, help="codes per baseline token (k-means K)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scalar-only", action="store_true", help="skip the temporal curves")
    args = ap.parse_args()
    if min(args.budgets) < 1 or args.codes < 2:
        ap.error("budgets must be >= 1 and --codes >= 2")

    cleaner = FeatureCleaner.load(args.run / "tokenizer" / "cleaning.npz")
    for v in args.variant:
        other = FeatureCleaner.load(v / "tokenizer" / "cleaning.npz")
        if other.names_out != cleaner.names_out or other.split != cleaner.split:
            raise DataError(f"{v}: its cleaning transform differs from {args.run}'s (kept columns or split),"
                            " so its R² is not measured on the same data")
    data = load_split(args.run, cleaner)
    cats = json.loads((args.run / "tokenizer" / "categories.json").read_text())
    if cats["names"] != cleaner.names_out:
        raise DataError(f"{args.run}/tokenizer: categories.json and cleaning.npz name different features")
    labels = np.asarray(cats["labels"])
    points = [tokenizer_points(r) for r in (args.run, *args.variant)]
    n_val = len(data["validation"]["scalar"])
    for p in points:
        if p["validation_rows"] != n_val:
            raise DataError(f"{p['run']}: the tokenizer reports {p['validation_rows']} validation rows, the"
                            f" cleaned features have {n_val}")

    args.out.mkdir(parents=True, exist_ok=True)
    cache_path = args.out / "frontier.json"
    key = cache_key(args.run, args, data)
    cached = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    sets = ["scalar"] if args.scalar_only or not data["train"]["temporal"].shape[1] else ["scalar", "temporal"]
    if cached.get("key") == key and all(fs in cached["baselines"] for fs in sets):
        base, seconds, where = cached["baselines"], cached["seconds"], cached["machine"]
        print(f"baselines from the cache {cache_path}", file=sys.stderr)
    else:
        base, t0, where = {}, time.perf_counter(), machine()
        torch.set_num_threads(1)
        for fs in sets:
            tr, va = data["train"][fs], data["validation"][fs]
            base[fs] = baselines(tr, va, args.budgets, args.codes, args.seed)
            base[fs].update(columns=tr.shape[1], train_rows=len(tr), validation_rows=len(va))
            if fs == "scalar":
                base[fs]["category_pq"] = category_baseline(tr, va, labels, args.budgets, args.codes, args.seed)
            print(f"{fs}: PQ " + ", ".join(f"{p['tokens']}: {p['r2']:.3f}" for p in base[fs]["pq"])
                  + f" ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        seconds = time.perf_counter() - t0
    result = {"key": key, "run": str(args.run), "budgets": args.budgets, "machine": where, "seconds": seconds,
              "baselines": base, "tokenizer": points}
    cache_path.write_text(json.dumps(result, indent=1))
    md = "\n".join(tables(result)) + "\n"
    (args.out / "frontier.md").write_text(md)
    plot(result, args.out / "frontier.png")
    print(md)
    print(f"wrote {args.out}/frontier.json, frontier.md, frontier.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
