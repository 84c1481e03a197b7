"""One file per scale for tools that do not read zarr: CSV or netCDF.

A scale's committed rows, ``x``, every output ``y/<name>`` and every ``meta/<name>``,
go into one table with one row per committed row. In CSV a column with more than one
value per row is flattened to ``name_0, name_1, ...`` (C order); netCDF keeps its shape,
with dimensions ``row`` and ``<name>_1, <name>_2, ...`` as in the store. A name used by
two groups (an output called ``round``) is written as ``y_round`` / ``meta_round``.
Nothing here writes the run directory.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from campaign.store import META_FIELDS, ScaleData, Store

FORMATS = ("csv", "netcdf")
SUFFIXES = {"csv": ".csv", "netcdf": ".nc"}
INT32 = np.iinfo(np.int32)


class ExportError(RuntimeError):
    """The scale cannot be exported as asked; the message is one line."""


def named_arrays(data: ScaleData) -> dict[str, tuple[str, np.ndarray]]:
    """``{column name: (group, array)}`` for ``x``, the outputs and the meta columns, in
    that order; a name taken by an earlier group gets its group as a prefix."""
    groups = [("x", {"x": data.x}), ("y", data.y), ("meta", data.meta)]
    taken = [name for _, arrays in groups for name in arrays]
    named: dict[str, tuple[str, np.ndarray]] = {}
    for group, arrays in groups:
        # outputs by name; meta in the store's documented order, then any others
        order = list(META_FIELDS) if group == "meta" else []
        for name in [n for n in order if n in arrays] + sorted(set(arrays) - set(order)):
            column = name if taken.count(name) == 1 else f"{group}_{name}"
            named[column] = (group, np.asarray(arrays[name]))
    return named


def flat_columns(data: ScaleData) -> dict[str, np.ndarray]:
    """One 1-D column per value: ``(n,)`` arrays keep their name, ``(n, ...)`` arrays
    become ``name_0, name_1, ...`` (C order)."""
    columns: dict[str, np.ndarray] = {}
    for name, (_, values) in named_arrays(data).items():
        if values.ndim == 1:
            columns[name] = values
            continue
        flat = values.reshape(values.shape[0], -1)
        for index in range(flat.shape[1]):
            columns[f"{name}_{index}"] = flat[:, index]
    return columns


def write_csv(data: ScaleData, path: Path) -> None:
    """Write ``data`` as CSV: a header, then one line per row (floats round-trip)."""
    columns = flat_columns(data)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(zip(*(values.tolist() for values in columns.values()), strict=True))


def netcdf_engine() -> str:
    """``netcdf4`` (netCDF-4, 64-bit integers) if installed, else ``scipy`` (netCDF-3)."""
    return "netcdf4" if importlib.util.find_spec("netCDF4") is not None else "scipy"


def write_netcdf(data: ScaleData, path: Path, attrs: dict[str, Any]) -> str:
    """Write ``data`` as one netCDF dataset with dimension ``row``; returns the engine.

    Raises :class:`ExportError` if xarray is missing, or if netCDF-3 (no netCDF4
    package) cannot hold a 64-bit integer column's values."""
    try:
        import xarray as xr
    except ImportError:
        raise ExportError("netCDF export needs xarray: pip install xarray") from None
    engine = netcdf_engine()
    variables = {}
    for name, (group, values) in named_arrays(data).items():
        if engine == "scipy" and values.dtype.kind in "iu" and values.itemsize > 4:
            if values.size and (values.min() < INT32.min or values.max() > INT32.max):
                raise ExportError(f"column '{name}' holds integers beyond 32 bits, which "
                                  "netCDF-3 cannot store: pip install netCDF4, or use "
                                  "--format csv")
            values = values.astype(np.int32)
        dims = ("row", *(f"{name}_{axis}" for axis in range(1, values.ndim)))
        variables[name] = xr.Variable(dims, values, attrs={"group": group})
    dataset = xr.Dataset(variables, attrs={key: str(value) for key, value in attrs.items()})
    try:
        dataset.to_netcdf(path, engine=engine)
    except (ValueError, TypeError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ExportError(f"cannot write {path} as netCDF ({engine}): {first}") from None
    return engine


def export_scale(store: Store, scale: str, fmt: str, output: Path,
                 attrs: dict[str, Any] | None = None) -> int:
    """Write the committed rows of ``scale`` to ``output`` as ``fmt`` (``csv`` or
    ``netcdf``); returns the number of rows. Raises :class:`ExportError` (one line) for
    an unknown scale or format, a scale without committed rows, or an unwritable file."""
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    scales = store.scales()
    if scale not in scales:
        raise ExportError(f"no scale '{scale}' in {store.path}; scales: "
                          f"{', '.join(scales) or '(none yet)'}")
    data = store.read(scale)
    if len(data) == 0:
        raise ExportError(f"scale '{scale}' has no committed rows yet")
    if output.is_dir():
        raise ExportError(f"{output} is a directory; give --output a file name")
    try:
        if fmt == "csv":
            write_csv(data, output)
        else:
            write_netcdf(data, output, {"scale": scale, **(attrs or {})})
    except OSError as error:
        raise ExportError(f"cannot write {output}: {error.strerror or error}") from None
    return len(data)
