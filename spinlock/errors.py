"""Error types the CLI reports as one clear line (anything else is a bug and shows a traceback)."""

from __future__ import annotations


class SpinlockError(Exception):
    """Base for user-facing errors: bad config, missing files, corrupt shards, failed shards."""


class DataError(SpinlockError):
    """A dataset or shard file is missing, corrupt or does not match the expected format/config."""
