"""The batched EMA quantizer (spinlock.encoding.quantizer) against vector-quantize-pytorch, the library it
replaces, and against closed forms: masked codes, the EMA update, dead-code replacement."""

from __future__ import annotations

import pytest
import torch
from vector_quantize_pytorch import VectorQuantize

from spinlock.encoding.quantizer import EMACodebooks, StreamQuantizer


def _codebooks(sizes, dim, decay=0.9, seed=0):
    g = torch.Generator().manual_seed(seed)
    level = EMACodebooks(sizes, dim, decay=decay, commitment_weight=0.25)
    for e, k in enumerate(sizes):
        level.set_codes(e, torch.randn(k, dim, generator=g), torch.full((k,), 4.0))
    return level


def test_matches_vector_quantize_pytorch_stream_by_stream():
    """Three streams of different sizes in one call give, step after step, the codes, indices, commitment
    losses and EMA state that one library VectorQuantize per stream gives."""
    sizes, dim, decay = (8, 3, 5), 4, 0.9
    level = _codebooks(sizes, dim, decay).train()
    refs = []
    for e, k in enumerate(sizes):
        vq = VectorQuantize(dim=dim, codebook_size=k, decay=decay, commitment_weight=0.25, kmeans_init=False).train()
        cb = vq._codebook
        cb.embed.data.copy_(level.embed[e, :k][None])
        cb.embed_avg.data.copy_(level.embed_avg[e, :k][None])
        cb.cluster_size.data.copy_(level.cluster_size[e, :k][None])
        refs.append(vq)
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        z = torch.randn(len(sizes), 32, dim, generator=g)
        q, idx, commit = level(z)
        for e, (k, vq) in enumerate(zip(sizes, refs, strict=True)):
            rq, ri, rloss = vq(z[e][:, None, :])
            assert torch.equal(idx[e], ri[:, 0])
            torch.testing.assert_close(q[e], rq[:, 0].detach())
            torch.testing.assert_close(commit[e], rloss.reshape(()))
            cb = vq._codebook
            torch.testing.assert_close(level.cluster_size[e, :k], cb.cluster_size[0])
            torch.testing.assert_close(level.embed[e, :k], cb.embed[0])
    assert not level.cluster_size[~level.valid].any() and not level.embed[~level.valid].any()


def test_one_code_stream_tracks_the_ema_of_the_batch_mean():
    level = _codebooks((4, 1), 2, decay=0.5).train()
    c0 = level.embed[1, 0].clone()
    z = torch.randn(2, 16, 2, generator=torch.Generator().manual_seed(0)) + 3.0
    _, idx, _ = level(z)
    assert not idx[1].any()  # the masked slots are never chosen
    # count 0.5·4 + 0.5·16 = 10, sum 0.5·4·c0 + 0.5·Σz: one code, so Laplace smoothing leaves the count
    torch.testing.assert_close(level.cluster_size[1, 0], torch.tensor(10.0))
    torch.testing.assert_close(level.embed[1, 0], (2.0 * c0 + 0.5 * z[1].sum(0)) / 10.0)


def test_dead_codes_take_latents_of_the_step():
    level = _codebooks((6, 6), 3).train()
    level.dead_threshold.copy_(torch.tensor([0.0, 1e6]))  # stream 1: every code dead after the update
    level.reset_count.fill_(2.0)
    z = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0))
    level(z)
    # at most one code per row of the step (4 of the 6), each a distinct latent of stream 1
    new = level.embed[1]
    replaced = [i for i in range(6) if any(torch.equal(new[i], r) for r in z[1])]
    assert replaced == [0, 1, 2, 3]
    assert len({tuple(new[i].tolist()) for i in replaced}) == 4
    assert level.cluster_size[1, :4].tolist() == [2.0] * 4
    torch.testing.assert_close(level.embed_avg[1, :4], 2.0 * new[:4])
    assert level.cluster_size[0].min() > 3.0  # stream 0 (threshold 0): EMA only, 0.9·4 + 0.1·count
    assert not any(torch.equal(c, r) for c in level.embed[0] for r in z[0])


def test_stream_quantizer_levels_code_what_the_coarser_ones_left():
    sq = StreamQuantizer(4, [(3, 2, 2), (2, 1, 2)], decay=0.9, commitment_weight=0.25)
    g = torch.Generator().manual_seed(0)
    for level in sq.levels:
        for e in range(2):
            k = int(level.sizes[e])
            level.set_codes(e, torch.randn(k, 4, generator=g), torch.ones(k))
    sq.eval()
    z = torch.randn(2, 8, 4, generator=g)
    codes, idx, commit = sq(z)
    assert codes.shape == (3, 2, 8, 4) and idx.shape == (8, 2, 3) and commit.shape == (3, 2)
    torch.testing.assert_close(sq.codes(idx), codes)
    assert not idx[:, 1, 1].any()  # stream 1's one medium code: every row takes it
    # level 2 codes what level 1 left, by the nearest of each stream's own codes
    left = z - codes[0]
    best = ((left[:, :, None, :] - sq.levels[1].embed[:, None, :, :]) ** 2).sum(-1)
    best = best.masked_fill(~sq.levels[1].valid[:, None, :], float("inf")).argmin(-1)
    assert torch.equal(idx[:, :, 1].T, best)
    # commitment: 0.25 x the mean squared distance of what reaches a level to its code
    torch.testing.assert_close(commit[1], 0.25 * ((left - codes[1]) ** 2).mean(dim=(1, 2)))
    with pytest.raises(ValueError, match="same number of codebook sizes"):
        StreamQuantizer(4, [(2, 2, 2), (2, 2)], decay=0.9, commitment_weight=0.25)
