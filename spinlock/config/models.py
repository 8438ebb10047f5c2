"""The run configuration: one strict pydantic model per YAML section.

Every model forbids unknown keys and every field is read somewhere; docs/configuration.md documents
each key. Section models owned by other subsystems live next to this file (``ics.py``, ...).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from spinlock.config.distributed import DistributedConfig
from spinlock.config.features import FeaturesConfig
from spinlock.config.ics import InitialConditionsConfig
from spinlock.config.parameters import ParameterSpec
from spinlock.config.strict import Strict
from spinlock.config.tokenizer import TokenizerConfig
from spinlock.operators.names import FAMILY_NAMES
from spinlock.operators.registry import get_family


class SamplingConfig(Strict):
    """How the unit hypercube is filled."""

    scramble: Literal["owen", "none"] = "owen"
    """``owen``: nested uniform scrambling seeded by the run seed; ``none``: plain Sobol (tests only)."""


class OperatorsConfig(Strict):
    family: Literal[FAMILY_NAMES] = "cnn"
    """Operator family; it fixes which keys ``parameters`` must contain."""


class SimulationConfig(Strict):
    num_operators: int = Field(256, ge=1, le=10_000_000)
    """N, operators in the run (Sobol points; exact 1-D stratification when N is a power of 2)."""
    grid: int = Field(32, ge=8, le=1024)
    """H = W, grid points per side (periodic domain)."""
    channels: int = Field(3, ge=1, le=64)
    """C, field channels (operators map C channels to C channels)."""
    steps: int = Field(64, ge=1, le=100_000)
    """T, rollout steps per realization."""
    realizations: int = Field(2, ge=1, le=1024)
    """M, independent stochastic realizations per operator (same IC, independent noise)."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """bf16/fp16: the operator evaluations run under autocast (state, noise, update and features stay
    float32; the sensitivity probes evaluate the operator in float32). ``spinlock generate`` accepts them
    only on CUDA (checked before any work); the engine also runs them under CPU autocast, which tests use
    to emulate GPU precision."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto``: CUDA when torch.cuda.is_available(), else CPU; ``cuda`` fails before any work without CUDA."""
    batch_operators: int = Field(8, ge=1, le=4096)
    """Operators per engine batch. Batches are aligned to global operator index, so results do not
    depend on shard size or worker count; pick it per device (small on CPU, large on GPU)."""
    divergence_threshold: float = Field(1e4, gt=0)
    """An operator whose max abs(field) exceeds this (or turns non-finite) is stopped and flagged."""


class TrajectoryStorage(Strict):
    store: bool = True
    """Write /trajectories; without it, features are still computed inline and `spinlock replay` re-runs."""
    stride: int = Field(1, ge=1)
    """Store steps 0, stride, 2*stride, ... <= steps."""
    dtype: Literal["float16", "float32"] = "float32"
    """Storage dtype of /trajectories (computation is always float32 or the CUDA precision)."""
    format: Literal["hdf5", "zarr"] = "hdf5"
    """``hdf5``: /trajectories inside each shard (staged locally for an object-store --out). ``zarr``: one
    Zarr v3 array [N, M, Ts, C, H, W] in the group OUT/trajectories.zarr, written chunk by chunk straight to its final
    place (a folder, or the bucket through fsspec: no local copy); the shards keep everything else."""

    @model_validator(mode="after")
    def _format_needs_store(self) -> TrajectoryStorage:
        if self.format == "zarr" and not self.store:
            raise ValueError(
                "format 'zarr' needs store: true (store is false, so there are no trajectories to write);"
                " set store: true or leave format at 'hdf5'"
            )
        return self


class StorageConfig(Strict):
    codec: Literal["lz4", "zstd", "gzip", "none"] = "lz4"
    """Chunk codec for large arrays: Blosc-lz4/zstd (hdf5plugin in HDF5, zarr's Blosc codec for Zarr
    trajectories), or gzip (portable)."""
    level: int = Field(5, ge=0, le=9)
    """Compression level of the codec (ignored by ``none``)."""
    trajectories: TrajectoryStorage = TrajectoryStorage()
    merge: Literal["virtual", "copy"] = "virtual"
    """dataset.h5 as HDF5 virtual datasets over the shards (metadata only) or a full copy."""


class ShardingConfig(Strict):
    operators_per_shard: int = Field(64, ge=1)
    """Operators per shard file / Ray task; a multiple of simulation.batch_operators."""


class RunConfig(Strict):
    """Root of a Spinlock run configuration."""

    name: str = Field("spinlock", pattern=r"^[A-Za-z0-9_.-]+$")
    """Run name: default output folder runs/<name> and Ray job/train names."""
    seed: int = Field(0, ge=0, lt=2**63)
    """Root seed; every random draw is keyed by (seed, stream, operator, realization, step)."""
    parameters: dict[str, ParameterSpec] | None = None
    """Operator parameter space; omitted means the family's default space."""
    sampling: SamplingConfig = SamplingConfig()
    operators: OperatorsConfig = OperatorsConfig()
    simulation: SimulationConfig = SimulationConfig()
    initial_conditions: InitialConditionsConfig = InitialConditionsConfig()
    features: FeaturesConfig = FeaturesConfig()
    storage: StorageConfig = StorageConfig()
    sharding: ShardingConfig = ShardingConfig()
    distributed: DistributedConfig = DistributedConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        family = get_family(self.operators.family)
        space = self.parameters if self.parameters is not None else family.default_space()
        family.validate_space(space)
        family.validate_simulation(space, self.simulation.grid, self.simulation.channels)
        if self.parameters is None:
            object.__setattr__(self, "parameters", space)
        if self.sharding.operators_per_shard % self.simulation.batch_operators:
            raise ValueError(
                f"sharding.operators_per_shard ({self.sharding.operators_per_shard}) must be a multiple"
                f" of simulation.batch_operators ({self.simulation.batch_operators}) so batches are"
                " identical in every shard plan"
            )
        if self.storage.trajectories.stride > self.simulation.steps:
            raise ValueError(
                f"storage.trajectories.stride ({self.storage.trajectories.stride}) exceeds"
                f" simulation.steps ({self.simulation.steps})"
            )
        return self

    @property
    def stored_steps(self) -> int:
        """Number of stored trajectory steps (step 0 included)."""
        return self.simulation.steps // self.storage.trajectories.stride + 1
