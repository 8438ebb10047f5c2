"""Vector quantization of every token stream at once: per level, one tensor of EMA codebooks for all streams.

A token stream's latent [B, L] is quantized by three residual levels (:class:`StreamQuantizer`); level l of
*every* stream is one :class:`EMACodebooks`, [E, K, L] codes for E streams (K the largest codebook of the
level; a stream with fewer codes has its extra slots masked).

Why not vector-quantize-pytorch (formats 2-6 used its ``VectorQuantize``, one module per stream and level):
one call quantizes one latent, so a training step made 3 calls per stream, 159 on the quickstart (53
streams). Those calls were 66 ms of a 184 ms step (64 rows, one thread), and their per-stream autograd
graphs most of the rest; the library's multi-head mode batches streams but gives every head the same
codebook size, while ours differ (a level without a token has one code, a discrete category a few).
docs/performance.md ("Tokenizer step") has the before/after. The update rule is the library's: EMA of
the codes' row counts and sums, Laplace-smoothed counts, codes whose count falls below a threshold
replaced by latents of the step; under DDP the counts and sums are all-reduced (one call per level and
statistic) and replacements come from rank 0, so every rank keeps the same codebooks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def kmeans(x: torch.Tensor, k: int, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means of ``x`` [n, d] with k-means++ seeding (torch's global RNG) and ``iters`` Lloyd steps:
    (centroids [k, d], rows per centroid [k]).

    Why k-means++ and not centroids drawn uniformly from the rows (vector-quantize-pytorch's
    initialisation): on the 4096-operator run k-means++ seeding gave 0.005-0.007 more validation R² at
    every level of the untrained model, as much as training adds to the finer levels (docs/tokenizer.md,
    "Frontier").
    """
    x64 = x.double()
    n = len(x64)
    chosen = [int(torch.randint(n, ()))]
    d2 = ((x64 - x64[chosen[0]]) ** 2).sum(1)
    for _ in range(1, k):
        total = float(d2.sum())
        i = int(torch.multinomial(d2 / total, 1)) if total > 0 else int(torch.randint(n, ()))
        chosen.append(i)
        d2 = torch.minimum(d2, ((x64 - x64[i]) ** 2).sum(1))
    means = x64[chosen]
    for _ in range(iters + 1):
        assign = torch.cdist(x64, means).argmin(dim=1)
        counts = torch.bincount(assign, minlength=k).double()
        sums = torch.zeros_like(means).index_add_(0, assign, x64)
        means = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], means)
    return means.to(x.dtype), counts.to(x.dtype)


def world_size() -> int:
    """Ranks of the torch.distributed group the tokenizer trains in (1 without one): codebooks, k-means and
    initial weights are all-reduced or broadcast only above 1."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class EMACodebooks(nn.Module):
    """One level of E streams: stream e has ``sizes[e]`` codes of ``dim`` dimensions, updated by EMA.

    State (saved): ``embed`` [E, K, dim] the codes, ``embed_avg`` and ``cluster_size`` the EMA sums and row
    counts, ``initted``. Settings that are not state: ``dead_threshold`` and ``reset_count`` [E]
    (:meth:`HierarchicalVQVAE.set_step_rows`).
    """

    def __init__(self, sizes: Sequence[int], dim: int, decay: float, commitment_weight: float, eps: float = 1e-5):
        super().__init__()
        if not sizes or min(sizes) < 1:
            raise ValueError(f"every stream needs >= 1 code, got sizes {list(sizes)}")
        E, K = len(sizes), max(sizes)
        self.dim, self.decay, self.commitment_weight, self.eps = dim, decay, commitment_weight, eps
        size = torch.tensor(list(sizes))
        self.register_buffer("sizes", size, persistent=False)
        self.register_buffer("valid", torch.arange(K)[None, :] < size[:, None], persistent=False)
        self.register_buffer("dead_threshold", torch.zeros(E), persistent=False)
        self.register_buffer("reset_count", torch.zeros(E), persistent=False)
        self.register_buffer("embed", torch.zeros(E, K, dim))
        self.register_buffer("embed_avg", torch.zeros(E, K, dim))
        self.register_buffer("cluster_size", torch.zeros(E, K))
        self.register_buffer("initted", torch.tensor(False))

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """z [E, B, dim] → index of each row's nearest code of its stream [E, B]."""
        e = self.embed
        d = (e * e).sum(-1)[:, None, :] - 2 * torch.bmm(z, e.transpose(1, 2))  # + |z|², the same for every code
        return d.masked_fill(~self.valid[:, None, :], float("inf")).argmin(dim=-1)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """idx [E, B] → the codes [E, B, dim]."""
        return torch.gather(self.embed, 1, idx[..., None].expand(-1, -1, self.dim))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z [E, B, dim] → (codes [E, B, dim] without gradient, indices [E, B], commitment losses [E]).

        In training mode the codebooks then take the step's EMA update (the codes returned are those
        the rows were assigned to, before it)."""
        with torch.no_grad():
            zd = z.detach().float()
            idx = self.assign(zd)
            q = self.lookup(idx)
            if self.training:
                self._update(zd, idx)
        commit = self.commitment_weight * ((z.float() - q) ** 2).mean(dim=(1, 2))
        return q, idx, commit

    def _update(self, z: torch.Tensor, idx: torch.Tensor) -> None:
        onehot = F.one_hot(idx, self.embed.shape[1]).to(z.dtype)  # [E, B, K]
        counts, sums = onehot.sum(1), torch.bmm(onehot.transpose(1, 2), z)
        if world_size() > 1:
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_size.lerp_(counts, 1 - self.decay)
        self.embed_avg.lerp_(sums, 1 - self.decay)
        n = self.cluster_size.sum(-1, keepdim=True)
        smoothed = (self.cluster_size + self.eps) / (n + self.sizes[:, None] * self.eps) * n
        self.embed.copy_(self.embed_avg / smoothed[..., None])
        self._replace_dead(z)

    def _replace_dead(self, z: torch.Tensor) -> None:
        """Codes whose EMA count fell below their stream's ``dead_threshold`` become latents of the step.

        At most B per stream and step (the first dead ones), so no latent is used twice; rank 0's choice
        is broadcast (all ranks agree on which codes are dead: the counts are all-reduced)."""
        dead = (self.cluster_size < self.dead_threshold[:, None]) & self.valid
        if not bool(dead.any()):
            return
        rows = z.shape[1]
        for e in dead.any(dim=1).nonzero()[:, 0].tolist():
            codes = dead[e].nonzero()[:, 0][:rows]
            sample = z[e, torch.randperm(rows, device=z.device)[:len(codes)]]
            if world_size() > 1:
                dist.broadcast(sample, src=0)
            reset = self.reset_count[e]
            self.embed[e, codes] = sample
            self.embed_avg[e, codes] = sample * reset
            self.cluster_size[e, codes] = reset

    @torch.no_grad()
    def set_codes(self, e: int, means: torch.Tensor, counts: torch.Tensor) -> None:
        """Stream e's codebook from a k-means (centroids [k, dim], rows per centroid [k])."""
        k = int(self.sizes[e])
        if means.shape != (k, self.dim):
            raise ValueError(f"stream {e} has {k} codes of {self.dim} dimensions, got centroids {tuple(means.shape)}")
        self.embed[e, :k] = means
        self.embed_avg[e, :k] = means * counts[:, None]
        self.cluster_size[e, :k] = counts


class StreamQuantizer(nn.Module):
    """Residual levels of :class:`EMACodebooks` over E latents [E, B, L]: level l quantizes what the coarser
    levels left; stream e has ``sizes[e][l]`` codes at level l (one: the level has no token and its code is
    the mean of what reaches it).

    Which stream has a token at which level, and so which levels refine and which open new components, is
    the rate allocation's choice (:mod:`spinlock.encoding.rates`).
    """

    def __init__(self, dim: int, sizes: Sequence[Sequence[int]], decay: float, commitment_weight: float):
        super().__init__()
        levels = {len(s) for s in sizes}
        if len(levels) != 1:
            raise ValueError(f"every stream needs the same number of codebook sizes, got {[list(s) for s in sizes]}")
        self.levels = nn.ModuleList(EMACodebooks([s[lv] for s in sizes], dim, decay, commitment_weight)
                                    for lv in range(levels.pop()))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z [E, B, L] → (each level's codes [levels, E, B, L], without gradient; indices [B, E, levels];
        commitment losses [levels, E])."""
        residual, codes, idx, losses = z, [], [], []
        for level in self.levels:
            q, i, loss = level(residual)
            residual = residual - q
            codes.append(q)
            idx.append(i)
            losses.append(loss)
        return torch.stack(codes), torch.stack(idx, dim=-1).transpose(0, 1), torch.stack(losses)

    def codes(self, indices: torch.Tensor) -> torch.Tensor:
        """indices [B, E, levels] → each level's codes [levels, E, B, L]."""
        return torch.stack([level.lookup(indices[:, :, lv].T) for lv, level in enumerate(self.levels)])
