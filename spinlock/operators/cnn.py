"""The CNN operator family: a stack of same-padded convolutions with per-operator activation/norm.

Operators with the same (depth, width, kernel_size, padding_mode) form a group. On CUDA a group runs as
*one* grouped convolution per layer: operators are stacked on the channel axis (``groups=G``) and
realizations on the batch axis, so G operators × M realizations cost one conv call per layer. On CPU
the group runs layer by layer, in passes of a few operators, with operators on the batch axis: one
convolution call per operator for wide layers, batched matrix products for narrow ones, one call per
pass for everything else (docs/performance.md, "Rollout engine", has the measurements). Activation
and normalization may differ inside a group; they are applied per operator with masks.

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
from spinlock.operators.activations import ACTIVATIONS
from spinlock.operators.base import BOOLEAN, CATEGORICAL, INTEGRAL, NUMERIC, BatchedGroup, OperatorFamily, ParamRule
from spinlock.operators.dynamics import COMMON_RULES, default_dynamics_space
from spinlock.rng import torch_generator

NORMALIZATIONS = ("none", "instance", "layer")
PADDING_MODES = ("circular", "reflect", "replicate", "zeros")
EPS = 1e-5
# On CUDA a group runs as one grouped convolution per layer ("grouped": operators stacked on the channel
# axis, realizations on the batch axis). On CPU it runs layer-major over passes of a few operators, with
# operators on the batch axis ([G·M, C, H, W]): every elementwise step (padding, normalisation,
# activation) is one call per pass and only the convolutions with per-operator weights loop, because
# oneDNN runs G convolutions of batch M at least as fast as one G-group convolution, fewer shapes need a
# JIT-compiled kernel, and an operator's result then does not depend on which operators share its batch.
# Measurements: docs/performance.md, "Rollout engine".
# oneDNN's direct convolution vectorises over blocks of 16 channels, so on CPU a layer with fewer output
# or input channels (the last one maps back to C = 3, the first comes from it) runs as batched matrix
# products over the pass instead (same maths, another summation order):
#   narrow output, "expand": one matmul to k²·cout channels on the padded input, then the k² shifted
#       slices summed;
#   narrow input, "im2col": the k² shifted copies of the input channels, then one matmul.
# Kernel size 1 is a plain matrix product ("im2col" without copies).
NARROW_CHANNELS = 16
# A CPU pass holds as many operators as keep one padded activation tensor within this many bytes (at
# least one), so that the tensors a layer reads and writes stay in the core's L2 cache.
PASS_BYTES = 1 << 20


def _conv_mode(device: torch.device, k: int, cin: int, cout: int) -> str:
    if device.type != "cpu":
        return "grouped"
    if k == 1 or cin < NARROW_CHANNELS:
        return "im2col"
    return "expand" if cout < NARROW_CHANNELS else "direct"


def _normalize(x: torch.Tensor, kind: str) -> torch.Tensor:
    """x: [.., .., W, H, W'] (operators, realizations) normalised per (realization, operator[, channel])."""
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
        self.grouped = self.modes[0] == "grouped"
        # per operator: [cout, cin, k, k] (grouped, direct), [cout, cin*k*k] (im2col), [k*k*cout, cin] (expand)
        self.weights = [
            torch.stack([
                w.permute(2, 3, 0, 1).reshape(-1, w.shape[1]) if mode == "expand" else
                w.reshape(w.shape[0], -1) if mode == "im2col" else w
                for w in ws
            ]).to(device)
            for mode, ws in zip(self.modes, weights, strict=True)
        ]
        self.biases = [torch.stack(bs).to(device) for bs in biases]  # [G, cout]
        self.device = device
        self._kinds_cache: dict[tuple[int, int], tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = {}

    def _kinds(self, s: int, e: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Which of operators s..e-1 use each normalisation and activation: masks over the operator axis
        (grouped layout) or indices within s..e-1 (CPU layout, see _select)."""
        if (s, e) not in self._kinds_cache:
            def kinds(names: list[str]) -> dict[str, torch.Tensor]:
                if self.grouped:
                    return {n: torch.tensor([x == n for x in names], device=self.device).view(1, len(names), 1, 1, 1)
                            for n in sorted(set(names))}
                return {n: torch.tensor([i for i, x in enumerate(names) if x == n], device=self.device)
                        for n in sorted(set(names))}
            self._kinds_cache[(s, e)] = (kinds(self.norms[s:e]), kinds(self.activations[s:e]))
        return self._kinds_cache[(s, e)]

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        p = self.k // 2
        if p == 0:
            return x.contiguous()  # im2col's as_strided view assumes the contiguous layout
        if self.padding_mode == "zeros":
            return F.pad(x, (p, p, p, p))
        return F.pad(x, (p, p, p, p), mode=self.padding_mode)

    def _select(self, x: torch.Tensor, kinds: dict[str, torch.Tensor], fn) -> torch.Tensor:
        """Apply fn(x, name) per operator according to ``kinds`` (x: the 5-D view of _ops_view).

        Grouped layout: every kind on all operators, merged with masks (few large GPU kernels). CPU
        layout: each kind on its own operators only (a mixed group would otherwise pay every
        activation and normalisation for every operator)."""
        if len(kinds) == 1:
            return fn(x, next(iter(kinds)))
        if self.grouped:
            out = None
            for name, m in kinds.items():
                y = fn(x, name)
                out = y if out is None else torch.where(m, y, out)
            return out
        out = torch.empty_like(x)
        for name, idx in kinds.items():
            out.index_copy_(0, idx, fn(x.index_select(0, idx), name))
        return out

    def _ops_view(self, h: torch.Tensor, M: int, G: int) -> torch.Tensor:
        """The 4-D activations as [M, G, c, H, W] (grouped layout) or [G, M, c, H, W] (CPU layout)."""
        if self.grouped:
            return h.view(M, G, -1, *h.shape[-2:])
        return h.view(G, M, *h.shape[1:])

    def _conv(self, h: torch.Tensor, layer: int, M: int, s: int, e: int) -> torch.Tensor:
        """Layer ``layer`` of operators s..e-1 (G = e - s): [M, G·cin, H, W] → [M, G·cout, H, W] (grouped
        layout) or [G·M, cin, H, W] → [G·M, cout, H, W] (CPU layout)."""
        G, ci, co, k = e - s, self.dims[layer], self.dims[layer + 1], self.k
        w, b = self.weights[layer][s:e], self.biases[layer][s:e]
        hp = self._pad(h)
        mode = self.modes[layer]
        if mode == "grouped":
            return F.conv2d(hp, w.reshape(G * co, ci, k, k), b.reshape(-1), groups=G)
        if mode == "direct":
            return torch.cat([F.conv2d(hp[g * M:(g + 1) * M], w[g], b[g]) for g in range(G)])
        H, W = h.shape[-2:]
        Hp, Wp = hp.shape[-2:]
        if mode == "im2col":  # the k² shifted copies of the few input channels, then one matmul
            st = hp.stride()
            cols = hp.as_strided((G, M, ci, k, k, H, W), (M * st[0], st[0], st[1], st[2], st[3], st[2], st[3]))
            out = torch.matmul(w[:, None], cols.reshape(G, M, ci * k * k, H * W))  # [G, M, co, H*W]
            return (out + b.view(G, 1, co, 1)).view(G * M, co, H, W)
        # expand-shift: one matmul to k²·cout channels, then the k² shifted slices summed
        z = torch.matmul(w[:, None], hp.reshape(G, M, ci, Hp * Wp)).view(G, M, k * k, co, Hp, Wp)
        out = b.view(G, 1, co, 1, 1).expand(G, M, co, H, W).clone()
        for i in range(k * k):
            dy, dx = divmod(i, k)
            out += z[:, :, i, :, dy:dy + H, dx:dx + W]
        return out.view(G * M, co, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        G, M, _, H, W = x.shape
        p = 2 * (self.k // 2)
        per_pass = G if self.grouped else max(
            1, PASS_BYTES // (M * max(self.dims) * (H + p) * (W + p) * x.element_size()))
        if per_pass >= G:
            return self._forward(x, 0, G)
        return torch.cat([self._forward(x[s:s + per_pass], s, min(s + per_pass, G)) for s in range(0, G, per_pass)])

    def _forward(self, x: torch.Tensor, s: int, e: int) -> torch.Tensor:
        """Operators s..e-1, x: [e - s, M, C, H, W]."""
        G, M, C, H, W = x.shape
        norm_kinds, act_kinds = self._kinds(s, e)
        h = x.transpose(0, 1).reshape(M, G * C, H, W) if self.grouped else x.reshape(G * M, C, H, W)
        for layer in range(self.depth):
            h = self._conv(h, layer, M, s, e)
            if layer < self.depth - 1:
                h5 = self._select(self._ops_view(h, M, G), norm_kinds,
                                  lambda t, n: t if n == "none" else _normalize(t, n))
                h5 = self._select(h5, act_kinds, lambda t, a: ACTIVATIONS[a][0](t))
                h = h5.reshape(h.shape)
        out = self._ops_view(h, M, G)
        return out.transpose(0, 1) if self.grouped else out


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
