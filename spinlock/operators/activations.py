"""Hidden activations every operator family may use: name → (function, standard gain).

The gain is the factor that keeps activations' variance through a layer of N(0, gain²/fan_in) weights
(He for ReLU-like, 5/3 for tanh, 1 for sin); families multiply it by their sampled ``weight_scale``.
A leaf module, so families share one table without importing each other.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ACTIVATIONS = {
    "relu": (F.relu, math.sqrt(2.0)),
    "gelu": (F.gelu, math.sqrt(2.0)),
    "silu": (F.silu, math.sqrt(2.0)),
    "tanh": (torch.tanh, 5.0 / 3.0),
    "sin": (torch.sin, 1.0),
}
