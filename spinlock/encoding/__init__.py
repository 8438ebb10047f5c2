"""Tokenizer cores (plain Python/torch, no Ray): cleaning, category discovery, hierarchical VQ-VAE.

Modules: ``schema`` (feature-table names and blocks), ``split`` (train/validation by hash),
``sketch`` (mergeable streaming statistics), ``cleaning`` (FeatureCleaner), ``categories``
(CategoryDiscovery), ``model`` (HierarchicalVQVAE), ``training`` (the training loop), ``metrics``
(validation R², codebook usage), ``tokenizer`` (the saved Tokenizer), ``layout`` (which codebooks are
token positions), ``icfields`` (IC reader), ``outputs`` (tokens into dataset.h5 / Parquet). The Ray
edges live in ``spinlock.distributed``; docs/tokenizer.md describes the stage.
"""

from spinlock.encoding.categories import CategoryDiscovery
from spinlock.encoding.cleaning import FeatureCleaner
from spinlock.encoding.model import HierarchicalVQVAE, ModelSpec
from spinlock.encoding.schema import FeatureBatch, FeatureNameMismatch, FeatureSchema
from spinlock.encoding.split import Split
from spinlock.encoding.tokenizer import Tokenizer

__all__ = ["CategoryDiscovery", "FeatureBatch", "FeatureCleaner", "FeatureNameMismatch", "FeatureSchema",
           "HierarchicalVQVAE", "ModelSpec", "Split", "Tokenizer"]
