"""Counter-based randomness keyed by (seed, stream, operator, realization, step).

Every random draw in Spinlock comes from here. A draw is a pure function of its key, never of global
RNG state, batch position, thread timing or device, so an operator produces the same numbers whatever
shard, batch or worker it lands in.

Two layers:

* :func:`derive_key` hashes a tuple ``(seed, stream, *counters)`` to a 63-bit integer (BLAKE2b, so
  distinct tuples give independent keys; no ``seed + i`` overlaps between streams or steps).
* :class:`BatchRandom` turns one key per sample into vectorised tensors on any device with a
  SplitMix64-style integer hash of ``(key, call, element)``. Integer arithmetic is exact on CPU and
  CUDA, so ``uniform64``/``integers`` draws are identical on both. The per-step noise draws
  (``normal``, ``laplace``) split each 64-bit hash into two 32-bit halves and work in float32:
  the rollout draws B·M·C·H·W of them every step, and this costs half a hash per value.

The bits → value conversions are pure functions (``*_from_bits``) that are finite for every 64-bit input,
extremes included (``tests/test_rng_extremes.py`` feeds them; ``bench/rng_finite.py`` counts non-finite
draws over 1e9 hashes per sampler).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch

_MASK63 = (1 << 63) - 1


def derive_key(seed: int, stream: str, *counters: int) -> int:
    """Stable 63-bit key for ``(seed, stream, *counters)``; counters must be non-negative ints."""
    h = hashlib.blake2b(digest_size=8)
    h.update(int(seed).to_bytes(8, "little", signed=True))
    h.update(stream.encode())
    for c in counters:
        if int(c) < 0:
            raise ValueError(f"counter must be >= 0, got {c} in stream {stream!r}")
        h.update(b"|" + int(c).to_bytes(8, "little"))
    return int.from_bytes(h.digest(), "little") & _MASK63


def numpy_rng(seed: int, stream: str, *counters: int) -> np.random.Generator:
    """A numpy Generator (PCG64) for one key, for small host-side draws."""
    return np.random.Generator(np.random.PCG64(derive_key(seed, stream, *counters)))


def torch_generator(seed: int, stream: str, *counters: int) -> torch.Generator:
    """A CPU torch.Generator for one key (weights are drawn on CPU, then moved to the device)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(derive_key(seed, stream, *counters))
    return g


def _signed(c: int) -> int:
    return c - (1 << 64) if c >= (1 << 63) else c


_C1 = _signed(0xBF58476D1CE4E5B9)
_C2 = _signed(0x94D049BB133111EB)
_GOLDEN = _signed(0x9E3779B97F4A7C15)


def _lsr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser on int64 tensors (wrapping multiply)."""
    x = x ^ _lsr(x, 30)
    x = x * _C1
    x = x ^ _lsr(x, 27)
    x = x * _C2
    return x ^ _lsr(x, 31)


class BatchRandom:
    """Vectorised draws for a batch where sample ``b`` is driven only by ``keys[b]``.

    Each method call consumes one *call index*; element ``i`` of sample ``b`` in call ``c`` is
    ``hash(keys[b], c, i)``. Two batches that contain the same key produce the same values for it as
    long as the same sequence of calls with the same per-sample shapes is made.
    """

    def __init__(self, keys: Sequence[int] | torch.Tensor, device: torch.device | str = "cpu"):
        k = torch.as_tensor(list(keys) if not isinstance(keys, torch.Tensor) else keys, dtype=torch.int64)
        self.device = torch.device(device)
        self.keys = k.to(self.device)
        self._call = 0

    def spawn(self, counter: int) -> BatchRandom:
        """Child streams (e.g. one per step): keys mixed with ``counter``, independent of calls made."""
        c = torch.tensor(2 * int(counter), dtype=torch.int64, device=self.device)
        return BatchRandom(mix64(mix64(self.keys) ^ mix64(c + _GOLDEN)), self.device)

    def subset(self, rows: torch.Tensor) -> BatchRandom:
        """The same streams for a subset of samples, at the same call index (draws equal the full
        batch's rows ``rows``), so work can be spent only where a draw is needed."""
        sub = BatchRandom(self.keys.index_select(0, rows.to(self.device)), self.device)
        sub._call = self._call
        return sub

    @property
    def batch(self) -> int:
        return int(self.keys.shape[0])

    def _bits(self, shape: Sequence[int]) -> torch.Tensor:
        """[B, *shape] int64 of 64 random bits each."""
        shape = tuple(int(s) for s in shape)
        n = math.prod(shape)
        call = self._call
        self._call += 1
        base = mix64(self.keys ^ mix64(torch.tensor(call * 2 + 1, dtype=torch.int64, device=self.device)))
        idx = torch.arange(n, dtype=torch.int64, device=self.device)
        x = base[:, None] + (idx[None, :] + 1) * _GOLDEN
        return mix64(x).reshape(self.batch, *shape)

    def uniform(self, *shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        """[B, *shape] float32 uniform strictly inside (low, high) (53-bit resolution, rounded to float32)."""
        return uniform_from_bits(self._bits(shape), low, high)

    def uniform64(self, *shape: int) -> torch.Tensor:
        """[B, *shape] float64 in the open interval (0, 1), symmetric about 1/2."""
        return uniform64_from_bits(self._bits(shape))

    def _pairs(self, shape: Sequence[int], convert) -> torch.Tensor:
        """Two float32 values per 64-bit hash (``convert(bits)`` → pair), cut to [B, *shape]."""
        n = math.prod(int(s) for s in shape)
        a, b = convert(self._bits(((n + 1) // 2,)))
        return torch.cat([a, b], dim=1)[:, :n].reshape(self.batch, *(int(s) for s in shape))

    def normal(self, *shape: int) -> torch.Tensor:
        """[B, *shape] float32 standard normal (see :func:`normal_pair_from_bits`)."""
        return self._pairs(shape, normal_pair_from_bits)

    def integers(self, low: int, high: int, *shape: int) -> torch.Tensor:
        """[B, *shape] int64 uniform in [low, high)."""
        if high <= low:
            raise ValueError(f"empty integer range [{low}, {high})")
        return integers_from_bits(self._bits(shape), low, high)

    def laplace(self, *shape: int) -> torch.Tensor:
        """[B, *shape] float32 Laplace with unit variance (see :func:`laplace_pair_from_bits`)."""
        return self._pairs(shape, laplace_pair_from_bits)


# Bits → values. Pure functions of an int64 tensor of 64 random bits per element, so tests can feed the
# extreme inputs (0, -1, 2^63-1, ...) that a hash reaches only once in 2^32 or 2^64 draws. Each one is
# finite for every input: no rounding can reach a pole of log/log1p.


def uniform64_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """float64 (2k+1)·2^-53 from the top 52 bits k: exact, in [2^-53, 1 - 2^-53], symmetric about 1/2.

    (k + 1/2)·2^-53 from 53 bits is not exact: the top value rounds to 1.0.
    """
    return (2.0 * _lsr(bits, 12).double() + 1.0) * 2.0**-53


def uniform_from_bits(bits: torch.Tensor, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """float32 in the open (low, high): the float64 value, rounded, then kept off the endpoints (a value
    within half a float32 step of an endpoint would round onto it)."""
    v = (low + (high - low) * uniform64_from_bits(bits)).float()
    lo, hi = np.float32(low), np.float32(high)
    return v.clamp(float(np.nextafter(lo, hi)), float(np.nextafter(hi, lo)))


def integers_from_bits(bits: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """int64 uniform in [low, high): floor of a 52-bit uniform (each value's probability is off by at most a
    relative (high - low)·2^-52)."""
    return (low + torch.floor(uniform64_from_bits(bits) * (high - low))).long().clamp_(low, high - 1)


def normal_pair_from_bits(bits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two float32 standard normals per 64-bit hash: Box-Muller in float32 on its two 32-bit halves.

    The radius uniform u1 = (k + 1/2)·2^-32 lies in [2^-33, 1] after float32 rounding, never 0, so
    r = sqrt(-2 ln u1) is finite and at most 6.77 (a radius tail of probability 2^-33); the angle uniform may
    round to 1.0, which is harmless. Two hashes and a float64 Box-Muller per value would cost 4× more
    (measured 2.0 ms → 0.5 ms for 32×3×32² normals on a 2-core x86 VM).
    """
    u1 = (_lsr(bits, 32).float() + 0.5) * 2.0**-32
    u2 = ((bits & 0xFFFFFFFF).float() + 0.5) * 2.0**-32
    r = torch.sqrt(-2.0 * torch.log(u1))
    theta = (2.0 * math.pi) * u2
    return r * torch.cos(theta), r * torch.sin(theta)


_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def _laplace32(half: torch.Tensor) -> torch.Tensor:
    """Laplace (unit variance) from 32 bits: the top bit is the sign, the low 31 bits k an exponential
    E = -ln((k + 1/2)·2^-31) in [0, 22.2] (u > 0 and float32 rounding stops at u = 1, E = 0)."""
    log_u = torch.bitwise_and(half, 0x7FFFFFFF).float().add_(0.5).mul_(2.0**-31).log_()  # -E
    # -sign/√2 in {-1/√2 (top bit 0), +1/√2 (top bit 1)}; ``half`` < 2^32, so half >> 31 is the top bit
    # (in-place steps: 20 % faster than the plain expression, as fast as the old inverse CDF)
    return log_u.mul_((half >> 31).float().mul_(2.0 * _INV_SQRT2).sub_(_INV_SQRT2))


def laplace_pair_from_bits(bits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two float32 unit-variance Laplace values (scale 1/sqrt 2) per 64-bit hash, one per 32-bit half.

    Sign × exponential rather than the inverse CDF of one uniform: that form, -sign(u-1/2) ln(1-2|u-1/2|),
    reaches ln 0 = -inf whenever float32 rounding puts u at 0 or 1 — with 32-bit uniforms k < 64 and
    k >= 2^32-128, a probability of 4.5e-8 per draw, about three infinities per operator at 128² × 3
    channels × 500 steps × 3 realizations. Here |x| <= 15.7 (a tail of probability 2^-32) and the sign is
    exactly symmetric.
    """
    return _laplace32(_lsr(bits, 32)), _laplace32(bits & 0xFFFFFFFF)
