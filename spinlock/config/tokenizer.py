"""Tokenizer section (owned by spinlock.encoding): cleaning, category discovery, VQ-VAE, training.

docs/tokenizer.md explains each stage; every field below is read by ``spinlock.encoding`` or by the
Ray edges in ``spinlock.distributed.feature_stream`` / ``.train`` / ``.tokenize_stage``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from spinlock.config.strict import Strict


class CleaningConfig(Strict):
    """Streaming cleaning transform, fitted on the training split only."""

    max_nonfinite_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    """A column whose share of non-finite values among the training rows of non-diverged operators
    exceeds this is dropped; below it, non-finite values are imputed with the column median."""
    min_relative_std: float = Field(1e-6, ge=0.0)
    """A column whose (clipped) standard deviation is <= this times |mean| (or exactly 0) is dropped
    as near-constant."""
    dedup_threshold: float = Field(0.995, gt=0.0, le=1.0)
    """Of two columns with |Pearson r| above this, the later one (in column order) is dropped."""
    clip_quantile: float = Field(0.01, ge=0.0, lt=0.5)
    """Values are clipped to the [q, 1-q] quantiles of the training sample before moments are taken."""
    sample_size: int = Field(4096, ge=16, le=1_000_000)
    """Rows kept in the deterministic bottom-k sample (by hash of seed and operator index) from which
    medians and clipping quantiles are computed; bounds the cleaner's memory."""


class CategoryConfig(Strict):
    """Hierarchical clustering of features into categories (one encoder each)."""

    min_categories: int = Field(8, ge=1)
    """Smallest number of categories the silhouette search considers (clipped to the data)."""
    max_categories: int = Field(15, ge=1)
    """Largest number of categories the silhouette search considers (clipped to features - 1)."""

    @model_validator(mode="after")
    def _order(self) -> CategoryConfig:
        if self.max_categories < self.min_categories:
            raise ValueError(
                f"max_categories ({self.max_categories}) must be >= min_categories ({self.min_categories})"
            )
        return self


class ModelConfig(Strict):
    """Hierarchical VQ-VAE architecture."""

    latent_dim: int = Field(8, ge=2, le=1024)
    """Width of each token stream's latent vector (the space its three levels quantize); at least
    ``components_per_stream``. The dimensions no principal component initialises are the encoder's own
    (its MLP); the temporal stream's are all initialised to the curves' principal components. Few own
    dimensions: every level quantizes them, and as the MLP grew into 8 of them (``latent_dim`` 12) the
    fine prefix's validation R² fell from 0.982 to 0.978 during training (docs/tokenizer.md)."""
    hidden_dim: int = Field(256, ge=8, le=8192)
    """Hidden width of the category encoders and of the shared decoder."""
    codebook_sizes: tuple[int, int, int] = (256, 256, 256)
    """Codes per level (coarse, medium, fine): upper bounds, scaled down for small datasets and for
    encoders with few distinguishable inputs (``rows_per_code``, ``code_resolution``; docs/tokenizer.md)."""
    rows_per_code: int = Field(8, ge=1)
    """Each level is capped at the largest power of two <= (k-means init rows) / this, so every code
    is estimated from, and chosen by, several rows."""
    code_resolution: float = Field(0.05, gt=0.0)
    """Grid step, in standard deviations of the cleaned features, at which a category's inputs count as
    distinguishable; an encoder with few effective inputs gets that many codes over its three levels."""
    tokens: tuple[int, int, int] = (24, 48, 96)
    """Informative tokens per operator at the coarse, +medium and full prefix of the levels (temporal and
    IC streams included: one temporal token per level and one coarse IC token are always emitted). The
    categories' tokens go, level by level, where their codes explain most variance: to a new stream or to
    a finer code of a coarser stream (docs/tokenizer.md, "Token streams"); fewer when the data run out of
    components. At least 3 at the coarse prefix and growing at every level, so that the categories get a
    coarse token."""
    components_per_stream: int = Field(4, ge=1, le=1024)
    """Principal components of its category each token stream holds, from the first level at which it
    has a token; its later levels refine them. The unit of the allocation, and the latent dimensions the
    encoder's linear part is initialised to (PCA)."""
    commitment_weight: float = Field(0.25, ge=0.0)
    """Weight of the commitment loss ||z - sg(q)||^2 of every level."""
    ema_decay: float = Field(0.95, gt=0.0, lt=1.0)
    """EMA decay of the codebook statistics (cluster sizes and sums)."""
    dead_code_threshold: float = Field(0.5, ge=0.0)
    """A code of the temporal or IC stream whose EMA count of rows per training step falls below this
    fraction of its fair share (rows per step / K) is replaced by a sampled encoder output; 0 disables
    replacement. The PCA-initialised category streams replace none (docs/tokenizer.md, "Codebooks")."""
    kmeans_iters: int = Field(10, ge=1, le=100)
    """Lloyd iterations of the k-means codebook initialisation."""
    ic_resolution: int = Field(32, ge=4, le=512)
    """Initial conditions are average-pooled to R x R (at most the grid) before the CNN branch."""
    temporal_weight: float = Field(1.0, ge=0.0)
    """Weight of the temporal-curve reconstruction loss relative to the scalar-feature loss."""
    ic_weight: float = Field(0.5, ge=0.0)
    """Weight of the loss on the initial condition's translation-invariant statistics (per channel mean,
    log std, log radial power spectrum)."""

    replaced = {"components_per_level": "components_per_level was replaced by components_per_stream (principal"
                 " components per token stream, default 4; tokenizer format 8): remove"
                 " tokenizer.model.components_per_level"}

    @model_validator(mode="after")
    def _latent(self) -> ModelConfig:
        t = list(self.tokens)
        if t[0] < 3 or t[1] <= t[0] or t[2] <= t[1]:
            raise ValueError(f"tokens (coarse, +medium, all) must start at >= 3 and grow at every level, got {t}:"
                             " the temporal and IC streams always take a coarse token each and the temporal stream"
                             " one more per level, and the categories need at least one coarse token")
        if self.components_per_stream > self.latent_dim:
            raise ValueError(f"components_per_stream ({self.components_per_stream}) must be <= latent_dim"
                             f" ({self.latent_dim}): a stream's latent holds its components")
        return self


class TrainingConfig(Strict):
    """Ray Train settings of the VQ-VAE fit."""

    epochs: int = Field(40, ge=1, le=100_000)
    """Most passes over the training rows (fewer when ``patience`` stops the fit)."""
    patience: int = Field(5, ge=0, le=100_000)
    """Stop once this many epochs in a row have not improved the validation score (R² of the scalar
    features, temporal curves and IC statistics, weighted as in the loss, each averaged over the coarse,
    +medium and full codes); the best epoch's weights are kept either way. 0: train every epoch."""
    batch_size: int = Field(64, ge=2, le=1_000_000)
    """Rows per worker step (reduced to the rows a worker holds when the dataset is smaller). Small
    because a few thousand operators give few steps per epoch; raise it for large datasets, GPUs or
    several workers (each step costs a round of all-reduces)."""
    learning_rate: float = Field(1e-3, gt=0.0)
    """Peak AdamW learning rate."""
    scalar_lr_scale: float = Field(0.03, gt=0.0, le=1.0)
    """Learning rate of the scalar-feature path (category encoders, scalar output head), which starts from
    the per-category PCA code, relative to ``learning_rate``; the temporal and IC branches start from
    random weights and train at the full rate."""
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    """``cosine`` anneals the rate per epoch to ~0 at the end, so encoders stop moving and the EMA
    codebooks settle (docs/tokenizer.md); ``constant`` keeps ``learning_rate``."""
    weight_decay: float = Field(1e-5, ge=0.0)
    """AdamW weight decay."""
    kmeans_init_rows: int = Field(4096, ge=2)
    """Training rows per worker gathered at the start for the k-means codebook initialisation."""
    num_workers: int = Field(1, ge=1, le=1024)
    """Ray Train workers (DDP ranks)."""
    cpus_per_worker: float = Field(1.0, gt=0.0)
    """CPUs each training worker reserves; leave some for Ray Data (docs/tokenizer.md)."""
    use_gpu: bool | Literal["auto"] = "auto"
    """One GPU per worker; ``auto`` uses GPUs when the cluster has at least ``num_workers`` of them."""
    cache_mb: int = Field(512, ge=0)
    """Largest shard (training rows of one worker, or the validation rows), in MiB, that a worker keeps
    in its memory after the first epoch and iterates from there; a larger one is streamed through Ray
    Data every epoch. Same batches either way; 0 always streams (docs/tokenizer.md)."""
    checkpoint_seconds: float = Field(30.0, ge=0.0)
    """The workers report to Ray Train, with a checkpoint from rank 0, after the first epoch that ends
    this many seconds after the last report (or the worker group's start), and after the last epoch.
    A restart resumes from the latest checkpoint, so a failure costs about this much training; each
    report waits for Ray Train's controller poll (0.5 s, ``distributed.train.POLL_SECONDS``). 0: after
    every epoch."""
    max_failures: int = Field(1, ge=-1)
    """Worker-group restarts Ray Train may attempt (from the latest epoch checkpoint); -1 unlimited."""


class TokenizerConfig(Strict):
    """The ``tokenizer:`` section of a run config."""

    validation_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    """Share of operators held out for validation, chosen by a hash of (seed, operator index)."""
    data_actors: int = Field(1, ge=1, le=1024)
    """Encode tasks of the encoding stage running at once (Ray Data tasks, one CPU each; each worker
    process loads the model once)."""
    cleaning: CleaningConfig = CleaningConfig()
    categories: CategoryConfig = CategoryConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
