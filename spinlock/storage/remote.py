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
import json
import os
import tempfile
from pathlib import Path

from spinlock.errors import SpinlockError
from spinlock.storage.layout import CONFIG_FILE, DATASET_FILE, TOKENIZER_DIR, TOKENS_FILE

REMOTE_SCHEMES = ("s3", "gs", "gcs", "az", "abfs")
INSTALL_HINT = {"s3": "pip install 'spinlock[s3]' (s3fs)", "gs": "pip install 'spinlock[gcs]' (gcsfs)",
                "gcs": "pip install 'spinlock[gcs]' (gcsfs)", "az": "pip install adlfs", "abfs": "pip install adlfs"}
RUN_FILES = (CONFIG_FILE, DATASET_FILE, TOKENS_FILE)
"""The files of a run a reading verb mirrors (with ``tokenizer/``): never the shards or the feature tables."""


def is_remote(out: str | os.PathLike[str]) -> bool:
    """True for an object-store URI (``s3://...``); plain paths and ``file://`` are local."""
    text = str(out)
    return "://" in text and text.split("://", 1)[0].lower() in REMOTE_SCHEMES


def check_location(text: str | os.PathLike[str], what: str) -> str:
    """``text`` as given when it is a local path or a usable object-store URI, else one clear SpinlockError.

    Called by every verb on its path arguments before any work: a URI of an unknown scheme (``http://``,
    ``hdfs://``) would otherwise be taken as a relative path, and a missing filesystem package would
    surface only inside a Ray worker.
    """
    text = str(text)
    if "://" not in text:
        return text
    scheme = text.split("://", 1)[0].lower()
    if scheme == "file":
        return text.split("://", 1)[1]
    if scheme not in REMOTE_SCHEMES:
        raise SpinlockError(f"{what} {text}: unsupported URI scheme {scheme!r}"
                            f" (use a local path or one of {', '.join(s + '://' for s in REMOTE_SCHEMES)})")
    RemoteStore(text)  # raises naming the extra to install
    return text


def require_local(text: str | os.PathLike[str] | None, what: str) -> None:
    """Refuse an object-store URI where a verb writes a single local file (e.g. a PNG or .npy)."""
    if text is not None and "://" in str(text):
        raise SpinlockError(f"{what} {text}: must be a local path (this output is not written to object storage)")


def staging_root(staging_dir: str | None) -> Path:
    """The configured staging root, or ``<system temp>/spinlock-staging``."""
    return Path(staging_dir) if staging_dir else Path(tempfile.gettempdir()) / "spinlock-staging"


class RemoteStore:
    """One run's output folder in an object store, addressed by paths relative to ``OUT``."""

    def __init__(self, url: str):
        import fsspec  # deferred: the CLI imports this module to check every --out, local ones too

        if not is_remote(url):
            raise SpinlockError(f"--out {url!r} is not an object-store URI ({', '.join(REMOTE_SCHEMES)})")
        self.url = url.rstrip("/")
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except ImportError as e:
            scheme = self.url.split("://", 1)[0].lower()
            raise SpinlockError(f"{url}: the filesystem package of {scheme}:// is missing ({e});"
                                f" {INSTALL_HINT.get(scheme, 'install its fsspec implementation')}") from None

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
        tmp = local.with_name(f"{local.name}.download-{os.getpid()}")  # several processes of a node may fetch
        self.fs.get_file(self.key(rel), str(tmp))
        os.replace(tmp, local)
        return local

    def upload_dir(self, local: Path, rel: str) -> None:
        """Publish every file under ``local`` at ``OUT/rel/...`` (each one object)."""
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            self.upload(path, f"{rel}/{path.relative_to(local).as_posix()}")

    def _signature(self, rel: str) -> str | None:
        """Size and version tag (ETag / generation / mtime) of ``OUT/rel``; None when it does not exist."""
        key = self.key(rel)
        self.fs.invalidate_cache(key)
        try:
            info = self.fs.info(key)
        except FileNotFoundError:
            return None
        tag = next((info[k] for k in ("ETag", "etag", "generation", "LastModified", "updated", "mtime") if info.get(k)),
                   "")
        return json.dumps([int(info.get("size") or 0), str(tag)])

    def fetch(self, rel: str, local: Path) -> Path | None:
        """``OUT/rel`` cached at ``local``: downloaded only when the object changed since the last fetch
        (a ``.remote`` sidecar records its size and version tag). None when the object does not exist."""
        sig = self._signature(rel)
        if sig is None:
            return None
        side = local.with_name(local.name + ".remote")
        if not (local.is_file() and side.is_file() and side.read_text() == sig):
            self.download(rel, local)
            side.write_text(sig)
        return local

    def publish(self, local: Path, rel: str) -> None:
        """:meth:`upload` and record the object's signature, so the next :meth:`fetch` keeps ``local``."""
        self.upload(local, rel)
        sig = self._signature(rel)
        if sig is not None:
            local.with_name(local.name + ".remote").write_text(sig)

    def mirror_run(self, local: Path) -> Path:
        """The run's files a reading verb needs (:data:`RUN_FILES`, ``tokenizer/``) cached under ``local``."""
        for name in RUN_FILES:
            self.fetch(name, local / name)
        self.fetch_tree(TOKENIZER_DIR, local / TOKENIZER_DIR)
        return local

    def fetch_tree(self, rel: str, local: Path) -> Path:
        """Every object under ``OUT/rel`` cached under ``local`` (:meth:`fetch`); Ray Train's ``ray/``
        storage (checkpoints, read by Ray Train itself) stays in the bucket."""
        base = self.key(rel) if rel else self.root
        self.fs.invalidate_cache()
        if self.fs.isdir(base):
            for key in self.fs.find(base):
                sub = key[len(base) + 1:]
                if not sub.startswith("ray/"):
                    self.fetch(f"{rel}/{sub}" if rel else sub, local / sub)
        return local

    def arrow_filesystem(self):
        """This store's fsspec filesystem as a pyarrow filesystem (Ray Data, Ray Train), so credentials and
        endpoints resolve exactly as for every other access (``AWS_ENDPOINT_URL`` included)."""
        from pyarrow.fs import FSSpecHandler, PyFileSystem  # deferred: heavy, and only Ray Data/Train need it

        return PyFileSystem(FSSpecHandler(self.fs))

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


def local_copy(path: str | os.PathLike[str], staging_dir: str | None = None) -> Path:
    """A local path for ``path``; an object-store URI is downloaded to the node's cache first.

    ``...h5`` URIs are one file; any other URI is a run folder, mirrored by :meth:`RemoteStore.mirror_run`
    (``dataset.h5`` is a self-contained copy in a bucket, so the mirror is a complete run). HDF5 wants
    seekable random access, which over HTTP range requests costs a round trip per chunk and metadata
    block; a cached copy costs one download, reused until the object changes.
    """
    text = check_location(path, "path")
    if not is_remote(text):
        return Path(text)
    if text.rstrip("/").endswith(".h5"):
        parent, name = text.rstrip("/").rsplit("/", 1)
        store = RemoteStore(parent)
        local = store.fetch(name, store.staging(staging_dir) / name)
        if local is None:
            raise SpinlockError(f"no such object: {text}")
        return local
    store = RemoteStore(text)
    store.ensure_bucket()
    local = store.mirror_run(store.staging(staging_dir))
    if not (local / DATASET_FILE).is_file():
        raise SpinlockError(f"no dataset at {store.url}/{DATASET_FILE} (run `spinlock generate` or `run` first)")
    return local

