"""Tokenizer cores (plain Python/torch, no Ray): cleaning, category discovery, hierarchical VQ-VAE.

Modules: ``schema`` (feature-table names and blocks), ``split`` (train/validation by hash),
``sketch`` (mergeable streaming statistics), ``cleaning`` (FeatureCleaner), ``categories``
(CategoryDiscovery), ``model`` (HierarchicalVQVAE), ``plan`` (the model spec sized to the data),
``training`` (the training loop), ``metrics`` (validation R², codebook usage), ``tokenizer`` (the saved
Tokenizer), ``layout`` (which codebooks are token positions), ``icfields`` (IC reader), ``outputs``
(tokens into dataset.h5 / Parquet), ``search`` (nearest behaviour: distance between decoded tokens, faiss
index). The Ray edges live in ``spinlock.distributed``; docs/tokenizer.md
describes the stage.
"""

import importlib

_EXPORTS = {"CategoryDiscovery": "categories", "FeatureBatch": "schema", "FeatureCleaner": "cleaning",
            "FeatureNameMismatch": "schema", "FeatureSchema": "schema", "HierarchicalVQVAE": "model",
            "ModelSpec": "model", "Split": "split", "Tokenizer": "tokenizer"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import a class's module on first use (PEP 562), so importing one submodule (a Ray Data task
    unpickling a cleaner) does not import scikit-learn, SciPy and the quantizer library."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
