"""Tokenizer benchmark (not a test): reconstruction quality per family and level, codebook health,
and Ray Train throughput with 2 workers vs 1.

    PYTHONPATH=. python bench/tokenizer.py                      # synthetic run of 4000 operators
    PYTHONPATH=. python bench/tokenizer.py --run /tmp/tok4k     # a generated run (below)
    PYTHONPATH=. python bench/tokenizer.py --run /tmp/tok4k --write-docs   # also update docs/tokenizer.md

A real run of 4096 operators, about 5 minutes with one generation actor on a 2-core machine
(32 steps instead of 64, no stored trajectories; features, ICs and status are what the tokenizer reads)::

    spinlock generate configs/quickstart.yaml --set simulation.num_operators=4096 \
        --set simulation.steps=32 --set storage.trajectories.store=false \
        --set tokenizer.training.batch_size=64 --set tokenizer.training.epochs=40 \
        --set sharding.operators_per_shard=256 --out /tmp/tok4k --workers 1

Quality comes from a full ``tokenize_run`` (1 worker, default settings unless overridden): validation
R² per family and level, and codebook usage / perplexity per level over the tokens of all converged
operators (the validation split alone is too small to show large codebooks used, see
``spinlock.encoding.metrics``; its numbers are printed with their uniform-code ceiling). Throughput
comes from two extra fits of the same prepared data with 1 and 2 Ray Train workers
(``train_rows * workers / train_seconds`` averaged over the epochs after the first, which includes
k-means initialisation and warm-up). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import ray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic run writer lives with the tests

from synthetic_features import write_synthetic_run  # noqa: E402

from spinlock.config import config_from_dict  # noqa: E402
from spinlock.distributed.feature_stream import fit_cleaner, prepare_splits, read_features  # noqa: E402
from spinlock.distributed.tokenize_stage import kmeans_sample, tokenize_run  # noqa: E402
from spinlock.distributed.train import fit_vqvae  # noqa: E402
from spinlock.encoding.categories import CategoryDiscovery  # noqa: E402
from spinlock.encoding.cleaning import FeatureCleaner  # noqa: E402
from spinlock.encoding.icfields import stored_ic_shape  # noqa: E402
from spinlock.encoding.plan import plan_model, train_settings  # noqa: E402
from spinlock.encoding.split import Split  # noqa: E402
from spinlock.storage.layout import METRICS_FILE  # noqa: E402

START, END = "<!-- bench:tokenizer:start -->", "<!-- bench:tokenizer:end -->"


def _row(label: str, values: list, fmt: str = "{:.2f}") -> str:
    return f"| {label} | " + " | ".join(fmt.format(x) for x in values) + " |"


def quality_table(summary: dict) -> list[str]:
    v, tok = summary["validation"], summary["tokens"]
    lines = ["| validation R² | coarse (L1) | L1+L2 | all (L1-3) |", "|---|---|---|---|"]
    for group, vals in v["r2"].items():
        lines.append(_row(group, vals, "{:.4f}"))
    levels = summary["codebook_sizes"]
    lines += ["", "| codebooks | L1 | L2 | L3 |", "|---|---|---|---|",
              _row("K (level size)", levels, "{}"),
              _row(f"usage, mean over streams (tokens of {tok['rows']} operators)", tok["codebook_usage"]),
              _row("usage, worst stream", tok["usage_min"]),
              _row("perplexity / K, mean over streams", tok["perplexity_ratio"]),
              _row("perplexity / K, worst stream", tok["perplexity_ratio_min"]),
              _row("perplexity, mean over streams", tok["perplexity"], "{:.1f}"),
              _row(f"validation usage ({v['rows']} rows)", v["codebook_usage"]),
              _row("validation usage if codes were uniform (ceiling)", v["usage_ceiling"]),
              _row("validation perplexity / K", v["perplexity_ratio"]),
              "", f"Token positions: {tok['positions']} (means over positions; one-code levels, not emitted:"
              f" {sum(tok['single_code_books'])}; other levels dropped by the fit: "
              f"{len(tok['dropped']) - sum(tok['single_code_books'])}; constant over the operators:"
              f" {len(tok['constant_positions'])})."]
    plan = summary["codebook_plan"]
    lines += ["", "Category tokens per level (coarse / medium / fine): "
              + ", ".join(f"{n} {'/'.join(map(str, t))}" for n, t in plan["category_tokens"].items()) + "."]
    discrete = {n: e for n, e in plan["effective_inputs"].items() if e is not None and e <= levels[0]}
    if discrete:
        lines += ["", "Discrete categories (one token; effective inputs): "
                  + ", ".join(f"{n} ({e:.0f})" for n, e in discrete.items()) + "."]
    return lines


def throughput(history: list[dict], workers: int) -> float:
    """Training rows per second over all workers, epochs after the first."""
    later = history[1:] or history
    return sum(r["train_rows"] * workers for r in later) / sum(r["train_seconds"] for r in later)


def throughputs(run_dir: Path, cfg, epochs: int, work: Path) -> dict[int, float]:
    """Training rows/s with 1 and 2 Ray Train workers on the same prepared data and model spec."""
    ds, schema = read_features(run_dir)
    cleaner = fit_cleaner(ds, FeatureCleaner(schema, Split(0, cfg.validation_fraction), **cfg.cleaning.model_dump()))
    cats = CategoryDiscovery(cfg.categories.min_categories, cfg.categories.max_categories).fit(
        cleaner.correlation_, cleaner.names_out).categories_
    shape = stored_ic_shape(run_dir / "dataset.h5")
    res = min(cfg.model.ic_resolution, shape[1])
    train, val = prepare_splits(ds, cleaner, str(run_dir / "dataset.h5"), res)
    n_train = train.count()
    sample = kmeans_sample(train, min(n_train, cfg.training.kmeans_init_rows), len(cleaner.names_out))
    spec, _ = plan_model(cfg.model, cats, sample, temporal_features=len(cleaner.temporal_names_out),
                         temporal_length=schema.temporal_length, ic_channels=shape[0], ic_resolution=res)
    settings = dataclasses.replace(train_settings(cfg, 0, []), epochs=epochs, family_columns={})
    rates = {}
    for workers in (1, 2):
        tcfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"num_workers": workers})})
        state = fit_vqvae(train, val, spec, settings, tcfg, storage_path=work / "ray",
                          name=f"bench-{workers}w-{time.time_ns()}", n_train=n_train, n_validation=0)
        rates[workers] = throughput(state.history, workers)
    return rates


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="existing run directory (default: a synthetic one)")
    ap.add_argument("--operators", type=int, default=4000)
    ap.add_argument("--epochs", type=int, help="training epochs (default: the config's)")
    ap.add_argument("--throughput-epochs", type=int, default=4)
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="tokenizer config override, e.g. tokenizer.model.latent_dim=16")
    ap.add_argument("--skip-throughput", action="store_true", help="quality only (no 1- vs 2-worker fits)")
    ap.add_argument("--write-docs", action="store_true", help="replace the table in docs/tokenizer.md")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="spinlock-bench-tok-"))
    if args.run:
        run_dir = work / "run"
        # shards too: a run merged with storage.merge=virtual reads /ics/fields through them
        shutil.copytree(args.run, run_dir, ignore=shutil.ignore_patterns("tokenizer", "tokens.parquet"))
        source = f"generated run {args.run}"
    else:
        run_dir = write_synthetic_run(work / "run", n_operators=args.operators, n_shards=8).out
        source = f"synthetic run, {args.operators} operators (tests/synthetic_features.py)"
    epochs = [f"tokenizer.training.epochs={args.epochs}"] if args.epochs else []
    cfg = config_from_dict({"seed": 0}, overrides=[*epochs, *args.overrides]).tokenizer
    load = os.getloadavg()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        t0 = time.perf_counter()
        summary = tokenize_run(run_dir, cfg, 0, "bench")
        total = time.perf_counter() - t0
        history = [json.loads(x) for x in (run_dir / "tokenizer" / METRICS_FILE).read_text().splitlines()]

        rates = {} if args.skip_throughput else throughputs(run_dir, cfg, args.throughput_epochs, work)
    finally:
        ray.shutdown()

    lines = [f"Source: {source}; {summary['train_rows']} training / {summary['validation_rows']} validation rows;"
             f" {summary['features_kept']}/{summary['features_in']} scalar features kept;"
             f" {len(summary['categories'])} token streams ({', '.join(summary['categories'])});"
             f" {summary['epochs']} epochs, default model settings"
             f"{' + ' + ', '.join(args.overrides) if args.overrides else ''}.",
             "", *quality_table(summary), ""]
    if rates:
        lines += ["| Ray Train throughput (rows/s, epochs 2+) | 1 worker | 2 workers | ratio |", "|---|---|---|---|",
                  f"| training | {rates[1]:.0f} | {rates[2]:.0f} | {rates[2] / rates[1]:.2f} |", ""]
    lines += [f"Machine: {platform.machine()} CPU, {os.cpu_count()} cores, CPU only (torch"
              f" {__import__('torch').__version__}, Ray {ray.__version__}); full tokenize stage {total:.0f} s"
              f" (first-epoch R² {history[0]['validation']['r2']['all'][2]:.3f} →"
              f" final {history[-1]['validation']['r2']['all'][2]:.3f}); load average before/after"
              f" {load[0]:.1f}/{os.getloadavg()[0]:.1f}."]
    text = "\n".join(lines)
    print(text)
    if args.write_docs:
        doc = ROOT / "docs" / "tokenizer.md"
        body = doc.read_text()
        if START not in body or END not in body:
            raise SystemExit(f"{doc} lacks the {START} ... {END} markers")
        head, rest = body.split(START, 1)
        doc.write_text(head + START + "\n" + text + "\n" + END + rest.split(END, 1)[1])
        print(f"updated {doc}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
