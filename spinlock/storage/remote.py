"""Output folders in an object store (``s3://bucket/prefix``, ``gs://bucket/prefix``) through fsspec.

HDF5 needs a seekable local file to write, so shards are written into a node-local *staging* folder
(the usual ``OUT`` layout, atomic tmp + rename as everywhere) and then uploaded as single objects. An
object store makes a single object visible only once its upload has completed (S3 and GCS PUTs, and S3
multipart uploads at ``CompleteMultipartUpload``), so a shard key in the bucket is always a whole,
complete file: no temp key and no rename are needed, and a crash before the upload simply leaves the
shard to be regenerated. The driver downloads the shards into its own staging folder and merges them
there as a *copy* (an HDF5 virtual dataset cannot point at objects), then uploads ``dataset.h5``.
With ``storage.trajectories.format: zarr`` the trajectories bypass staging: actors write their chunks
straight into the bucket (:mod:`spinlock.storage.zarrstore`) and the staged shards stay small.

Credentials and endpoints come from the environment of each node (instance profile / workload identity,
``AWS_*`` variables, ``AWS_ENDPOINT_URL`` for S3-compatible servers), never from the run config.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from spinlock.errors import SpinlockError

REMOTE_SCHEMES = ("s3", "gs", "gcs", "az", "abfs")


def is_remote(out: str | os.PathLike[str]) -> bool:
    """True for an object-store URI (``s3://...``); plain paths and ``file://`` are local."""
    text = str(out)
    return "://" in text and text.split("://", 1)[0].lower() in REMOTE_SCHEMES


def staging_root(staging_dir: str | None) -> Path:
    """The configured staging root, or ``<system temp>/spinlock-staging``."""
    return Path(staging_dir) if staging_dir else Path(tempfile.gettempdir()) / "spinlock-staging"


class RemoteStore:
    """One run's output folder in an object store, addressed by paths relative to ``OUT``."""

    def __init__(self, url: str):
        import fsspec

        if not is_remote(url):
            raise SpinlockError(f"--out {url!r} is not an object-store URI ({', '.join(REMOTE_SCHEMES)})")
        self.url = url.rstrip("/")
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except ImportError as e:
            raise SpinlockError(f"--out {url}: this scheme's filesystem package is missing ({e})") from None

    def staging(self, staging_dir: str | None) -> Path:
        """Node-local staging folder of this URL (stable, so a resumed run reuses what it downloaded)."""
        return staging_root(staging_dir) / hashlib.sha256(self.url.encode()).hexdigest()[:16]

    def key(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def upload(self, local: Path, rel: str) -> None:
        """Publish ``local`` at ``OUT/rel`` as one object (visible only once complete, see module doc)."""
        self.fs.put_file(str(local), self.key(rel))

    def download(self, rel: str, local: Path) -> Path:
        """Fetch ``OUT/rel`` to ``local`` atomically (tmp + rename), so a partial download is never used."""
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(local.name + ".download")
        self.fs.get_file(self.key(rel), str(tmp))
        os.replace(tmp, local)
        return local

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self.key(rel)))

    def remove(self, rel: str) -> None:
        if self.fs.exists(self.key(rel)):
            self.fs.rm_file(self.key(rel))

    def listdir(self, rel: str) -> dict[str, int]:
        """Object names directly under ``OUT/rel`` with their sizes (fresh listing, no cache)."""
        self.fs.invalidate_cache()
        prefix = self.key(rel)
        if not self.fs.exists(prefix):
            return {}
        return {
            Path(e["name"]).name: int(e["size"])
            for e in self.fs.ls(prefix, detail=True)
            if e.get("type") == "file"
        }

    def ensure_bucket(self) -> None:
        """Fail early, naming the URL, when the bucket does not exist or cannot be reached."""
        bucket = self.root.split("/", 1)[0]
        try:
            ok = self.fs.exists(bucket)
        except (OSError, PermissionError) as e:
            raise SpinlockError(f"--out {self.url}: cannot reach bucket {bucket!r}: {e}") from None
        if not ok:
            raise SpinlockError(f"--out {self.url}: bucket {bucket!r} does not exist (create it first)")
