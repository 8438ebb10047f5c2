"""`spinlock validate CONFIG [--set KEY=VALUE ...]`: print the resolved config or one clear error."""

from __future__ import annotations

import argparse

from spinlock.cli.options import add_config, add_overrides


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config(p)
    add_overrides(p)


def run(args: argparse.Namespace) -> int:
    from spinlock.config import config_hash, dump_config, load_config
    from spinlock.sampling.space import sampled_dimensions

    cfg = load_config(args.config, args.overrides)
    free, ic_dim = sampled_dimensions(cfg.parameters, len(cfg.initial_conditions.mix))
    print(dump_config(cfg), end="")
    print(f"# valid: config hash {config_hash(cfg)}; {cfg.simulation.num_operators} operators,"
          f" {len(free) + int(ic_dim)} Sobol dimensions, {len(cfg.parameters) - len(free)} fixed parameter(s)")
    return 0
