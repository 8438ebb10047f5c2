"""Feature extraction: INITIAL, ARCHITECTURE, SUMMARY and TEMPORAL families behind one name registry.

SUMMARY and TEMPORAL are computed inline by :class:`FeatureObserver` during the rollout; INITIAL and
ARCHITECTURE from the IC and the parameter record. docs/features.md defines every column.
"""

from spinlock.features.architecture import extract_architecture
from spinlock.features.batch import batch_features
from spinlock.features.block import FeatureBlock
from spinlock.features.initial import extract_initial
from spinlock.features.names import feature_names, temporal_steps
from spinlock.features.observer import FeatureObserver

__all__ = [
    "FeatureBlock",
    "FeatureObserver",
    "batch_features",
    "extract_architecture",
    "extract_initial",
    "feature_names",
    "temporal_steps",
]
