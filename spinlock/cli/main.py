"""``spinlock`` console script: argument parsing only; each command lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

from spinlock import __version__

# command name → module under spinlock.cli exposing ``add_arguments(parser)`` and ``run(args) -> int``
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "whole pipeline: generate → merge → tokenize → tokens → report"),
    "generate": ("generate", "sharded generation + merge (rerun on the same --out resumes)"),
    "tokenize": ("tokenize", "clean, discover categories, train the VQ-VAE, write tokens"),
    "encode": ("encode", "tokens for a dataset with an already trained tokenizer"),
    "validate": ("validate", "validate a config and print the resolved config"),
    "info": ("info", "summary of a dataset or shard (--check: verify the format spec)"),
    "replay": ("replay", "rebuild an operator from its stored record and re-run it"),
    "ics": ("ics", "list IC types by tier; --out renders a gallery"),
    "visualize": ("visualize", "rollout renderings, feature and tokenizer plots"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spinlock", description=__doc__)
    parser.add_argument("--version", action="version", version=f"spinlock {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod = importlib.import_module(f"spinlock.cli.{module}")
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    from spinlock.errors import SpinlockError

    args = build_parser().parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except SpinlockError as e:
        print(f"spinlock {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spinlock {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
