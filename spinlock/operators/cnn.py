"""The CNN operator family: a stack of same-padded convolutions with per-operator activation/norm.

Operators with the same (depth, width, kernel_size, padding_mode) form a group. On CUDA a group runs as
*one* grouped convolution per layer: operators are stacked on the channel axis (``groups=G``) and
realizations on the batch axis, so G operators × M realizations cost one conv call per layer. On CPU
the group is split into chunks of ``CPU_CHUNK`` operators (measured below). Activation and
normalization may differ inside a group; they are applied per operator with masks.

Layer l (0-based, L = depth layers): conv → [norm → activation] for l < L-1; the last conv maps back
to C channels with no norm/activation. Weights: N(0, gain² / fan_in) with ``gain = weight_scale`` times
the activation's standard gain, drawn on CPU from the generator keyed (seed, "weights", operator).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from spinlock.config.parameters import BooleanSpec, ChoiceSpec, ContinuousSpec, IntegerSpec, ParameterSpec
from spinlock.operators.dynamics import COMMON_RULES, default_dynamics_space
from spinlock.operators.registry import (
    BOOLEAN,
    CATEGORICAL,
    INTEGRAL,
    NUMERIC,
    BatchedGroup,
    OperatorFamily,
    ParamRule,
    register_family,
)
from spinlock.rng import torch_generator

ACTIVATIONS = {
    "relu": (F.relu, math.sqrt(2.0)),
    "gelu": (F.gelu, math.sqrt(2.0)),
    "silu": (F.silu, math.sqrt(2.0)),
    "tanh": (torch.tanh, 5.0 / 3.0),
    "sin": (torch.sin, 1.0),
}
NORMALIZATIONS = ("none", "instance", "layer")
PADDING_MODES = ("circular", "reflect", "replicate", "zeros")
EPS = 1e-5
# Operators per convolution call on CPU. oneDNN runs G separate convolutions of batch M at least as
# fast as one grouped convolution with G groups (2-core x86 VM, 16 same-shape operators × 2
# realizations, 32², width 32: per-operator 2.9–3.3k sample-steps/s vs grouped-16 2.1–2.2k; mixed
# quickstart batches 3.4k vs 3.1k), fewer shapes need a JIT-compiled kernel, and an operator's result
# no longer depends on which operators share its batch. GPUs want the whole group in one call.
CPU_CHUNK = 1
# oneDNN's direct convolution vectorises over blocks of 16 channels; a layer with fewer output or input
# channels (the last layer maps back to C = 3, the first one comes from it) wastes most of each vector.
# On CPU such layers run as plain matrix products instead (same maths, different summation order: max
# difference ~3e-5 at 32² for C = 3, width 32). Measured on the 2-core x86 VM, one thread, batch M = 2,
# 32², width 32 (direct conv → replacement):
#   narrow output, "expand": one 1×1 conv to k²·cout channels, then the k² shifted slices summed:
#       k=3 187 → 90 µs, k=5 375 → 233 µs;
#   narrow input, "im2col": the k² shifted copies of the input channels, then one matmul:
#       k=3 90 → 46 µs, k=5 129 → 98 µs.
NARROW_CHANNELS = 16


def _conv_mode(device: torch.device, k: int, cin: int, cout: int) -> str:
    if device.type != "cpu" or k == 1:
        return "direct"
    if cout < NARROW_CHANNELS:
        return "expand"
    return "im2col" if cin < NARROW_CHANNELS else "direct"


def _normalize(x: torch.Tensor, kind: str) -> torch.Tensor:
    """x: [M, G, W, H, W'] normalised per (realization, operator[, channel])."""
    dims = (-2, -1) if kind == "instance" else (-3, -2, -1)
    mean = x.mean(dim=dims, keepdim=True)
    var = (x - mean).pow(2).mean(dim=dims, keepdim=True)
    return (x - mean) / torch.sqrt(var + EPS)


class CNNGroup(BatchedGroup):
    def __init__(
        self, records: Sequence[dict[str, Any]], operator_indices: Sequence[int], seed: int, channels: int,
        device: torch.device,
    ):
        r0 = records[0]
        self.G = len(records)
        self.depth, self.width, self.k = int(r0["depth"]), int(r0["width"]), int(r0["kernel_size"])
        self.padding_mode = r0["padding_mode"]
        self.activations = [r["activation"] for r in records]
        self.norms = [r["normalization"] for r in records]
        dims = [channels] + [self.width] * (self.depth - 1) + [channels]
        self.dims = dims
        weights: list[list[torch.Tensor]] = [[] for _ in range(self.depth)]
        biases: list[list[torch.Tensor]] = [[] for _ in range(self.depth)]
        for rec, op in zip(records, operator_indices, strict=True):
            g = torch_generator(seed, "weights", int(op))
            act_gain = ACTIVATIONS[rec["activation"]][1]
            for layer in range(self.depth):
                cin, cout = dims[layer], dims[layer + 1]
                fan_in = cin * self.k * self.k
                gain = float(rec["weight_scale"]) * (act_gain if layer < self.depth - 1 else 1.0)
                w = torch.randn(cout, cin, self.k, self.k, generator=g) * (gain / math.sqrt(fan_in))
                b = torch.randn(cout, generator=g) * 0.1
                weights[layer].append(w)
                biases[layer].append(b if rec["bias"] else torch.zeros(cout))
        self.modes = [_conv_mode(device, self.k, dims[layer], dims[layer + 1]) for layer in range(self.depth)]
        # per operator: [G, cout, cin, k, k] (direct), [G, cout, cin*k*k] (im2col), [G, k*k*cout, cin] (expand)
        self.weights = [
            torch.stack([
                w.permute(2, 3, 0, 1).reshape(-1, w.shape[1]) if mode == "expand" else
                w.reshape(w.shape[0], -1) if mode == "im2col" else w
                for w in ws
            ]).to(device)
            for mode, ws in zip(self.modes, weights, strict=True)
        ]
        self.biases = [torch.cat(bs).to(device) for bs in biases]
        self.chunk = self.G if device.type == "cuda" else CPU_CHUNK
        dev = device
        self.act_masks = {
            a: torch.tensor([x == a for x in self.activations], device=dev).view(1, self.G, 1, 1, 1)
            for a in sorted(set(self.activations))
        }
        self.norm_masks = {
            n: torch.tensor([x == n for x in self.norms], device=dev).view(1, self.G, 1, 1, 1)
            for n in sorted(set(self.norms))
        }
        # per chunk: the masks restricted to its operators, keeping only kinds present in the chunk
        self.chunk_masks = [
            tuple(
                {k: m[:, s:s + self.chunk] for k, m in masks.items() if k in names[s:s + self.chunk]}
                for masks, names in ((self.norm_masks, self.norms), (self.act_masks, self.activations))
            )
            for s in range(0, self.G, self.chunk)
        ]

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        p = self.k // 2
        if self.padding_mode == "zeros":
            return F.pad(x, (p, p, p, p))
        return F.pad(x, (p, p, p, p), mode=self.padding_mode)

    def _select(self, x: torch.Tensor, masks: dict[str, torch.Tensor], fn) -> torch.Tensor:
        """Apply fn(x, name) per operator according to masks (x: [M, G, W, H, W'])."""
        if len(masks) == 1:
            return fn(x, next(iter(masks)))
        out = None
        for name, m in masks.items():
            y = fn(x, name)
            out = y if out is None else torch.where(m, y, out)
        return out

    def _conv(self, h: torch.Tensor, layer: int, s: int, e: int) -> torch.Tensor:
        """Layer ``layer`` for operators s..e-1, h: [M, g*cin, H, W] → [M, g*cout, H, W]."""
        g, ci, co, k = e - s, self.dims[layer], self.dims[layer + 1], self.k
        w, b = self.weights[layer][s:e], self.biases[layer][s * co:e * co]
        hp = self._pad(h)
        mode = self.modes[layer]
        if mode == "direct":
            return F.conv2d(hp, w.reshape(g * co, ci, k, k), b, groups=g)
        M, _, H, W = h.shape
        if mode == "im2col":  # the k² shifted copies of the few input channels, then one matmul
            st = hp.stride()
            cols = hp.as_strided((M, g * ci, k, k, H, W), (st[0], st[1], st[2], st[3], st[2], st[3]))
            out = torch.matmul(w, cols.reshape(M, g, ci * k * k, H * W))  # [M, g, co, H*W]
            return (out + b.view(1, g, co, 1)).view(M, g * co, H, W)
        # expand-shift: one 1×1 conv to k²·cout channels, then the k² shifted slices summed
        z = F.conv2d(hp, w.reshape(g * k * k * co, ci, 1, 1), groups=g).view(M, g, k * k, co, H + k - 1, W + k - 1)
        out = b.view(1, g, co, 1, 1).expand(M, g, co, H, W).clone()
        for i in range(k * k):
            dy, dx = divmod(i, k)
            out += z[:, :, i, :, dy:dy + H, dx:dx + W]
        return out.view(M, g * co, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        G, M, C, H, W = x.shape
        outs = []
        for s in range(0, G, self.chunk):
            e = min(s + self.chunk, G)
            g = e - s
            h = x[s:e].transpose(0, 1).reshape(M, g * C, H, W)
            for layer in range(self.depth):
                h = self._conv(h, layer, s, e)
                if layer < self.depth - 1:
                    co = self.dims[layer + 1]
                    h5 = h.view(M, g, co, H, W)
                    norm_masks, act_masks = self.chunk_masks[s // self.chunk]
                    h5 = self._select(h5, norm_masks, lambda t, n: t if n == "none" else _normalize(t, n))
                    h5 = self._select(h5, act_masks, lambda t, a: ACTIVATIONS[a][0](t))
                    h = h5.reshape(M, g * co, H, W)
            outs.append(h.view(M, g, C, H, W))
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        return out.transpose(0, 1)


class CNNFamily(OperatorFamily):
    name = "cnn"
    rules = {
        "depth": ParamRule(INTEGRAL, low=2, high=12, doc="number of conv layers (>= 2)"),
        "width": ParamRule(INTEGRAL, low=1, high=512, doc="hidden channels"),
        "kernel_size": ParamRule(CATEGORICAL, allowed=[1, 3, 5, 7, 9], doc="odd conv kernel size"),
        "activation": ParamRule(CATEGORICAL, allowed=list(ACTIVATIONS), doc="hidden activation"),
        "normalization": ParamRule(CATEGORICAL, allowed=list(NORMALIZATIONS), doc="hidden normalization"),
        "padding_mode": ParamRule(CATEGORICAL, allowed=list(PADDING_MODES), doc="conv padding"),
        "weight_scale": ParamRule(NUMERIC, low=1e-3, high=100.0, doc="init gain multiplier"),
        "bias": ParamRule(BOOLEAN, doc="whether convs have (random) biases"),
        **COMMON_RULES,
    }

    def default_space(self) -> dict[str, ParameterSpec]:
        return {
            "depth": IntegerSpec(type="integer", low=2, high=4),
            "width": ChoiceSpec(type="choice", values=[16, 32]),
            "kernel_size": ChoiceSpec(type="choice", values=[3, 5]),
            "activation": ChoiceSpec(type="choice", values=["relu", "gelu", "tanh", "sin"]),
            "normalization": ChoiceSpec(type="choice", values=["none", "instance", "layer"]),
            "padding_mode": ChoiceSpec(type="choice", values=["circular"]),
            "weight_scale": ContinuousSpec(type="continuous", low=0.5, high=2.0, scale="log"),
            "bias": BooleanSpec(type="boolean"),
            **default_dynamics_space(),
        }

    def group_key(self, record: dict[str, Any]) -> tuple:
        return (int(record["depth"]), int(record["width"]), int(record["kernel_size"]), record["padding_mode"])

    def build_group(self, records, operator_indices, seed, channels, device) -> CNNGroup:
        return CNNGroup(records, operator_indices, seed, channels, device)

    def derived(self, record: dict[str, Any], channels: int) -> dict[str, float]:
        d, w, k = int(record["depth"]), int(record["width"]), int(record["kernel_size"])
        dims = [channels] + [w] * (d - 1) + [channels]
        params = sum(dims[i] * dims[i + 1] * k * k + (dims[i + 1] if record["bias"] else 0) for i in range(d))
        return {
            "log_param_count": math.log10(params),
            "receptive_field": float(d * (k - 1) + 1),
            "effective_depth": float(d),
            "weight_gain": float(record["weight_scale"]) * ACTIVATIONS[record["activation"]][1],
        }


CNN = register_family(CNNFamily())
