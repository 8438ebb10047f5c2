"""The training worker's batch source: one Ray Data pass when the shard fits the cache bound, and the
same batches whether it was cached or streamed (spinlock.distributed.feature_stream.ShardBatches / shuffled)."""

from __future__ import annotations

import numpy as np
import pytest

from spinlock.distributed.feature_stream import ShardBatches, shuffled
from spinlock.rng import numpy_rng


class FakeShard:
    """Stands in for a Ray Train dataset shard: counts the pipeline executions (iter_batches calls)."""

    def __init__(self, rows: int, block: int):
        self.blocks = [{"x": np.arange(i, min(i + block, rows), dtype=np.float32)[:, None] * np.ones((1, 3),
                                                                                                     np.float32),
                        "id": np.arange(i, min(i + block, rows))} for i in range(0, rows, block)]
        self.executions = 0

    def iter_batches(self, batch_size=None, batch_format="numpy"):
        assert batch_size is None and batch_format == "numpy"
        self.executions += 1
        yield from self.blocks


def _epochs(source, epochs: int, drop_last: bool = True) -> list[list[np.ndarray]]:
    return [[b["id"] for b in shuffled(source, 16, 40, numpy_rng(0, "tokenizer.shuffle", e, 0), drop_last)]
            for e in range(epochs)]


def test_small_shard_is_read_once_and_gives_the_streamed_batches():
    cached, streamed = FakeShard(150, 32), FakeShard(150, 32)
    a = _epochs(ShardBatches(cached, cache_bytes=1 << 20), 4)
    b = _epochs(ShardBatches(streamed, cache_bytes=0), 4)  # 0: always stream
    assert cached.executions == 1 and streamed.executions == 4
    for ea, eb in zip(a, b, strict=True):
        assert len(ea) == len(eb) == 150 // 16 and all(len(x) == 16 for x in ea)
        for xa, xb in zip(ea, eb, strict=True):
            np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(np.concatenate(a[0]), np.concatenate(a[1]))  # reshuffled every epoch


def test_shard_over_the_bound_streams_every_epoch():
    shard = FakeShard(150, 32)
    per_block = shard.blocks[0]["x"].nbytes + shard.blocks[0]["id"].nbytes
    source = ShardBatches(shard, cache_bytes=3 * per_block)  # 5 blocks: does not fit
    _epochs(source, 3)
    assert shard.executions == 3 and not source.cached


def test_interrupted_pass_caches_nothing():
    shard = FakeShard(150, 32)
    source = ShardBatches(shard, cache_bytes=1 << 20)
    next(iter(source))
    assert not source.cached
    list(source)
    assert source.cached and shard.executions == 2


@pytest.mark.parametrize("buffer_rows", [8, 40, 1000])
def test_shuffle_covers_every_row_once(buffer_rows):
    shard = FakeShard(150, 32)
    out = list(shuffled(shard.iter_batches(), 16, buffer_rows, numpy_rng(1, "t"), drop_last=False))
    ids = np.concatenate([b["id"] for b in out])
    np.testing.assert_array_equal(np.sort(ids), np.arange(150))
    assert [len(b["id"]) for b in out] == [16] * 9 + [6]
    for b in out:  # columns stay aligned row by row
        np.testing.assert_array_equal(b["x"][:, 2], b["id"].astype(np.float32))
    assert not np.array_equal(ids, np.arange(150))


def test_without_rng_rows_keep_their_order():
    shard = FakeShard(50, 7)
    out = list(shuffled(shard.iter_batches(), 16, 40, None, drop_last=False))
    np.testing.assert_array_equal(np.concatenate([b["id"] for b in out]), np.arange(50))
    assert [len(b["id"]) for b in out] == [16, 16, 16, 2]
