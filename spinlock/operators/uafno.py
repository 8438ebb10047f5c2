"""The U-AFNO operator family: a periodic U-Net whose bottleneck mixes tokens with an AFNO block.

Architecture of one operator (C input/output channels, L = ``levels``, c_l = min(width·2^l, 256)):

* lift: 1×1 conv C → c_0;
* encoder stage l = 0..L-1: circular 3×3 conv c_l → c_{l+1}, activation (kept as skip l), 2×2 average
  pool, so the bottleneck grid has n_b = H / 2^L points per side;
* bottleneck (AFNO, Guibas et al. 2021): z = rfft2(h) with ``norm="forward"`` (Fourier-series
  coefficients, so thresholds are in field units whatever the grid); on the retained frequencies
  |k_y| ≤ m, k_x ≤ m (m = ``modes`` ≤ n_b/2) a block-diagonal complex 2-layer MLP with
  ``blocks`` blocks of size c_L/blocks, weights shared across frequencies; complex soft-thresholding
  with λ = ``sparsity``; all other frequencies are zero; h ← h + irfft2(·);
* decoder stage l = L-1..0: nearest 2× upsample, concatenate skip l, circular 3×3 conv 2c_{l+1} → c_l,
  activation;
* projection: 1×1 conv c_0 → C.

AFNO applies ReLU and soft-shrinkage to real and imaginary parts separately; that does not commute
with the phase factor a spatial shift puts on each frequency, so the mixer would not be translation
equivariant. Here the hidden nonlinearity is modReLU z·relu(|z| + b)/|z| (Arjovsky et al. 2016, real
bias b) and sparsity is the complex soft threshold z·relu(|z| − λ)/|z| (proximal map of λ|z|); both
act on the modulus only, so the whole operator commutes with circular shifts by multiples of 2^L.

Weights of operator i are drawn on CPU from the generator keyed (seed, "weights", i): convs
N(0, gain²/fan_in) with gain = ``weight_scale`` × the activation's gain for hidden convs and
``weight_scale`` for lift/projection, conv biases N(0, 0.1²); spectral weights complex with real and
imaginary parts N(0, ``weight_scale``²/(2·bs)) (E|w|² = weight_scale²/bs), modReLU biases N(0, 0.02²).

Operators with equal (levels, width, blocks) run as one group: convs are grouped convolutions
(operators stacked on channels, realizations on the batch axis) and the spectral MLP is one batched
einsum over weights [G, blocks, bs, bs]. Activation, ``modes``, ``sparsity`` and ``weight_scale`` may
differ inside a group (per-operator masks and tensors), so ``modes`` is not part of the group key: the
group computes the spectrum up to its largest m and zeroes each operator's frequencies beyond its own.

The grid must be divisible by 2^levels for every ``levels`` the space can draw; the config is refused
otherwise (:meth:`UAFNOFamily.validate_simulation`), and :meth:`UAFNOGroup.forward` re-checks.

``modes`` above n_b/2 would retain nothing more (every frequency of the bottleneck is already kept), so
such a value would be inert and the stored parameter would not be the one in effect. The sampler
therefore draws ``modes`` only among the configured values that fit the operator's bottleneck
(:meth:`UAFNOFamily.map_dependent`): every drawn value changes the operator and is stored as used. The
group refuses a record whose ``modes`` exceeds n_b/2 rather than clipping it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import product
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from spinlock.config.parameters import ChoiceSpec, ContinuousSpec, IntegerSpec, ParameterSpec
from spinlock.operators.activations import ACTIVATIONS
from spinlock.operators.base import CATEGORICAL, INTEGRAL, NUMERIC, BatchedGroup, OperatorFamily, ParamRule
from spinlock.operators.dynamics import COMMON_RULES, default_dynamics_space
from spinlock.rng import torch_generator

MAX_CHANNELS = 256
"""Channel cap of the encoder (channels double per level up to this)."""
CONV_BIAS_STD = 0.1
SPECTRAL_BIAS_STD = 0.02
_TINY = 1e-30


def channel_plan(width: int, levels: int) -> list[int]:
    """Channels [c_0, ..., c_L] at each resolution: c_l = min(width·2^l, MAX_CHANNELS)."""
    return [min(width * 2**level, MAX_CHANNELS) for level in range(levels + 1)]


def conv_receptive_field(levels: int) -> int:
    """Exact receptive field (input cells along one axis) of the U-Net's convolutional path.

    Intervals of cells are mapped backwards through the layers (3×3 conv: ±1 cell; 2× pool: cell a of
    level l+1 reads cells 2a, 2a+1 of level l; nearest upsample: cell a reads cell ⌊a/2⌋; skip and
    upsampled paths are united) and the widest result over the 2^L output alignments is returned
    (6, 18, 38 for L = 1, 2, 3; pooling makes the width depend on the alignment).
    """

    def pooled(level: int, a: int, b: int) -> tuple[int, int]:  # P_level (lift output at level 0)
        return (a, b) if level == 0 else encoded(level - 1, 2 * a, 2 * b + 1)

    def encoded(level: int, a: int, b: int) -> tuple[int, int]:  # E_level = act(conv(P_level))
        return pooled(level, a - 1, b + 1)

    def decoded(level: int, a: int, b: int) -> tuple[int, int]:  # D_level; D_L is the bottleneck
        if level == levels:
            return pooled(levels, a, b)
        a, b = a - 1, b + 1
        deep, skip = decoded(level + 1, a // 2, b // 2), encoded(level, a, b)
        return min(deep[0], skip[0]), max(deep[1], skip[1])

    return max(hi - lo + 1 for lo, hi in (decoded(0, i, i) for i in range(2**levels)))


def modrelu(z: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """z·relu(|z| + b)/|z|: rescales the modulus, keeps the phase (zero stays zero)."""
    mag = z.abs()
    return z * (torch.relu(mag + bias) / mag.clamp_min(_TINY))


def soft_threshold(z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Complex soft threshold z·relu(|z| − λ)/|z|; λ = 0 is the identity, |z| ≤ λ gives exactly 0."""
    mag = z.abs()
    return z * (torch.relu(mag - lam) / mag.clamp_min(_TINY))


def _per_operator(x: torch.Tensor, masks: dict[str, torch.Tensor], fn: Callable) -> torch.Tensor:
    """Apply fn(x, name) to each operator's slice chosen by masks [1, G, 1, 1, 1] (x: [M, G, c, h, w])."""
    if len(masks) == 1:
        return fn(x, next(iter(masks)))
    out = None
    for name, m in masks.items():
        y = fn(x, name)
        out = y if out is None else torch.where(m, y, out)
    return out


def _normal(g: torch.Generator, *shape: int, std: float) -> torch.Tensor:
    return torch.randn(*shape, generator=g) * std


class UAFNOGroup(BatchedGroup):
    """G U-AFNO operators of one (levels, width, blocks); ``forward`` maps [G, M, C, H, W] → same."""

    def __init__(
        self, records: Sequence[dict[str, Any]], operator_indices: Sequence[int], seed: int, channels: int,
        device: torch.device,
    ):
        r0 = records[0]
        self.G = len(records)
        self.levels, self.width, self.blocks = int(r0["levels"]), int(r0["width"]), int(r0["blocks"])
        self.ch = channel_plan(self.width, self.levels)
        c_b = self.ch[-1]
        if c_b % self.blocks:
            raise ValueError(f"blocks={self.blocks} does not divide the bottleneck channels {c_b}")
        self.bs = c_b // self.blocks
        L, ch = self.levels, self.ch
        parts: dict[str, list[torch.Tensor]] = {}

        def put(name: str, t: torch.Tensor) -> None:
            parts.setdefault(name, []).append(t)

        for rec, op in zip(records, operator_indices, strict=True):
            g = torch_generator(seed, "weights", int(op))
            ws = float(rec["weight_scale"])
            hidden = ws * ACTIVATIONS[rec["activation"]][1]
            put("lift_w", _normal(g, ch[0], channels, 1, 1, std=ws / math.sqrt(channels)))
            put("lift_b", _normal(g, ch[0], std=CONV_BIAS_STD))
            for level in range(L):
                cin, cout = ch[level], ch[level + 1]
                put(f"enc{level}_w", _normal(g, cout, cin, 3, 3, std=hidden / math.sqrt(9 * cin)))
                put(f"enc{level}_b", _normal(g, cout, std=CONV_BIAS_STD))
            spec_std = ws / math.sqrt(2 * self.bs)
            for k in ("w1", "w2"):
                shape = (self.blocks, self.bs, self.bs)
                put(k, torch.complex(_normal(g, *shape, std=spec_std), _normal(g, *shape, std=spec_std)))
            put("b1", _normal(g, self.blocks, self.bs, std=SPECTRAL_BIAS_STD))
            for level in reversed(range(L)):
                cin, cout = 2 * ch[level + 1], ch[level]
                put(f"dec{level}_w", _normal(g, cout, cin, 3, 3, std=hidden / math.sqrt(9 * cin)))
                put(f"dec{level}_b", _normal(g, cout, std=CONV_BIAS_STD))
            put("proj_w", _normal(g, channels, ch[0], 1, 1, std=ws / math.sqrt(ch[0])))
            put("proj_b", _normal(g, channels, std=CONV_BIAS_STD))
        stacked = {"w1", "w2", "b1"}
        # conv weights: [G*cout, cin, k, k] for groups=G; spectral: [G, blocks, bs(, bs)]
        self.params = {
            k: (torch.stack(v) if k in stacked else torch.cat(v)).to(device) for k, v in parts.items()
        }
        self.activations = [r["activation"] for r in records]
        self.act_masks = {
            a: torch.tensor([x == a for x in self.activations], device=device).view(1, self.G, 1, 1, 1)
            for a in sorted(set(self.activations))
        }
        self.modes = torch.tensor([int(r["modes"]) for r in records], device=device)
        self.max_modes = int(self.modes.max())
        self.sparsity = torch.tensor([float(r["sparsity"]) for r in records], device=device)
        self._layouts: dict[int, tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]] = {}

    def _conv(self, h: torch.Tensor, name: str) -> torch.Tensor:
        """Grouped conv of h [M, G*cin, H, W]; 3×3 kernels are circularly padded."""
        w = self.params[f"{name}_w"]
        if w.shape[-1] > 1:
            h = F.pad(h, (1, 1, 1, 1), mode="circular")
        return F.conv2d(h, w, self.params[f"{name}_b"], groups=self.G)

    def _act(self, h: torch.Tensor) -> torch.Tensor:
        M, _, H, W = h.shape
        h5 = h.view(M, self.G, -1, H, W)
        return _per_operator(h5, self.act_masks, lambda t, a: ACTIVATIONS[a][0](t)).reshape(h.shape)

    def _layout(self, n: int, device: torch.device) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]:
        """Per bottleneck size n (cached): retained rows, columns kept (m+1), per-operator frequency mask
        [1, G, 1, 1, Ky, Kx] and the index of -k_y (for the Hermitian part)."""
        if n not in self._layouts:
            if self.max_modes > n // 2:
                raise ValueError(
                    f"modes={self.max_modes} exceeds n_b/2 = {n // 2} of this U-AFNO's {n}×{n} bottleneck"
                    f" (levels={self.levels}): it would keep no more frequencies than modes={n // 2}"
                )
            m = self.max_modes
            rows = torch.unique(torch.arange(-m, m + 1, device=device) % n)  # k_y with |k_y| ≤ m
            ky = torch.where(rows > n // 2, rows - n, rows).abs().view(1, -1, 1)
            kx = torch.arange(m + 1, device=device).view(1, 1, -1)
            mine = self.modes.view(-1, 1, 1)
            keep = ((ky <= mine) & (kx <= mine)).view(1, self.G, 1, 1, len(rows), m + 1)
            neg = (-torch.arange(n, device=device)) % n
            self._layouts[n] = (rows, m + 1, keep, neg)
        return self._layouts[n]

    def spectral(self, h: torch.Tensor) -> torch.Tensor:
        """AFNO spectral branch of bottleneck features h [M, G*c_L, n, n] → [M, G*c_L, n, n] float32."""
        M, _, n, _ = h.shape
        G, k, bs = self.G, self.blocks, self.bs
        rows, Kx, keep, neg = self._layout(n, h.device)
        with torch.autocast(device_type=h.device.type, enabled=False):  # FFTs need fp32 (no bf16 cuFFT)
            X = torch.fft.rfft2(h.float().view(M, G, k * bs, n, n), norm="forward")  # [M, G, c, n, n//2+1]
            z = X.index_select(-2, rows)[..., :Kx].reshape(M, G, k, bs, len(rows), Kx)
            z = torch.einsum("mgkiyx,gkio->mgkoyx", z, self.params["w1"])
            z = modrelu(z, self.params["b1"].view(1, G, k, bs, 1, 1))
            z = torch.einsum("mgkiyx,gkio->mgkoyx", z, self.params["w2"])
            z = soft_threshold(z, self.sparsity.view(1, G, 1, 1, 1, 1)) * keep
            Y = torch.zeros_like(X)
            Y[..., rows, :Kx] = z.reshape(M, G, k * bs, len(rows), Kx)
            # self-conjugate columns (k_x = 0 and Nyquist) get their Hermitian part explicitly: that is
            # what a real inverse keeps, and cuFFT's c2r is unspecified for non-Hermitian input
            for col in sorted({0, n // 2} if n % 2 == 0 else {0}):
                if col < Kx:
                    c = Y[..., col]
                    Y[..., col] = 0.5 * (c + c[..., neg].conj())
            return torch.fft.irfft2(Y, s=(n, n), norm="forward").view(M, G * k * bs, n, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        G, M, C, H, W = x.shape
        step = 2**self.levels
        if H % step or W % step:
            raise ValueError(
                f"simulation.grid={H} is not divisible by 2**levels={step}: a U-AFNO with levels="
                f"{self.levels} halves the grid {self.levels} times (use a grid that is a multiple of {step})"
            )
        h = self._conv(x.transpose(0, 1).reshape(M, G * C, H, W), "lift")
        skips = []
        for level in range(self.levels):
            h = self._act(self._conv(h, f"enc{level}"))
            skips.append(h)
            h = F.avg_pool2d(h, 2)
        h = h + self.spectral(h).to(h.dtype)
        for level in reversed(range(self.levels)):
            up = F.interpolate(h, scale_factor=2, mode="nearest")
            c, hh, ww = self.ch[level + 1], up.shape[-2], up.shape[-1]
            cat = torch.cat([up.view(M, G, c, hh, ww), skips[level].view(M, G, c, hh, ww)], dim=2)
            h = self._act(self._conv(cat.view(M, G * 2 * c, hh, ww), f"dec{level}"))
        h = self._conv(h, "proj")
        return h.view(M, G, C, H, W).transpose(0, 1)


def max_modes(grid: int, levels: int) -> int:
    """Largest effective ``modes`` of a U-AFNO with ``levels`` on ``grid``: n_b/2, n_b = grid / 2^levels."""
    return grid // 2**levels // 2


def _describe(spec: ParameterSpec) -> str:
    return f"[{spec.low}, {spec.high}]" if isinstance(spec, IntegerSpec) else str(list(spec.values))


def _integer_values(name: str, spec: ParameterSpec) -> list[int]:
    """Every value an INTEGRAL spec can produce (for cross-parameter checks)."""
    vals = list(range(spec.low, spec.high + 1)) if isinstance(spec, IntegerSpec) else list(spec.values)
    bad = [v for v in vals if float(v) != int(v)]
    if bad:
        raise ValueError(f"parameters.{name}: values must be integers, got {bad}")
    return [int(v) for v in vals]


class UAFNOFamily(OperatorFamily):
    name = "uafno"
    rules = {
        "levels": ParamRule(INTEGRAL, low=1, high=3, doc="U-Net levels (grid must be divisible by 2^levels)"),
        "width": ParamRule(INTEGRAL, low=1, high=128, doc="channels after the lift (doubled per level, cap 256)"),
        "modes": ParamRule(INTEGRAL, low=1, high=512,
                           doc="retained |k| per axis in the bottleneck; drawn among the values ≤ n_b/2"),
        "blocks": ParamRule(INTEGRAL, low=1, high=256, doc="AFNO block-diagonal blocks (divide c_L)"),
        "sparsity": ParamRule(NUMERIC, low=0.0, high=100.0, doc="soft-threshold λ on Fourier coefficients"),
        "activation": ParamRule(CATEGORICAL, allowed=list(ACTIVATIONS), doc="encoder/decoder activation"),
        "weight_scale": ParamRule(NUMERIC, low=1e-3, high=100.0, doc="init gain multiplier"),
        **COMMON_RULES,
    }

    def default_space(self) -> dict[str, ParameterSpec]:
        return {
            "levels": IntegerSpec(type="integer", low=1, high=2),
            "width": ChoiceSpec(type="choice", values=[8, 16]),
            "modes": IntegerSpec(type="integer", low=2, high=8),
            "blocks": ChoiceSpec(type="choice", values=[1, 2, 4]),
            "sparsity": ContinuousSpec(type="continuous", low=0.0, high=0.05),
            "activation": ChoiceSpec(type="choice", values=["relu", "gelu", "tanh", "sin"]),
            # no normalization layers: gains compound over 2L+4 layers, so the useful band is narrower
            # than the CNN's (at 0.5-2.0 about a fifth of operators diverge on the quickstart)
            "weight_scale": ContinuousSpec(type="continuous", low=0.6, high=1.25, scale="log"),
            **default_dynamics_space(),
        }

    def validate_simulation(self, space: dict[str, ParameterSpec], grid: int, channels: int) -> None:
        """Grid divisible by 2^levels, and for every reachable ``levels`` some ``modes`` value that fits."""
        levels = _integer_values("levels", space["levels"])
        deepest = max(levels)
        if grid % (2**deepest):
            raise ValueError(
                f"simulation.grid={grid} is not divisible by 2**levels={2**deepest} (parameters.levels can be"
                f" {deepest}); use a grid that is a multiple of {2**deepest} or lower parameters.levels"
            )
        mspec = space["modes"]
        modes = _integer_values("modes", mspec)
        if isinstance(mspec, ChoiceSpec):  # a value of weight 0 is never drawn
            modes = [v for v, p in zip(modes, mspec.probabilities(), strict=True) if p > 0]
        for lv in sorted(set(levels)):
            cap = max_modes(grid, lv)
            if min(modes) > cap:
                raise ValueError(
                    f"parameters.modes: no value of {_describe(space['modes'])} fits levels={lv} on"
                    f" simulation.grid={grid}: the bottleneck is {grid // 2**lv}×{grid // 2**lv}, so modes"
                    f" ≤ {cap}; allow smaller modes, a larger grid or fewer levels"
                )

    def map_dependent(self, space: dict[str, ParameterSpec], unit: np.ndarray, values: np.ndarray, grid: int) -> None:
        """Draw ``modes`` among the configured values ≤ n_b/2 of each row's ``levels`` (same weights).

        Rows whose bottleneck holds every configured value keep ``spec.map(u)`` unchanged; others map u
        onto the fitting values only (a fixed ``modes`` fits every level: see ``validate_simulation``).
        """
        names = list(space)
        jm, jl = names.index("modes"), names.index("levels")
        spec, lspec = space["modes"], space["levels"]
        if spec.is_fixed:
            return
        options = _integer_values("modes", spec)
        lv = values[:, jl].astype(int)
        if isinstance(lspec, ChoiceSpec):
            lv = np.asarray(lspec.values, dtype=int)[lv]
        for level in np.unique(lv):
            cap = max_modes(grid, int(level))
            if max(options) <= cap:
                continue
            rows = lv == level
            u = unit[rows, jm]
            if isinstance(spec, IntegerSpec):
                values[rows, jm] = IntegerSpec(type="integer", low=spec.low, high=cap).map(u)
            else:
                keep = [i for i, v in enumerate(options) if v <= cap]
                w = spec.probabilities()[keep]
                sub = ChoiceSpec(type="choice", values=keep, weights=w.tolist()).map(u).astype(int)
                values[rows, jm] = np.asarray(keep, dtype=float)[sub]

    def validate_space(self, space: dict[str, ParameterSpec]) -> None:
        """Per-parameter rules, then: every (width, levels, blocks) the space can draw has blocks | c_L."""
        super().validate_space(space)
        widths = _integer_values("width", space["width"])
        levels = _integer_values("levels", space["levels"])
        blocks = _integer_values("blocks", space["blocks"])
        for w, lv, b in product(widths, levels, blocks):
            c_b = channel_plan(w, lv)[-1]
            if c_b % b:
                raise ValueError(
                    f"parameters.blocks: {b} does not divide the bottleneck channels {c_b} of width={w},"
                    f" levels={lv} (c_L = min(width·2^levels, {MAX_CHANNELS})); use blocks that divide"
                    " every reachable c_L"
                )
        _integer_values("modes", space["modes"])

    def group_key(self, record: dict[str, Any]) -> tuple:
        return (int(record["levels"]), int(record["width"]), int(record["blocks"]))

    def build_group(self, records, operator_indices, seed, channels, device) -> UAFNOGroup:
        return UAFNOGroup(records, operator_indices, seed, channels, device)

    def derived(self, record: dict[str, Any], channels: int) -> dict[str, float]:
        """log10 real parameter count (complex = 2); receptive field of the convolutional path (see
        :func:`conv_receptive_field`: the spectral branch is global on any grid and is not counted, which
        keeps the value grid-independent and comparable with the CNN's); effective depth = weight layers
        on the deepest path, 2L + 4 (lift, L encoder convs, two spectral layers, L decoder convs,
        projection); weight gain = weight_scale × activation gain."""
        L, blocks = int(record["levels"]), int(record["blocks"])
        ch = channel_plan(int(record["width"]), L)
        bs = ch[-1] // blocks
        params = channels * ch[0] + ch[0] + ch[0] * channels + channels
        params += sum(9 * ch[i] * ch[i + 1] + ch[i + 1] for i in range(L))  # encoder
        params += sum(9 * 2 * ch[i + 1] * ch[i] + ch[i] for i in range(L))  # decoder
        params += 2 * 2 * blocks * bs * bs + blocks * bs  # complex w1, w2; real modReLU bias
        return {
            "log_param_count": math.log10(params),
            "receptive_field": float(conv_receptive_field(L)),
            "effective_depth": float(2 * L + 4),
            "weight_gain": float(record["weight_scale"]) * ACTIVATIONS[record["activation"]][1],
        }
