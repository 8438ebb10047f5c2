"""`spinlock tokenize DIR [--config CONFIG] [--address ADDR]`: clean, discover categories, train, tokens."""

from __future__ import annotations

import argparse

from spinlock.cli.options import add_address, add_run_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_dir(p, "config.yaml, features/, dataset.h5")
    p.add_argument("--config", default=None,
                   help="run config YAML whose seed and tokenizer section to use (default: DIR/config.yaml)")
    add_address(p)


def run(args: argparse.Namespace) -> int:
    from spinlock.config import config_hash, load_config
    from spinlock.distributed.cluster import ray_session
    from spinlock.distributed.tokenize_stage import tokenize_run

    out = run_location(args.dir)
    cfg = load_config(args.config or run_config_file(out))
    with ray_session(args.address):
        tokenize_run(out, cfg.tokenizer, cfg.seed, config_hash(cfg), staging_dir=cfg.distributed.staging_dir)
    return 0


def run_location(text: str) -> str:
    """A run folder that exists, or an object-store URI whose bucket holds ``dataset.h5`` (checked before Ray)."""
    from pathlib import Path

    from spinlock.errors import DataError
    from spinlock.storage.layout import DATASET_FILE
    from spinlock.storage.remote import RemoteStore, check_location, is_remote

    out = check_location(text, "run")
    if is_remote(out):
        store = RemoteStore(out)
        store.ensure_bucket()
        if not store.exists(DATASET_FILE):
            raise DataError(f"no dataset at {store.url}/{DATASET_FILE} (run `spinlock generate` there first)")
        return store.url
    if not Path(out).is_dir():
        raise DataError(f"run directory not found: {out}")
    return out


def run_config_file(out: str) -> str:
    """``OUT/config.yaml`` as a local file (fetched to the node's cache for a URI)."""
    from spinlock.errors import DataError
    from spinlock.storage.layout import CONFIG_FILE
    from spinlock.storage.remote import RemoteStore, is_remote

    if not is_remote(out):
        return f"{out}/{CONFIG_FILE}"
    store = RemoteStore(out)
    local = store.fetch(CONFIG_FILE, store.staging(None) / CONFIG_FILE)
    if local is None:
        raise DataError(f"no {store.url}/{CONFIG_FILE}: pass --config")
    return str(local)
