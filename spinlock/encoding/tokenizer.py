"""A trained tokenizer as one self-describing directory, and the preprocessing shared by train and encode.

Directory layout (``Tokenizer.save`` / ``Tokenizer.load``; nothing else is needed to encode)::

    tokenizer.json    format, spinlock version, config hash, seed, input names, model constructor
                      kwargs (ModelSpec), stream (encoder) names, levels, token layout
    cleaning.npz      the fitted FeatureCleaner (arrays + JSON header, no pickles)
    categories.json   the fitted CategoryDiscovery (feature → category, silhouette scores)
    model.pt          the VQ-VAE state_dict (loaded with weights_only=True)

Tokens of an operator are ``[positions]`` int32, one per informative codebook of the streams (categories,
then ``temporal``, then ``ic``) and levels (1 coarse, 2 medium, 3 fine); which ones is the tokenizer's
:class:`~spinlock.encoding.layout.TokenLayout`, fixed when it was fitted (levels with one code and
codebooks the training operators use one code of are not emitted).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from spinlock import __version__
from spinlock.encoding.categories import CategoryDiscovery
from spinlock.encoding.cleaning import FeatureCleaner
from spinlock.encoding.inputs import prepare_inputs
from spinlock.encoding.layout import TokenLayout
from spinlock.encoding.model import LEVELS, HierarchicalVQVAE, ModelSpec
from spinlock.encoding.schema import META_KEY, FeatureBatch, FeatureSchema
from spinlock.encoding.training import build_model
from spinlock.errors import DataError
from spinlock.storage.layout import CATEGORIES_FILE, CLEANING_FILE, META_FILE, MODEL_FILE

TOKENIZER_FORMAT = 8  # 2: token streams, output heads read the latents too; 3: token layout (informative only);
# 4: linear (PCA-initialised) part of the category encoders, IC-statistics head; 5: levels quantize growing
# prefixes of the latent (LevelQuantizer), tokens allocated per level; 6: PCA-initialised linear part of the
# temporal encoder; 7: one batched quantizer for all streams (StreamQuantizer, state quantizer.levels.*);
# 8: residual levels over the whole latent, streams that open at any level (ModelSpec.stream_components)


@dataclass(frozen=True)
class TokenOutput:
    tokens: np.ndarray
    """[B, positions] int32 code indices (the tokenizer's layout)."""
    embedding: np.ndarray | None
    """[B, 28] float32 learned INITIAL embedding (None without an IC branch)."""


class Tokenizer:
    """Cleaning transform + categories + trained VQ-VAE; ``encode`` maps raw features to tokens."""

    def __init__(self, cleaner: FeatureCleaner, categories: CategoryDiscovery, model: HierarchicalVQVAE,
                 *, config_hash: str, seed: int, ic_shape: tuple[int, int, int] | None,
                 config: dict | None = None, layout: TokenLayout | None = None):
        self.cleaner = cleaner
        self.categories = categories
        self.model = model.eval()
        self.config_hash = config_hash
        self.seed = seed
        self.ic_shape = tuple(ic_shape) if ic_shape is not None else None
        self.config = config or {}
        self.layout = layout if layout is not None else TokenLayout.plan(model.spec)
        """Which codebooks are token positions (default: every level with K >= 2, :meth:`TokenLayout.plan`)."""
        if self.layout.streams != tuple(self.spec.encoder_names):
            raise DataError(f"token layout streams {list(self.layout.streams)} are not the model's"
                            f" {list(self.spec.encoder_names)}")

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec

    @property
    def category_names(self) -> list[str]:
        """Token stream (encoder) names in quantizer order."""
        return list(self.spec.encoder_names)

    @property
    def n_tokens(self) -> int:
        """Token positions per operator (the layout's)."""
        return len(self.layout.positions)

    def inputs(self, batch: FeatureBatch, ic_fields: np.ndarray | None) -> dict[str, np.ndarray]:
        if self.spec.ic_channels:
            if ic_fields is None:
                raise DataError("this tokenizer has an IC branch: pass the initial conditions [B, C, H, W]")
            if tuple(ic_fields.shape[1:]) != self.ic_shape or len(ic_fields) != len(batch):
                raise DataError(f"initial conditions have shape {tuple(ic_fields.shape)}, expected"
                                f" [{len(batch)}, {', '.join(map(str, self.ic_shape))}]")
        return prepare_inputs(self.cleaner, batch, ic_fields if self.spec.ic_channels else None,
                              self.spec.ic_resolution)

    @torch.no_grad()
    def encode(self, batch: FeatureBatch, ic_fields: np.ndarray | None = None,
               batch_size: int = 4096) -> TokenOutput:
        """Tokens for a raw feature block (any status; diverged rows are imputed, see cleaning)."""
        device = next(self.model.parameters()).device
        inputs = self.inputs(batch, ic_fields)
        toks, embs = [], []
        columns = torch.from_numpy(self.layout.columns)
        for lo in range(0, len(batch), batch_size):
            part = {k: torch.from_numpy(v[lo:lo + batch_size]).to(device) for k, v in inputs.items()}
            idx, emb = self.model.encode(part["x"], part.get("temporal"), part.get("ic"))
            toks.append(idx.flatten(1).cpu()[:, columns].to(torch.int32).numpy())
            if emb is not None:
                embs.append(emb.float().cpu().numpy())
        tokens = np.concatenate(toks) if toks else np.zeros((0, self.n_tokens), np.int32)
        emb = (np.concatenate(embs) if embs else np.zeros((0, 28), np.float32)) if self.spec.ic_channels else None
        return TokenOutput(tokens, emb)

    @torch.no_grad()
    def decode(self, tokens: np.ndarray, levels: int = LEVELS, batch_size: int = 16384) -> np.ndarray:
        """[B, D'] float32: the model's reconstruction of the cleaned scalar features from ``tokens``
        [B, positions] (the layout's), using levels 1..``levels`` of every stream (a token prefix)."""
        device = next(self.model.parameters()).device
        full = self.layout.full_codes(np.asarray(tokens))
        out = np.zeros((len(full), self.spec.n_features), np.float32)
        for lo in range(0, len(full), batch_size):
            codes = torch.from_numpy(full[lo:lo + batch_size]).to(device)
            out[lo:lo + len(codes)] = self.model.decode_indices(codes, levels)[0].float().cpu().numpy()
        return out

    def encode_table(self, table: pa.Table, ic_fields: np.ndarray | None = None) -> TokenOutput:
        """Tokens for a feature table; with ``spinlock`` metadata its names must equal the fitted ones."""
        if table.schema.metadata and META_KEY in table.schema.metadata:
            self.cleaner.check_schema(FeatureSchema.from_arrow(table.schema), "feature table")
        return self.encode(self.cleaner.schema.batch_from_arrow(table), ic_fields)

    def to(self, device: torch.device | str) -> Tokenizer:
        self.model.to(device)
        return self

    def digest(self) -> str:
        """Digest of what the tokens mean: the model's weights and the token layout. Stored with the
        tokens (``/tokens`` attribute ``tokenizer_digest``) so they are never decoded by another tokenizer."""
        h = hashlib.blake2b(json.dumps(self.layout.to_json(), sort_keys=True).encode(), digest_size=16)
        for name, v in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.cleaner.save(d / CLEANING_FILE)
        self.categories.save(d / CATEGORIES_FILE)
        torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, d / MODEL_FILE)
        meta = {
            "format": TOKENIZER_FORMAT,
            "spinlock_version": __version__,
            "config_hash": self.config_hash,
            "seed": self.seed,
            "levels": LEVELS,
            "categories": self.category_names,
            "input": {**self.cleaner.schema.to_json(), "ic_shape": list(self.ic_shape) if self.ic_shape else None},
            "spec": self.spec.to_json(),
            "config": self.config,
            "layout": self.layout.to_json(),
        }
        (d / META_FILE).write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: str | Path, device: torch.device | str = "cpu") -> Tokenizer:
        d = Path(directory)
        if not (d / META_FILE).is_file():
            raise DataError(f"{d}: not a tokenizer directory (no {META_FILE})")
        meta = json.loads((d / META_FILE).read_text())
        if meta.get("format") != TOKENIZER_FORMAT:
            raise DataError(f"{d}: tokenizer format {meta.get('format')} (this spinlock reads {TOKENIZER_FORMAT},"
                            " whose token streams open at any level and refine at the finer ones: fit it again with"
                            " 'spinlock tokenize')")
        cleaner = FeatureCleaner.load(d / CLEANING_FILE)
        if cleaner.schema.to_json() != {k: meta["input"][k] for k in ("scalar", "temporal", "temporal_length")}:
            raise DataError(f"{d}: {CLEANING_FILE} and {META_FILE} disagree on the input feature names")
        model = build_model(ModelSpec.from_json(meta["spec"]), meta["seed"])  # weights replaced below
        model.load_state_dict(torch.load(d / MODEL_FILE, map_location="cpu", weights_only=True))
        ic_shape = meta["input"]["ic_shape"]
        return cls(cleaner, CategoryDiscovery.load(d / CATEGORIES_FILE), model.to(device),
                   config_hash=meta["config_hash"], seed=meta["seed"],
                   ic_shape=tuple(ic_shape) if ic_shape else None, config=meta.get("config"),
                   layout=TokenLayout.from_json(meta["layout"], str(d / META_FILE))).to(device)
