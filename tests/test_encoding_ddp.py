"""Codebook synchronisation under DDP (torch.distributed on CPU/gloo, two processes, no Ray)."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from spinlock.encoding.model import ModelSpec
from spinlock.encoding.training import TrainSettings, build_model, train_model


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        spec = ModelSpec((tuple(range(5)), tuple(range(5, 10))), 10, 0, 0, 0, 8, latent_dim=4, hidden_dim=16,
                         codebook_sizes=(4, 8, 8), encoder_names=("a", "b"), dead_code_threshold=1.0,
                         level_components=(2, 1, 1))  # each rank's PCA and k-means differ: rank 0's are broadcast
        model = build_model(spec, 0)
        assert all(layer._codebook.use_ddp for q in model.quantizers for layer in q.layers)
        # no buffer broadcast: equal codebooks can only come from the quantizers' own all-reduce
        ddp = torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
        data = torch.randn(128, 10, generator=torch.Generator().manual_seed(rank)) * (1 + 3 * rank)

        def batches(epoch: int):
            for lo in range(0, 128, 32):
                yield {"x": data[lo:lo + 32]}

        state = train_model(model, TrainSettings(2, 1e-2, 0.0, 1.0, 1.0, 64, 0), batches, None,
                            wrapped=ddp, rank=rank)
        torch.save(state.model_state, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_codebooks_and_weights_stay_identical_across_ranks(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(tmp_path)), nprocs=2)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    # the ranks saw very different data, so a codebook that was not synced would differ
    assert any("_codebook.embed" in k for k in a)
