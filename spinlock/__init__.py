"""Spinlock: stratified neural-operator behaviour datasets and behavioural tokens on Ray."""

__version__ = "0.1.0"
FORMAT_VERSION = "1.1"

# Registers the Blosc/Zstd HDF5 filters for every reader of Spinlock files (shards use Blosc-LZ4 by default).
import hdf5plugin as _hdf5plugin  # noqa: E402,F401
