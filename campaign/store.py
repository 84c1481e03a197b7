"""The campaign store: one zarr v3 group per scale, readable with plain zarr or xarray.

Layout (DESIGN)::

    store.zarr/<scale>/x            float64 (n, d) inputs, as given
    store.zarr/<scale>/y/<name>     one array per named output, leading dimension n
    store.zarr/<scale>/meta/<name>  task_id, parent_row, round, submitted, started, ended
    store.zarr/models/<promotion>/<round>/<parameter>   learner state per round

Only the engine writes. :meth:`Store.commit` writes the rows to zarr first (every array
of the scale in one call into zarr's event loop), then records the new row count in the
ledger in one transaction; on open, arrays longer than their committed count (a torn
write) are cut back. Every row array (``x``, ``y/*``,
``meta/*``) carries ``dimension_names`` so ``xarray.open_zarr(path, group="<scale>/y")``
reads it; the model arrays under ``models/`` do not (open scale groups one at a time,
not the whole store as one datatree).

    >>> import tempfile, numpy as np
    >>> from campaign.ledger import Ledger
    >>> run = tempfile.mkdtemp()
    >>> store = Store(run, Ledger(f"{run}/ledger.sqlite"))
    >>> store.commit("fine", Rows(x=np.zeros((2, 3)), y={"energy": np.ones(2)},
    ...                          meta=Rows.meta_for(task_id=7, rows=2)), outcomes=[])
    2
    >>> store.read("fine").y["energy"]
    array([1., 1.])
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr
from zarr.core.sync import sync

from campaign.faults import fault_point
from campaign.ledger import Ledger, TaskOutcome

STORE_FORMAT = 1
ROW_CHUNK = 4096
META_FIELDS: dict[str, str] = {
    "task_id": "int64",
    "parent_row": "int64",
    "round": "int32",
    "submitted": "float64",
    "started": "float64",
    "ended": "float64",
}


class StoreError(RuntimeError):
    """The store does not match what it should hold (wrong shape, dtype or version)."""


@dataclass
class Rows:
    """A batch of rows of one scale: inputs ``x`` (n, d), outputs ``y`` and ``meta``."""

    x: np.ndarray
    y: dict[str, np.ndarray]
    meta: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x)
        if self.x.ndim != 2:
            raise ValueError(f"x must have shape (n, d), got {self.x.shape}")
        n = self.x.shape[0]
        for group, arrays in (("y", self.y), ("meta", self.meta)):
            for name, values in arrays.items():
                arrays[name] = np.asarray(values)
                if arrays[name].ndim == 0 or arrays[name].shape[0] != n:
                    raise ValueError(f"{group}/{name} has {arrays[name].shape} rows, x has {n}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @staticmethod
    def meta_for(task_id: int, rows: int, parent_row: int = -1, round_index: int = 0,
                 submitted: float = np.nan, started: float = np.nan,
                 ended: float = np.nan) -> dict[str, np.ndarray]:
        """Meta columns for ``rows`` rows that all came from one task."""
        values = {"task_id": task_id, "parent_row": parent_row, "round": round_index,
                  "submitted": submitted, "started": started, "ended": ended}
        return {name: np.full(rows, values[name], dtype=dtype)
                for name, dtype in META_FIELDS.items()}

    @staticmethod
    def concatenate(batches: list[Rows]) -> Rows:
        first = batches[0]
        return Rows(
            x=np.concatenate([b.x for b in batches]),
            y={k: np.concatenate([b.y[k] for b in batches]) for k in first.y},
            meta={k: np.concatenate([b.meta[k] for b in batches]) for k in first.meta},
        )


@dataclass
class CommitCounts:
    """What this store's commits cost: how many, rows written, wall seconds spent in
    them (zarr appends and the ledger transaction)."""

    commits: int = 0
    rows: int = 0
    seconds: float = 0.0


@dataclass
class ScaleData:
    """The committed rows of one scale, read into memory."""

    x: np.ndarray
    y: dict[str, np.ndarray]
    meta: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.x.shape[0])


def _member_names(group: zarr.Group) -> list[str]:
    """Names of a group's members from the folder listing, so a member whose metadata is
    damaged is still named (and then reported) instead of failing the listing itself."""
    folder = getattr(group.store, "root", None)
    if folder is not None:
        path = Path(folder) / group.path
        if path.is_dir():
            return sorted(p.name for p in path.iterdir() if p.is_dir())
    return sorted(group.keys())


def _append_together(arrays: dict[str, zarr.Array], columns: dict[str, np.ndarray]) -> None:
    """Append each column to its array, all in one call into zarr's event loop: one
    wait for the driver instead of one per array (a scale has ~10 arrays), and the
    appends' file writes overlap. A kill part way leaves some arrays longer than the
    committed count: cut back on open, as any torn write."""
    async def append_all() -> None:
        await asyncio.gather(*(arrays[path].async_array.append(values, axis=0)
                               for path, values in columns.items()))
    sync(append_all())


class Store:
    """zarr v3 store of one run directory; arrays are cut back to committed counts on open."""

    def __init__(self, run_dir: str | Path, ledger: Ledger, *, read_only: bool = False) -> None:
        self.path = Path(run_dir) / "store.zarr"
        self.ledger = ledger
        self.read_only = read_only
        self.reads = 0  # whole-scale reads: the engine does them once, on resume
        # array handles per scale once its layout is checked: a commit then costs its
        # appends only, not ~30 zarr lookups (measured 64-180 ms per commit before)
        self._arrays: dict[str, dict[str, zarr.Array]] = {}
        self.commit_counts = CommitCounts()
        if read_only and not self.path.exists():
            raise StoreError(f"{self.path} does not exist")
        try:
            self.group = zarr.open_group(self.path, mode="r" if read_only else "a")
            found = self.group.attrs.get("store_format", None)
        except Exception as error:  # zarr raises several types for a damaged store
            raise StoreError(f"{self.path} is not a readable zarr store "
                             f"({type(error).__name__}: {error})") from None
        if found is None and not read_only:
            self.group.attrs["store_format"] = STORE_FORMAT
        elif found is not None and found != STORE_FORMAT:
            raise StoreError(f"{self.path} has store format {found}; this version reads "
                             f"format {STORE_FORMAT}")
        if not read_only:
            self.verify()
            self.cut_back_uncommitted()

    def verify(self) -> None:
        """Read every array's metadata and last committed chunk; raise :class:`StoreError`
        naming the first damaged array. Writes nothing."""
        for scale in self.scales():
            committed = self.rows(scale)
            node = self.group[scale]
            listed = [("x", node)]
            for sub in ("y", "meta"):
                if sub in node:
                    listed += [(f"{sub}/{name}", node[sub]) for name in _member_names(node[sub])]
            for path, _ in listed:
                try:
                    array = node[path]
                    if committed and array.shape[0] >= committed:
                        array[committed - 1]
                except Exception as error:  # zarr raises several types for damaged data
                    raise StoreError(f"{self.path}/{scale}/{path} is damaged "
                                     f"({type(error).__name__}: {error})") from None

    def _array_paths(self, scale: str) -> list[str]:
        node = self.group[scale]
        paths = [f"{scale}/{name}" for name in node.array_keys()]
        for sub in ("y", "meta"):
            if sub in node:
                paths += [f"{scale}/{sub}/{name}" for name in node[sub].array_keys()]
        return paths

    # -- reading -------------------------------------------------------------------
    def scales(self) -> list[str]:
        return sorted(name for name in self.group.group_keys() if name != "models")

    def rows(self, scale: str) -> int:
        """Committed rows of ``scale``."""
        return self.ledger.committed_rows(scale)

    def columns(self, scale: str) -> dict[str, tuple[np.dtype, tuple[int, ...]]] | None:
        """``x`` and ``y/<name>`` of ``scale``: (dtype, row shape) from array metadata,
        no data read (None before its first commit)."""
        if scale not in self.group or "x" not in self.group[scale]:
            return None
        node = self.group[scale]
        found = {"x": (node["x"].dtype, tuple(node["x"].shape[1:]))}
        if "y" in node:
            found.update({f"y/{name}": (array.dtype, tuple(array.shape[1:]))
                          for name, array in node["y"].arrays()})
        return found

    def read(self, scale: str, start: int = 0) -> ScaleData:
        """Committed rows ``start:`` of ``scale`` (empty arrays if it has none)."""
        n = self.rows(scale)
        self.reads += 1
        if scale not in self.group or n == 0:
            return ScaleData(x=np.zeros((0, 0)), y={}, meta={})
        try:
            node = self.group[scale]
            return ScaleData(
                x=node["x"][start:n],
                y={name: array[start:n] for name, array in node["y"].arrays()},
                meta={name: array[start:n] for name, array in node["meta"].arrays()},
            )
        except Exception as error:  # zarr raises several types for damaged data
            raise StoreError(f"{self.path}/{scale} is damaged "
                             f"({type(error).__name__}: {error})") from None

    # -- writing -------------------------------------------------------------------
    def commit(self, scale: str, rows: Rows | None, outcomes: Iterable[TaskOutcome]) -> int:
        """Append ``rows`` to ``scale`` then record the new committed count and the task
        ``outcomes`` in the ledger in one transaction. Returns the committed row count."""
        if self.read_only:
            raise StoreError("store opened read-only")
        began = time.perf_counter()
        committed = self.rows(scale)
        if rows is not None and len(rows):
            self._append(scale, committed, rows)
            committed += len(rows)
            fault_point("between-store-and-ledger")
        self.ledger.commit(scale, committed, outcomes)
        self.commit_counts.commits += 1
        self.commit_counts.rows += 0 if rows is None else len(rows)
        self.commit_counts.seconds += time.perf_counter() - began
        return committed

    def _append(self, scale: str, committed: int, rows: Rows) -> None:
        columns = {"x": rows.x}
        columns.update({f"y/{name}": values for name, values in rows.y.items()})
        columns.update({f"meta/{name}": values for name, values in rows.meta.items()})
        cached = self._arrays.get(scale)
        if cached is not None and set(cached) == set(columns) and all(
                cached[path].dtype == values.dtype
                and cached[path].shape[1:] == values.shape[1:]
                for path, values in columns.items()):
            for path in columns:
                if cached[path].shape[0] != committed:
                    raise StoreError(f"{scale}/{path} has {cached[path].shape[0]} rows, "
                                     f"ledger {committed}")
            _append_together(cached, columns)
            return
        node = self.group.require_group(scale)
        if "x" in node:
            known = {"x"} | {f"y/{n}" for n in node["y"].array_keys()}
            known |= {f"meta/{n}" for n in node["meta"].array_keys()}
            if known != set(columns):
                raise StoreError(f"scale '{scale}' holds arrays {sorted(known)}; new rows "
                                 f"have {sorted(columns)}")
        arrays = {}
        for path, values in columns.items():
            array = self._require_array(node, path, values)
            if array.shape[0] != committed:  # cut back on open keeps this true
                raise StoreError(f"{scale}/{path} has {array.shape[0]} rows, ledger {committed}")
            arrays[path] = array
        _append_together(arrays, columns)
        self._arrays[scale] = arrays

    def _require_array(self, node: zarr.Group, path: str, values: np.ndarray) -> zarr.Array:
        if path in node:
            array = node[path]
            if array.shape[1:] != values.shape[1:] or array.dtype != values.dtype:
                raise StoreError(f"{node.path}/{path} holds {array.dtype}{array.shape[1:]} "
                                 f"rows; got {values.dtype}{values.shape[1:]}")
            return array
        name = path.rsplit("/", 1)[-1]
        dims = ("row",) + tuple(f"{name}_{axis}" for axis in range(1, values.ndim))
        return node.create_array(
            path, shape=(0, *values.shape[1:]), dtype=values.dtype,
            chunks=(ROW_CHUNK, *values.shape[1:]), dimension_names=dims,
        )

    def cut_back_uncommitted(self) -> dict[str, int]:
        """Shrink every array of every scale to the ledger's committed count.

        Returns ``{array path: rows removed}`` for arrays that were longer (torn writes).
        """
        removed: dict[str, int] = {}
        for scale in self.scales():
            committed = self.rows(scale)
            for path in self._array_paths(scale):
                self._cut(path, self.group[path], committed, removed)
        return removed

    @staticmethod
    def _cut(path: str, array: zarr.Array, committed: int, removed: dict[str, int]) -> None:
        if array.shape[0] > committed:
            removed[path] = array.shape[0] - committed
            array.resize((committed, *array.shape[1:]))
        elif array.shape[0] < committed:
            raise StoreError(f"{path} has {array.shape[0]} rows but the ledger committed "
                             f"{committed}: the store lost data")

    # -- models --------------------------------------------------------------------
    def save_model(self, promotion: str, round_index: int, state: dict[str, np.ndarray],
                   n_train: int, learner: str) -> str:
        """Save learner ``state`` (plain arrays, no pickle) under models/<promotion>/<round>."""
        path = f"models/{promotion}/{round_index}"
        node = self.group.require_group(path)
        for name, values in state.items():
            values = np.asarray(values)
            node.create_array(name, shape=values.shape, dtype=values.dtype, overwrite=True)[...] = (
                values
            )
        node.attrs.update({"n_train": int(n_train), "round": int(round_index),
                           "learner": learner})
        return path

    def record_calibration(self, promotion: str, round_index: int,
                           metrics: dict[str, float]) -> None:
        """Attach prospective calibration metrics to the model of ``round_index``."""
        node = self.group.require_group(f"models/{promotion}/{round_index}")
        node.attrs["calibration"] = {key: float(value) for key, value in metrics.items()}

    def load_model(self, promotion: str, round_index: int) -> dict[str, np.ndarray]:
        node = self.group[f"models/{promotion}/{round_index}"]
        return {name: array[...] for name, array in node.arrays()}
