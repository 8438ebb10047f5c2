"""Named dimensions of every dataset: HDF5 dimension scales (netCDF-4 convention) and Zarr ``dimension_names``.

Why: xarray, h5netcdf and netCDF tools read a dataset's axes by name from its dimension scales, so
``xr.open_datatree("OUT/dataset.h5", engine="h5netcdf")`` gives ``trajectories`` the dims (operator,
realization, time, channel, y, x) with operator indices, stored step numbers, parameter and feature names
as coordinates. A scale is a small dataset named after its dimension, in the group of the datasets that
use it (root for those shared across groups), as netCDF-4 lays them out: with coordinate values
(``operator``, ``time``, ``parameter``, ``*_feature``, ``temporal_step``, ``token``) or as a bare
netCDF dimension (``realization``, ``channel``, ``y``, ``x``).
"""

from __future__ import annotations

from collections.abc import Mapping

import h5py
import numpy as np

# dataset path -> name of each axis (docs/dataset-format.md)
DIMS: dict[str, tuple[str, ...]] = {
    "operators/index": ("operator",),
    "parameters/unit": ("operator", "parameter"),
    "parameters/values": ("operator", "parameter"),
    "ics/fields": ("operator", "channel", "y", "x"),
    "ics/type": ("operator",),
    "ics/generator": ("operator",),
    "ics/tier": ("operator",),
    "ics/params": ("operator",),
    "trajectories": ("operator", "realization", "time", "channel", "y", "x"),
    "status": ("operator",),
    "status_step": ("operator",),
    "features/initial": ("operator", "initial_feature"),
    "features/architecture": ("operator", "architecture_feature"),
    "features/summary": ("operator", "summary_feature"),
    "features/temporal": ("operator", "temporal_step", "temporal_feature"),
    "features/initial_learned": ("operator", "initial_learned_feature"),
    "tokens": ("operator", "token"),
}
TRAJECTORY_DIMS = DIMS["trajectories"]

# dimension -> group holding its scale (the lowest group shared by every dataset using it)
_GROUP = {"parameter": "parameters"} | {
    d: "features" for p, dims in DIMS.items() if p.startswith("features/") for d in dims[1:]
}
SCALE_PATHS = frozenset(f"{_GROUP[d]}/{d}" if d in _GROUP else d for dims in DIMS.values() for d in dims)
# attributes HDF5 keeps for dimension scales: object references into their own file, never copied
SCALE_ATTRS = frozenset({"CLASS", "NAME", "DIMENSION_LIST", "REFERENCE_LIST", "DIMENSION_LABELS",
                         "_Netcdf4Dimid", "_Netcdf4Coordinates"})
_NOT_A_VARIABLE = "This is a netCDF dimension but not a netCDF variable."  # netCDF-4's name for bare dims


def scale_path(dim: str) -> str:
    return f"{_GROUP[dim]}/{dim}" if dim in _GROUP else dim


def _coordinate(f: h5py.File, ds: h5py.Dataset, dim: str) -> np.ndarray | None:
    """Coordinate values of ``dim`` read from the file (None: a dimension without values)."""
    if dim == "operator":
        return np.asarray(f["operators/index"][()], np.int64)
    if dim in ("time", "temporal_step"):
        return np.asarray(ds.attrs["steps"], np.int64)
    if dim == "parameter" or dim.endswith("_feature"):
        return np.asarray([str(n) for n in ds.attrs["names"]], dtype=object)
    return None


def attach(f: h5py.File, name: str, values: Mapping[str, np.ndarray] | None = None) -> None:
    """Attach the scales of :data:`DIMS` ``[name]`` to dataset ``name``, creating missing ones.

    Coordinate values come from the file (``operators/index``, the dataset's ``names``/``steps``
    attrs) unless given in ``values``. An existing scale of another length is an error naming both.
    """
    ds = f[name]
    for axis, dim in enumerate(DIMS[name]):
        path = scale_path(dim)
        if path in f:
            scale = f[path]
            if scale.shape != (ds.shape[axis],):
                raise ValueError(f"{f.filename}:{name} axis {dim} has {ds.shape[axis]} entries, the scale"
                                 f" /{path} {scale.shape[0]}")
        else:
            data = values[dim] if values and dim in values else _coordinate(f, ds, dim)
            if data is None:
                scale = f.create_dataset(path, (ds.shape[axis],), np.float32)
                scale.make_scale(f"{_NOT_A_VARIABLE}{ds.shape[axis]:10d}")
            else:
                dtype = h5py.string_dtype() if data.dtype == object else data.dtype
                scale = f.create_dataset(path, data=data, dtype=dtype)
                scale.make_scale(dim)
        ds.dims[axis].attach_scale(scale)


def attach_all(f: h5py.File, values: Mapping[str, np.ndarray] | None = None) -> None:
    """Attach scales to every dataset of :data:`DIMS` present in ``f`` (``values`` as for :func:`attach`)."""
    for name in DIMS:
        if name in f:
            attach(f, name, values)


def detach(f: h5py.File, name: str) -> None:
    """Detach dataset ``name`` from its scales (before it is deleted and rewritten with another width)."""
    ds = f[name]
    for axis in range(ds.ndim):
        for scale in list(ds.dims[axis].values()):
            ds.dims[axis].detach_scale(scale)


def names(ds: h5py.Dataset) -> tuple[str | None, ...]:
    """Dimension name of each axis of ``ds`` (None for an axis without a scale)."""
    return tuple(d[0].name.rsplit("/", 1)[-1] if len(d) else None for d in ds.dims)
