"""The driver's peak memory in the stages that read every operator: encode, report, visualize.

Not a timed test. Runs each stage on existing, tokenized runs (e.g. two sizes made with
``bench/stages.py``'s tiny config), each stage in a fresh child process, sampling the process's RSS
every 20 ms. Reports per stage and run the RSS when the stage starts (imports and, for encode, the
embedded Ray done), its peak, and from two runs the growth of the peak per operator.

  encode     ``encode_run`` with the run's own tokenizer (rewrites ``/tokens``, ``tokens.parquet``)
  report     ``write_report`` into a temporary folder
  visualize  ``spinlock visualize`` with its defaults into a temporary folder

Usage::

    PYTHONPATH=. python bench/driver_memory.py RUN_DIR [RUN_DIR ...] [--stages encode report visualize]
        [--plot-limit K]

``--plot-limit K`` sets ``spinlock.viz.rundata.MAX_PLOT_OPERATORS`` (default 20 000) and the rows of the
report's frontier (``run_frontier``'s ``max_rows``, default 20 000) in the children, so small runs show how
report and visualize behave above the sizes of their samples.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import multiprocessing as mp
import os
import platform
import tempfile
import threading
from pathlib import Path


def _rss() -> int:
    """This process's resident set size in bytes (``/proc/self/statm``, Linux)."""
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _stage(stage: str, run: str, result: str, plot_limit: int | None) -> None:
    """Child process: one stage on one run; ``{"start": bytes, "peak": bytes, "n": operators}`` to ``result``."""
    import h5py

    from spinlock.cli.main import main as cli
    from spinlock.distributed.tokenize_stage import encode_run
    from spinlock.viz import rundata
    from spinlock.viz.report import write_report

    if plot_limit is not None:
        from spinlock.encoding import frontier

        rundata.MAX_PLOT_OPERATORS = plot_limit
        frontier.run_frontier = functools.partial(frontier.run_frontier, max_rows=plot_limit)
    with h5py.File(Path(run, "dataset.h5"), "r") as f:
        n = int(f["operators/index"].shape[0])
    if stage == "encode":
        import ray

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    start = peak = _rss()
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.02):
            peak = max(peak, _rss())

    threading.Thread(target=sample, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(open(os.devnull, "w")):
        if stage == "encode":
            encode_run(run, Path(run, "tokenizer"), actors=1, log=lambda s: None)
        elif stage == "report":
            write_report(run, Path(tmp, "report"))
        elif stage == "visualize":
            cli(["visualize", run, "--out", tmp])
        else:
            raise SystemExit(f"unknown stage {stage!r}")
    stop.set()
    peak = max(peak, _rss())
    Path(result).write_text(json.dumps({"start": start, "peak": peak, "n": n}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="tokenized run directories (two or more sizes)")
    ap.add_argument("--stages", nargs="+", default=["encode", "report", "visualize"])
    ap.add_argument("--plot-limit", type=int, help="MAX_PLOT_OPERATORS in the children (default: the package's)")
    args = ap.parse_args()
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if "model name" in ln), platform.machine())
    print(f"machine: {cpu}, {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}", flush=True)
    mib = 2**20
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages:
            rows = []
            for run in args.runs:
                result = Path(tmp, "result.json")
                proc = mp.get_context("spawn").Process(target=_stage, args=(stage, run, str(result), args.plot_limit))
                proc.start()
                proc.join()
                if proc.exitcode != 0:
                    raise SystemExit(f"{stage} on {run} failed (exit code {proc.exitcode})")
                rows.append(json.loads(result.read_text()))
                r = rows[-1]
                print(f"{stage:10s} N={r['n']:>7d}  start {r['start'] / mib:6.0f} MiB  peak {r['peak'] / mib:6.0f} MiB"
                      f"  (+{(r['peak'] - r['start']) / mib:.0f})", flush=True)
            if len(rows) > 1:
                a, b = min(rows, key=lambda r: r["n"]), max(rows, key=lambda r: r["n"])
                per_op = ((b["peak"] - b["start"]) - (a["peak"] - a["start"])) / (b["n"] - a["n"])
                print(f"{stage:10s} peak growth {per_op / 1024:.2f} KiB per operator"
                      f" (≈ {per_op * 1e6 / 2**30:.1f} GiB at 1M operators)", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
