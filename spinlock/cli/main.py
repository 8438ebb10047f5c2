"""``spinlock`` console script: argument parsing and terminal output; each command lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

from spinlock import __version__

DESCRIPTION = """\
Spinlock builds datasets of neural-operator behaviour: it samples random CNN operators, rolls each one
out from many initial conditions, extracts behavioural features, and trains a hierarchical VQ-VAE that
turns every operator into a short sequence of behavioural tokens. It runs on a laptop (an embedded Ray)
and on Ray clusters with the same commands."""

EXAMPLES = """\
examples:
  spinlock run configs/quickstart.yaml --out runs/quickstart    the whole pipeline, a few minutes on a laptop
  spinlock validate configs/quickstart.yaml --set simulation.steps=32
  spinlock info runs/quickstart --check                         summary, and a check against the format spec
  spinlock generate configs/quickstart.yaml --address auto      generation on a running Ray cluster
  spinlock COMMAND --help                                       a command's options

Rerunning run, generate or tokenize on the same --out resumes where it stopped. Ray's own log lines go
to Ray's log files (/tmp/ray/session_latest/logs); -v shows them here too. Documentation: README.md
and docs/."""

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
    "neighbors": ("neighbors", "operators with the nearest behaviour tokens to one operator"),
}


def version_text() -> str:
    """``spinlock X (torch Y, ray Z, Python V)``, read from the installed distributions without importing them."""
    from importlib.metadata import PackageNotFoundError, version

    def dist(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    python = ".".join(map(str, sys.version_info[:3]))
    return f"spinlock {__version__} (torch {dist('torch')}, ray {dist('ray')}, Python {python})"


def verbosity_options() -> argparse.ArgumentParser:
    """``-v``/``-q``, accepted before or after the command."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_mutually_exclusive_group()
    g.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="also Spinlock's debug lines and everything Ray prints")
    g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="only warnings, errors and results: no progress lines or bars")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = verbosity_options()
    parser = argparse.ArgumentParser(prog="spinlock", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common])
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        mod = importlib.import_module(f"spinlock.cli.{module}")
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    from spinlock import logs
    from spinlock.errors import SpinlockError

    args = build_parser().parse_args(argv)
    verbosity = logs.VERBOSE if getattr(args, "verbose", False) else logs.QUIET if getattr(args, "quiet", False) \
        else logs.NORMAL
    # the console script (argv None) owns the process's stderr; a caller passing argv (tests) keeps it
    logs.configure(verbosity, native_stderr=argv is None)
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
