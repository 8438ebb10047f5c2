"""Hierarchical VQ-VAE: one encoder per feature category, a temporal encoder, a CNN branch over ICs.

Every encoder maps its input to one latent ``z`` [B, L] per token stream (a wide category has several,
:func:`spinlock.encoding.rates.allocate_tokens`), and a three-level quantizer per stream turns it into codes
(:class:`~spinlock.encoding.quantizer.StreamQuantizer`, all streams at once: EMA codebooks, k-means++
initialisation, dead-code replacement). Each level quantizes what the coarser levels left of the latent,
so every level refines the coarser ones, coarse → medium → fine by construction; a stream may have its
first token at level 2 or 3 (its coarser levels have one code), so a finer level also buys new components
(a category's next stream, see :mod:`spinlock.encoding.rates`). A category encoder is a linear map
(initialised to the category's PCA, :meth:`HierarchicalVQVAE.initialize_from_pca`) plus an MLP, and so is
the temporal encoder (the curves' PCA, plus convolutions over time). A shared decoder (an MLP
plus a linear path) reconstructs, from all quantized latents, the cleaned scalar features [B, D'], the
temporal curves [B, T', Dt'] and translation-invariant statistics of the (normalised) initial condition
(:func:`ic_descriptors`). Training decodes every prefix of the levels (coarse, +medium, all) so that a
truncated token sequence decodes on its own.
Codebook sizes are fitted to the data per level (:func:`scale_codebook_sizes`) and per stream
(:func:`spinlock.encoding.rates.stream_sizes`: one code where a level has no token, few for a discrete
category); dead codes are judged against their fair share of a training step
(:meth:`HierarchicalVQVAE.set_step_rows`). docs/tokenizer.md ("Codebooks") gives the measurements.

The CNN branch's 28-D output (before its latent projection) is the learned INITIAL embedding written
to ``/features/initial_learned``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from spinlock.encoding.inputs import pool_ic  # noqa: F401  (re-exported)
from spinlock.encoding.quantizer import StreamQuantizer, kmeans, world_size
from spinlock.encoding.rates import stream_components

LEVELS = 3
IC_EMBEDDING_DIM = 28
TEMPORAL_POSITIONS = 16


def scale_codebook_sizes(sizes: tuple[int, ...], init_rows: int, rows_per_code: int = 8) -> tuple[int, ...]:
    """Codebook sizes for a dataset whose k-means initialisation sees ``init_rows`` rows.

    Each level is capped at the largest power of two <= ``init_rows / rows_per_code`` (at least 2):
    a code needs several rows to be estimated (k-means, EMA means) and to show up at all when the
    codes are counted; with fewer rows per code, codes are duplicates or never chosen and the usage
    and perplexity of the level fall however well it is trained.
    """
    cap = 1 << max(1, int(np.floor(np.log2(max(2, init_rows // max(1, rows_per_code))))))
    return tuple(min(int(s), cap) for s in sizes)


def effective_inputs(x: np.ndarray, resolution: float) -> float:
    """Effective number of distinguishable rows of ``x`` [n, f]: ``exp(H)`` of the frequencies of the
    cells of a grid of ``resolution`` (in the units of x: standard deviations of cleaned features).

    A discrete input with m equally frequent values gives m; a mostly constant one much less; a
    continuous 1-D input ~ range / resolution; a high-dimensional one ~ n (every row its own cell).
    """
    if x.shape[0] == 0:
        return 0.0
    cells = np.floor(np.asarray(x, np.float64) / resolution).astype(np.int64)
    _, counts = np.unique(cells, axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def stream_names(categories: list[str], streams: tuple[int, ...] | list[int]) -> list[str]:
    """Token stream names: the category's name for one stream, ``<name>.<j>`` for several."""
    return [n if s == 1 else f"{n}.{j}" for n, s in zip(categories, streams, strict=True) for j in range(s)]


@dataclass(frozen=True)
class ModelSpec:
    """Constructor arguments of :class:`HierarchicalVQVAE` (saved as JSON with the tokenizer).

    ``category_columns[k]`` are the indices of category k's features in the cleaned vector [D'].
    ``temporal_features`` = Dt' (0: no temporal encoder), ``ic_channels`` = C (0: no CNN branch).
    A *token stream* is one latent [B, L] with its own three-level quantizer: category k's encoder
    emits ``category_streams[k]`` of them, the temporal and IC encoders one each; tokens are
    ``[B, streams · 3]``.
    """

    category_columns: tuple[tuple[int, ...], ...]
    n_features: int
    temporal_features: int
    temporal_length: int
    ic_channels: int
    ic_resolution: int
    latent_dim: int = 32
    hidden_dim: int = 256
    codebook_sizes: tuple[int, int, int] = (128, 256, 512)
    commitment_weight: float = 0.25
    ema_decay: float = 0.95
    dead_code_threshold: float = 0.5
    """A code is dead (replaced by a sampled latent) when its EMA count of rows per training step
    falls below this fraction of its fair share, ``rows per step / K`` (see ``set_step_rows``)."""
    kmeans_iters: int = 10
    encoder_names: tuple[str, ...] = field(default=())
    """One name per token stream, in token order: the categories' streams, then ``temporal``, then
    ``ic`` (default ``c00``, ``c01``, ..., ``c01.0``, ``c01.1`` for a category with two streams)."""
    encoder_codebook_sizes: tuple[tuple[int, ...], ...] = ()
    """Codes per level of each stream (each <= ``codebook_sizes``); empty: ``codebook_sizes`` for all."""
    category_streams: tuple[int, ...] = ()
    """Token streams of each category (empty: one each)."""
    stream_components: int = 0
    """Principal components of its category each category stream holds (stream j: components
    ``[p·j, p·(j+1))``, :func:`spinlock.encoding.rates.stream_components`); they initialise the first p
    latent dimensions (:meth:`HierarchicalVQVAE.initialize_from_pca`), the others are the encoder MLP's own.
    0: random initialisation."""

    def __post_init__(self) -> None:
        if not self.category_streams:
            object.__setattr__(self, "category_streams", (1,) * len(self.category_columns))
        if len(self.category_streams) != len(self.category_columns) or min(self.category_streams, default=1) < 1:
            raise ValueError(f"category_streams needs one count >= 1 per category, got {self.category_streams}")
        default = (*stream_names([f"c{i:02d}" for i in range(len(self.category_columns))], self.category_streams),
                   *(("temporal",) if self.temporal_features else ()), *(("ic",) if self.ic_channels else ()))
        if not self.encoder_names:
            object.__setattr__(self, "encoder_names", default)
        elif len(self.encoder_names) != len(default):
            raise ValueError(f"{len(self.encoder_names)} encoder names for {len(default)} encoders")
        if len(self.codebook_sizes) != LEVELS:
            raise ValueError(f"codebook_sizes needs {LEVELS} entries, got {self.codebook_sizes}")
        if not 0 <= self.stream_components <= self.latent_dim:
            raise ValueError(f"stream_components must be in [0, latent_dim = {self.latent_dim}], got"
                             f" {self.stream_components}")
        if not self.encoder_codebook_sizes:
            object.__setattr__(self, "encoder_codebook_sizes", (tuple(self.codebook_sizes),) * self.n_encoders)
        sizes = self.encoder_codebook_sizes
        if len(sizes) != self.n_encoders or any(
                len(e) != LEVELS or not all(1 <= k <= c for k, c in zip(e, self.codebook_sizes, strict=True))
                for e in sizes):
            raise ValueError(f"encoder_codebook_sizes must hold {self.n_encoders} triples of sizes in"
                             f" [1, {list(self.codebook_sizes)}], got {sizes}")

    @property
    def n_encoders(self) -> int:
        """Number of token streams (tokens per level)."""
        return sum(self.category_streams) + int(self.temporal_features > 0) + int(self.ic_channels > 0)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> ModelSpec:
        d = dict(d)
        d["category_columns"] = tuple(tuple(c) for c in d["category_columns"])
        d["codebook_sizes"] = tuple(d["codebook_sizes"])
        d["encoder_names"] = tuple(d["encoder_names"])
        d["encoder_codebook_sizes"] = tuple(tuple(e) for e in d.get("encoder_codebook_sizes", ()))
        d["category_streams"] = tuple(d.get("category_streams", ()))
        return cls(**d)


@dataclass
class ModelOutput:
    """Reconstructions (shapes of the inputs, with a leading level axis [3, ...] in training mode;
    ``ic`` and ``ic_target`` [B, C·(2 + R/2)], :func:`ic_descriptors`), ``indices`` [B, E, 3],
    ``commit_loss`` scalar."""

    x: torch.Tensor
    temporal: torch.Tensor | None
    ic: torch.Tensor | None
    ic_target: torch.Tensor | None
    indices: torch.Tensor
    commit_loss: torch.Tensor


def radial_bins(resolution: int) -> torch.Tensor:
    """[R·(R//2+1), R//2] weights averaging the ``rfft2`` power of an R x R field over rings of
    integer radius 1..R/2 (cycles per domain); half-plane modes with a mirror count twice."""
    ky = torch.fft.fftfreq(resolution) * resolution
    kx = torch.fft.rfftfreq(resolution) * resolution
    radius = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2).round().long().flatten()
    mirror = torch.where((kx > 0) & (kx < resolution / 2), 2.0, 1.0).expand(resolution, -1).flatten()
    bins = resolution // 2
    w = torch.zeros(len(radius), bins)
    ring = (radius >= 1) & (radius <= bins)
    w[ring.nonzero()[:, 0], radius[ring] - 1] = mirror[ring]
    return w / w.sum(0, keepdim=True)


def ic_descriptors(x: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """[B, C, R, R] (normalised) initial condition → [B, C·(2 + R/2)] translation-invariant statistics:
    per channel the spatial mean, log standard deviation and log radially averaged power spectrum
    (``bins`` from :func:`radial_bins`).

    Why: the IC branch ends in spatial mean/std pooling, so its embedding cannot say *where* structure
    is; a coarse 8 x 8 copy of the field as target left its validation R² negative (-0.1). These
    statistics are what a translation-invariant embedding can carry: amplitude and length scales.
    """
    mean = x.mean(dim=(2, 3))
    std = x.std(dim=(2, 3), unbiased=False)
    f = torch.fft.rfft2(x - mean[..., None, None], norm="ortho")
    power = (f.real**2 + f.imag**2).flatten(2) @ bins  # [B, C, R/2]
    return torch.cat([mean, torch.log(std + 1e-4), torch.log(power + 1e-6).flatten(1)], dim=1)


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, d_out))


class TemporalEncoder(nn.Module):
    """[B, T', Dt] curves → [B, L]: two 1-D convolutions over time, pooled to 16 positions, an MLP."""

    def __init__(self, features: int, length: int, hidden: int, latent: int, channels: int = 64):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(features, channels, 3, padding=1), nn.GELU(),
                                  nn.Conv1d(channels, channels, 3, padding=1), nn.GELU())
        self.positions = min(length, TEMPORAL_POSITIONS)
        self.head = _mlp(channels * self.positions, hidden, latent)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        h = self.conv(t.transpose(1, 2))
        h = F.adaptive_avg_pool1d(h, self.positions).flatten(1)
        return self.head(h)


class ICEncoder(nn.Module):
    """[B, C, R, R] initial condition → 28-D embedding (three stride-2 periodic convolutions, then
    per-channel mean and std over space, so any R works).

    The input is standardised per channel by a non-affine BatchNorm with a cumulative average
    (``momentum=None``), i.e. by the training-set channel mean and variance at evaluation time.
    """

    def __init__(self, channels: int, width: int = 16):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False, momentum=None)
        conv = dict(kernel_size=3, padding=1, padding_mode="circular", stride=2)
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, **conv), nn.GELU(),
            nn.Conv2d(width, 2 * width, **conv), nn.GELU(),
            nn.Conv2d(2 * width, 4 * width, **conv), nn.GELU(),
        )
        self.head = nn.Linear(8 * width, IC_EMBEDDING_DIM)

    def forward(self, ic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (embedding [B, 28], normalised input [B, C, R, R])."""
        x = self.norm(ic)
        h = self.body(x)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.std(dim=(2, 3), unbiased=False)], dim=1)
        return self.head(pooled), x


class HierarchicalVQVAE(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        L, H = spec.latent_dim, spec.hidden_dim
        self.register_buffer("_columns", torch.cat([torch.tensor(c, dtype=torch.long)
                                                    for c in spec.category_columns]), persistent=False)
        self._splits = [len(c) for c in spec.category_columns]
        self.category_encoders = nn.ModuleList(
            _mlp(len(c), H, s * L) for c, s in zip(spec.category_columns, spec.category_streams, strict=True))
        # linear part of each category encoder, initialised to the category's PCA (initialize_codebooks)
        self.category_linear = nn.ModuleList(
            nn.Linear(len(c), s * L) for c, s in zip(spec.category_columns, spec.category_streams, strict=True))
        self.temporal_encoder = (TemporalEncoder(spec.temporal_features, spec.temporal_length, H, L)
                                 if spec.temporal_features else None)
        # linear part of the temporal encoder, initialised to the curves' PCA (initialize_from_pca)
        self.temporal_linear = (nn.Linear(spec.temporal_length * spec.temporal_features, L)
                                if spec.temporal_features else None)
        self.ic_encoder = ICEncoder(spec.ic_channels) if spec.ic_channels else None
        self.ic_project = nn.Sequential(nn.GELU(), nn.Linear(IC_EMBEDDING_DIM, L)) if spec.ic_channels else None
        self.quantizer = StreamQuantizer(L, spec.encoder_codebook_sizes, spec.ema_decay, spec.commitment_weight)
        self.decoder = nn.Sequential(nn.Linear(spec.n_encoders * L, H), nn.GELU(), nn.Linear(H, H), nn.GELU())
        # The output heads read the decoder's hidden state *and* the quantized latents themselves: the
        # linear part of the latents → features map (most of the variance, as for PCA) needs no hidden
        # layer and the MLP learns the rest (measured: docs/performance.md, "Tokenizer decoder").
        D = H + spec.n_encoders * L
        self.head_x = nn.Linear(D, spec.n_features)
        self.head_t = (nn.Linear(D, spec.temporal_length * spec.temporal_features)
                       if spec.temporal_features else None)
        if spec.ic_channels:
            self.register_buffer("_ic_bins", radial_bins(spec.ic_resolution), persistent=False)
        self.ic_target_dim = spec.ic_channels * (2 + spec.ic_resolution // 2)
        self.head_ic = nn.Linear(D, self.ic_target_dim) if spec.ic_channels else None
        # the IC statistics' training mean and standard deviation (initialize_codebooks): the head predicts
        # standardised statistics, so their loss is on the scale of the (cleaned, standardised) features
        self.register_buffer("ic_mean", torch.zeros(self.ic_target_dim))
        self.register_buffer("ic_scale", torch.ones(self.ic_target_dim))

    # ------------------------------------------------------------------ encoding
    def latents(self, x: torch.Tensor, t: torch.Tensor | None, ic: torch.Tensor | None):
        """Unquantized latents, list of E (streams) tensors [B, L]; plus (IC embedding [B, 28], IC target)."""
        parts = torch.split(x[:, self._columns], self._splits, dim=1)
        L = self.spec.latent_dim
        zs = [z for enc, lin, p in zip(self.category_encoders, self.category_linear, parts, strict=True)
              for z in (lin(p) + enc(p)).split(L, dim=1)]
        if self.temporal_encoder is not None:
            zs.append(self.temporal_linear(t.flatten(1)) + self.temporal_encoder(t))
        emb = target = None
        if self.ic_encoder is not None:
            emb, normed = self.ic_encoder(ic)
            zs.append(self.ic_project(emb))
            target = ((ic_descriptors(normed, self._ic_bins) - self.ic_mean) / self.ic_scale).detach()
        return zs, emb, target

    def decode(self, quantized: torch.Tensor):
        """[B, E·L] concatenated quantized latents → (x [B, D'], temporal [B, T', Dt'] | None, ic | None)."""
        h = torch.cat([self.decoder(quantized), quantized], dim=1)
        b, s = quantized.shape[0], self.spec
        t = self.head_t(h).view(b, s.temporal_length, s.temporal_features) if self.head_t is not None else None
        ic = self.head_ic(h) if self.head_ic is not None else None
        return self.head_x(h), t, ic

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None, ic: torch.Tensor | None = None) -> ModelOutput:
        """x [B, D'], t [B, T', Dt'], ic [B, C, R, R]. In training mode the reconstructions are those of
        every prefix of the levels, stacked first ([3, B, ...]: coarse, +medium, all); in eval mode those
        of all levels.

        Why every prefix: a truncated token sequence must decode on its own. Random quantizer dropout
        (one truncation level per step) trained each prefix on a third of the steps and each finer
        codebook's EMA on the steps that reached it; decoding all three (the decoder is small next to
        the encoders and quantizers) trains every prefix and codebook on every step."""
        zs, _, target = self.latents(x, t, ic)
        z = torch.stack(zs)  # [E, B, L]
        codes, idx, commit = self.quantizer(z)  # [3, E, B, L], [B, E, 3], [3, E]
        b, (E, L) = x.shape[0], (len(zs), self.spec.latent_dim)
        if self.training:  # straight-through estimate of each prefix sum of the codes
            q = z + (codes.cumsum(0) - z).detach()
            out = self.decode(q.permute(0, 2, 1, 3).reshape(LEVELS * b, E * L))
            rx, rt, ric = (None if r is None else r.view(LEVELS, b, *r.shape[1:]) for r in out)
        else:
            rx, rt, ric = self.decode(codes.sum(0).transpose(0, 1).reshape(b, E * L))
        return ModelOutput(rx, rt, ric, target, idx, commit.sum() / E)

    def set_step_rows(self, rows: int) -> None:
        """Make dead-code replacement relative to ``rows`` training rows per step (all ranks together).

        The library compares each code's EMA count of rows per step with one absolute
        ``threshold_ema_dead_code``; a fixed number cannot suit codebooks of 128 and 512 codes or
        batches of 64 and 1024 rows (at 256 rows and K = 512 the fair share is 0.5, so an absolute 1
        replaces almost every code every step). Here level l of every encoder uses
        ``dead_code_threshold · rows / K`` and gives a replaced code its fair share ``rows / K`` as
        its new count, so it has ~log(threshold)/log(decay) steps to attract rows before it is
        judged again. Plain attributes, not state: call again after loading a checkpoint.

        Streams of PCA-initialised category encoders replace no codes: their k-means starts on the linear
        code and their encoders move slowly (``TrainSettings.scalar_lr_scale``), so a code with few rows
        codes rare operators, not a stale position; replacing those by sampled latents cost 0.01 validation
        R² of the coarse level within one epoch on the 4096-operator run. The temporal and IC encoders
        start from random weights and leave their initial codes behind.
        """
        pca = self.spec.stream_components > 0
        categories = sum(self.spec.category_streams)
        for level in self.quantizer.levels:
            threshold = torch.full_like(level.dead_threshold, self.spec.dead_code_threshold)
            if pca:
                threshold[:categories] = 0.0
            fair = rows / level.sizes.to(threshold)
            level.dead_threshold.copy_(threshold * fair)
            level.reset_count.copy_(fair)

    @torch.no_grad()
    def initialize_codebooks(self, x: torch.Tensor, t: torch.Tensor | None, ic: torch.Tensor | None,
                             step_rows: int | None = None) -> None:
        """PCA initialisation of the encoders (``spec.stream_components``), then k-means
        initialisation of every level from one (large) batch, coarse to fine (:func:`kmeans`, each level on
        what the coarser ones left). Under DDP rank 0's codebooks are broadcast (each rank's batch differs).

        k-means leaves each code's EMA count at its cluster size in the whole init batch, tens of
        times its count per training step, so codes that the moving encoders leave behind would
        look alive for hundreds of steps. With ``step_rows`` (rows per training step on this rank)
        the counts and sums are rescaled to one step (the code vectors do not change).
        """
        if self.spec.stream_components:
            self.initialize_from_pca(x, t)
        self.train()  # as in training: the IC branch's batch norm reads (and starts counting) the batch
        zs, _, target = self.latents(x, t, ic)
        world = world_size()
        if target is not None:
            raw = target * self.ic_scale + self.ic_mean
            self.ic_mean.copy_(raw.mean(0))
            self.ic_scale.copy_(raw.std(0).clamp(min=1e-3))
            if world > 1:
                for tensor in (self.ic_mean, self.ic_scale):
                    dist.broadcast(tensor, src=0)
        for e, z in enumerate(zs):
            residual = z.detach()
            for level in self.quantizer.levels:
                means, counts = kmeans(residual, int(level.sizes[e]), self.spec.kmeans_iters)
                if world > 1:
                    for tensor in (means, counts):
                        dist.broadcast(tensor, src=0)
                level.set_codes(e, means, counts * world)  # the EMA counts every rank's rows
                residual = residual - means[torch.cdist(residual, means).argmin(dim=1)]
        for level in self.quantizer.levels:
            level.initted.fill_(True)
            if step_rows is not None:
                scale = step_rows / x.shape[0]
                level.cluster_size.mul_(scale)
                level.embed_avg.mul_(scale)

    @torch.no_grad()
    def initialize_from_pca(self, x: torch.Tensor, curves: torch.Tensor | None = None) -> None:
        """Start from a per-category linear code of ``x`` [n, D'] (cleaned rows): the linear part of
        category c's encoder maps the first ``p = stream_components`` latent dimensions of stream j to the
        category's principal components ``[p·j, p·(j+1))`` (centred, unscaled) and its other dimensions to 0;
        the decoder's linear path maps those latent dimensions back (component vectors, bias = the rows'
        mean); the MLP parts (encoder outputs and the decoder's hidden-state weights) are scaled by 0.1, so
        they start as small corrections.

        Why: with the k-means that follows, the untrained model is a per-category PCA + quantization
        code, which training then bends; trained from random weights the model ended far below a linear
        code of the same size (docs/tokenizer.md, "Frontier"). Under DDP rank 0's initialisation is
        broadcast, so all ranks start from the same weights.
        """
        H = self.spec.hidden_dim
        w = self.head_x.weight
        w[:, :H] *= 0.1
        w[:, H:] = 0
        e = 0
        for cols, s, lin, enc in zip(self.spec.category_columns, self.spec.category_streams, self.category_linear,
                                     self.category_encoders, strict=True):
            self._linear_code(x[:, list(cols)], lin, enc[-1], self.head_x, torch.tensor(cols), s, e,
                              self.spec.stream_components)
            e += s
        self.head_x.bias.copy_(x.mean(0))
        if curves is not None and self.temporal_linear is not None:
            self._initialize_temporal_from_pca(curves)
        if world_size() > 1:
            temporal = ((self.temporal_linear, self.head_t, self.temporal_encoder.head[-1])
                        if self.temporal_linear is not None else ())
            for m in (self.head_x, *self.category_linear, *(enc[-1] for enc in self.category_encoders), *temporal):
                for param in m.parameters():
                    dist.broadcast(param.data, src=0)

    def _linear_code(self, rows: torch.Tensor, lin: nn.Linear, mlp_out: nn.Linear, head: nn.Linear,
                     head_rows: torch.Tensor, streams: int, first: int, components: int) -> None:
        """One encoder's linear code of ``rows`` [n, d]: ``lin`` (its linear part, ``streams`` latents) maps
        the first ``components`` latent dimensions of stream j to the principal components
        ``stream_components(j, components)``, ``mlp_out`` (its MLP's output layer) is scaled by 0.1, and
        ``head``'s linear path from those latents (the encoder's streams start at ``first``) to its outputs
        ``head_rows`` (the d columns) is the transposed components."""
        L, H = self.spec.latent_dim, self.spec.hidden_dim
        xc = rows.double()
        mean = xc.mean(0)
        _, _, vt = torch.linalg.svd(xc - mean, full_matrices=False)
        lin.weight.zero_()
        lin.bias.zero_()
        mlp_out.weight.mul_(0.1)
        mlp_out.bias.mul_(0.1)
        for j in range(streams):
            band = stream_components(j, components, len(vt))
            comps = vt[band].float()
            dims = j * L + torch.arange(len(band))
            lin.weight[dims] = comps
            lin.bias[dims] = -(comps @ mean.float())
            head.weight[head_rows[:, None], H + first * L + dims[None, :]] = comps.T

    def _initialize_temporal_from_pca(self, t: torch.Tensor) -> None:
        """The temporal stream as the categories' (:meth:`initialize_from_pca`), with all ``latent_dim`` of
        its dimensions: its linear part maps them to the first principal components of the flattened curves
        ``t`` [n, T', Dt'], the curves' output head maps them back (bias = the curves' mean), and the MLP
        parts start as small corrections.

        Why: from random weights the temporal stream learned slowly while the PCA-initialised categories
        were at their best from the first epoch (quickstart: curves' R² 0.12 after 3 epochs, 0.67 after 37),
        so the fit needed all its epochs for one stream. All latent dimensions: its one stream has a token
        at every level, and on the 4096-operator run 12 components quantized three times gave the untrained
        code 0.633 / 0.716 / 0.752 of the curves' R², against 0.547 / 0.638 / 0.714 for 4 + 2 + 3 components
        added level by level (format 7)."""
        H = self.spec.hidden_dim
        e = sum(self.spec.category_streams)  # the temporal stream follows the categories'
        w = self.head_t.weight
        w[:, :H] *= 0.1
        w[:, H:] = 0
        flat = t.flatten(1)
        self._linear_code(flat, self.temporal_linear, self.temporal_encoder.head[-1], self.head_t,
                          torch.arange(flat.shape[1]), 1, e, self.spec.latent_dim)
        self.head_t.bias.copy_(flat.double().mean(0).float())

    @torch.no_grad()
    def encode(self, x: torch.Tensor, t: torch.Tensor | None, ic: torch.Tensor | None):
        """Eval-mode codes: (indices [B, E, 3] int64, IC embedding [B, 28] or None).

        Runs in eval mode whatever the current mode (no EMA update), then restores it.
        """
        was = self.training
        self.eval()
        try:
            zs, emb, _ = self.latents(x, t, ic)
            idx = self.quantizer(torch.stack(zs))[1]
        finally:
            self.train(was)
        return idx, emb

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor, levels: int = LEVELS):
        """Decode from codes [B, E, 3] using only the first ``levels`` levels of every encoder."""
        if not 1 <= levels <= LEVELS:
            raise ValueError(f"levels must be in 1..{LEVELS}, got {levels}")
        q = self.quantizer.codes(indices)[:levels].sum(dim=0)  # [E, B, L]
        return self.decode(q.transpose(0, 1).flatten(1))
