"""Tokenizer benchmark (not a test): reconstruction quality per family and level, codebook health,
and Ray Train throughput with 2 workers vs 1.

    PYTHONPATH=. python bench/tokenizer.py                      # synthetic run of 4000 operators
    PYTHONPATH=. python bench/tokenizer.py --run runs/baseline  # an existing generated run
    PYTHONPATH=. python bench/tokenizer.py --write-docs         # also update docs/tokenizer.md

Quality comes from a full ``tokenize_run`` (1 worker, default model settings unless overridden);
throughput from two extra fits of the same prepared data with 1 and 2 Ray Train workers
(``train_rows * workers / train_seconds`` averaged over the epochs after the first, which includes
k-means initialisation and warm-up). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
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
from spinlock.distributed import train as tr  # noqa: E402
from spinlock.distributed.data import fit_cleaner, prepare_splits, read_features  # noqa: E402
from spinlock.encoding.categories import CategoryDiscovery  # noqa: E402
from spinlock.encoding.cleaning import FeatureCleaner  # noqa: E402
from spinlock.encoding.icfields import stored_ic_shape  # noqa: E402
from spinlock.encoding.model import ModelSpec, scale_codebook_sizes  # noqa: E402
from spinlock.encoding.split import Split  # noqa: E402
from spinlock.encoding.training import TrainSettings  # noqa: E402

START, END = "<!-- bench:tokenizer:start -->", "<!-- bench:tokenizer:end -->"


def quality_table(summary: dict) -> list[str]:
    v = summary["validation"]
    lines = ["| validation R² | coarse (L1) | L1+L2 | all (L1-3) |", "|---|---|---|---|"]
    for group, vals in v["r2"].items():
        lines.append(f"| {group} | " + " | ".join(f"{x:.4f}" for x in vals) + " |")
    lines += ["", "| codebooks | L1 | L2 | L3 |", "|---|---|---|---|",
              "| size | " + " | ".join(str(s) for s in summary["codebook_sizes"]) + " |",
              "| usage (mean over encoders) | " + " | ".join(f"{x:.2f}" for x in v["codebook_usage"]) + " |",
              "| perplexity (mean over encoders) | " + " | ".join(f"{x:.1f}" for x in v["perplexity"]) + " |"]
    return lines


def throughput(history: list[dict], workers: int) -> float:
    """Training rows per second over all workers, epochs after the first."""
    later = history[1:] or history
    return sum(r["train_rows"] * workers for r in later) / sum(r["train_seconds"] for r in later)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="existing run directory (default: a synthetic one)")
    ap.add_argument("--operators", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--throughput-epochs", type=int, default=4)
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="tokenizer config override, e.g. tokenizer.model.latent_dim=16")
    ap.add_argument("--write-docs", action="store_true", help="replace the table in docs/tokenizer.md")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="spinlock-bench-tok-"))
    if args.run:
        run_dir = work / "run"
        shutil.copytree(args.run, run_dir, ignore=shutil.ignore_patterns("tokenizer", "shards", "tokens.parquet"))
        source = f"generated run {args.run}"
    else:
        run_dir = write_synthetic_run(work / "run", n_operators=args.operators, n_shards=8).out
        source = f"synthetic run, {args.operators} operators (tests/synthetic_features.py)"
    cfg = config_from_dict({"seed": 0}, overrides=[f"tokenizer.training.epochs={args.epochs}",
                                                   *args.overrides]).tokenizer
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        t0 = time.perf_counter()
        summary = tr.tokenize_run(run_dir, cfg, 0, "bench")
        total = time.perf_counter() - t0
        history = [json.loads(x) for x in (run_dir / "tokenizer" / tr.METRICS_FILE).read_text().splitlines()]

        # throughput: the same prepared data, fitted with 1 and with 2 workers
        ds, schema = read_features(run_dir)
        split = Split(0, cfg.validation_fraction)
        cleaner = fit_cleaner(ds, FeatureCleaner(schema, split, **cfg.cleaning.model_dump()))
        cats = CategoryDiscovery(cfg.categories.min_categories, cfg.categories.max_categories).fit(
            cleaner.correlation_, cleaner.names_out).categories_
        shape = stored_ic_shape(run_dir / "dataset.h5")
        res = min(cfg.model.ic_resolution, shape[1])
        train, val = prepare_splits(ds, cleaner, str(run_dir / "dataset.h5"), res)
        n_train = train.count()
        nt = len(cleaner.temporal_names_out)
        spec = ModelSpec(tuple(c.columns for c in cats), len(cleaner.names_out), nt,
                         schema.temporal_length if nt else 0, shape[0], res,
                         **{k: getattr(cfg.model, k) for k in ("latent_dim", "hidden_dim", "commitment_weight",
                                                               "ema_decay", "kmeans_iters")},
                         dead_code_threshold=cfg.model.dead_code_threshold,
                         codebook_sizes=scale_codebook_sizes(cfg.model.codebook_sizes,
                                                             min(n_train, cfg.training.kmeans_init_rows)),
                         encoder_names=(*(c.name for c in cats), *(("temporal",) if nt else ()), "ic"))
        settings = TrainSettings(args.throughput_epochs, cfg.training.learning_rate, cfg.training.weight_decay,
                                 cfg.model.temporal_weight, cfg.model.ic_weight, cfg.training.kmeans_init_rows, 0)
        rates = {}
        for workers in (1, 2):
            tcfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"num_workers": workers})})
            state = tr.fit_vqvae(train, val, spec, settings, tcfg, storage_path=work / "ray",
                                 name=f"bench-{workers}w-{time.time_ns()}", n_train=n_train, n_validation=0)
            rates[workers] = throughput(state.history, workers)
    finally:
        ray.shutdown()

    lines = [f"Source: {source}; {summary['train_rows']} training / {summary['validation_rows']} validation rows;"
             f" {summary['features_kept']}/{summary['features_in']} scalar features kept;"
             f" {len(summary['categories'])} encoders ({', '.join(summary['categories'])});"
             f" {summary['epochs']} epochs, default model settings"
             f"{' + ' + ', '.join(args.overrides) if args.overrides else ''}.",
             "", *quality_table(summary), "",
             "| Ray Train throughput (rows/s, epochs 2+) | 1 worker | 2 workers | ratio |", "|---|---|---|---|",
             f"| training | {rates[1]:.0f} | {rates[2]:.0f} | {rates[2] / rates[1]:.2f} |", "",
             f"Machine: {platform.machine()} CPU, {os.cpu_count()} cores, CPU only (torch"
             f" {__import__('torch').__version__}, Ray {ray.__version__}); full tokenize stage {total:.0f} s"
             f" (first-epoch R² {history[0]['validation']['r2']['all'][2]:.3f} →"
             f" final {history[-1]['validation']['r2']['all'][2]:.3f})."]
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
