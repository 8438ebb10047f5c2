"""A real S3-protocol server (moto) on loopback with a local Ray whose workers reach it, for the
object-storage tests: credentials and the endpoint travel in the environment (``AWS_ENDPOINT_URL``),
exactly as on cluster nodes."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import ray

from spinlock.storage.remote import RemoteStore

ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
       "RAY_AUTH_MODE": "disabled"}


@contextlib.contextmanager
def moto_s3_with_ray(bucket: str, runtime_env: dict | None = None) -> Iterator[RemoteStore]:
    """Start moto, point this process (and Ray's workers) at it, start Ray, create ``bucket``."""
    import s3fs
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = dict(os.environ)
    os.environ.update(ENV, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    s3fs.S3FileSystem.clear_instance_cache()  # fsspec caches filesystems: none may keep another endpoint
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=runtime_env)
    try:
        store = RemoteStore(f"s3://{bucket}")
        store.fs.mkdir(bucket)
        yield store
    finally:
        ray.shutdown()
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()
        os.environ.clear()
        os.environ.update(saved)
