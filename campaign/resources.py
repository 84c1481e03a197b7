"""What one task of a scale needs: cores, GPUs, MPI ranks, nodes, memory and priority.

Owns the :class:`Resources` value (validated, one-line errors), the node shape it is
checked against (:class:`NodeShape`, :func:`problems_on`) and the pure mappings from a
task's needs to an executor layout: workers per node, the accelerator groups a worker is
pinned to, and the ``parsl_resource_specification`` a task is submitted with. It imports
nothing from the rest of ``campaign`` (sites and the Parsl session both use it)::

    >>> fine = Resources(ranks=2, cores=1, priority=0)
    >>> fine.mpi, fine.total_cores
    (True, 2)
    >>> accelerator_groups(["0", "1", "2", "3"], 2)
    ['0,1', '2,3']
    >>> problems_on(Resources(gpus=8), NodeShape(cores=64, gpus=4))
    ['8 GPUs per task on one node; the node has 4']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any


class ResourcesError(ValueError):
    """A resource request is invalid; the message is one line naming the field."""


@dataclass(frozen=True)
class Resources:
    """What one task of a scale needs; a field left ``None`` keeps the site's default.

    Attributes:
        cores: cores per rank (a task without ``ranks`` is one rank), >= 1.
        gpus: GPUs per task on each node it runs on (the site's accelerator units: a GPU,
            a Frontier GCD, an Aurora tile), >= 0.
        ranks: MPI ranks of the task, >= 1. Setting it (or ``nodes``) makes the task an
            MPI task: it runs on an MPI-mode executor and launches its program through
            ``$PARSL_MPI_PREFIX``.
        nodes: nodes an MPI task spans, >= 1; ``ranks`` must be a multiple of it.
        memory: GB the task needs on each node it runs on, > 0.
        priority: dispatch order among tasks waiting for the same workers: lower goes
            first (Parsl's HTEX ``priority``). Unset, a finer scale goes before a coarser.
    """

    cores: int | None = None
    gpus: int | None = None
    ranks: int | None = None
    nodes: int | None = None
    memory: float | None = None
    priority: int | None = None

    def __post_init__(self) -> None:
        for name, lowest in (("cores", 1), ("gpus", 0), ("ranks", 1), ("nodes", 1)):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < lowest):
                raise ResourcesError(f"{name} must be an integer >= {lowest}; got {value!r}")
        if self.memory is not None and (
            isinstance(self.memory, bool) or not isinstance(self.memory, int | float)
            or not math.isfinite(self.memory) or self.memory <= 0
        ):
            raise ResourcesError(f"memory must be a number of GB > 0; got {self.memory!r}")
        if self.priority is not None and not _is_int(self.priority):
            raise ResourcesError(f"priority must be an integer; got {self.priority!r}")
        if self.nodes is not None and self.ranks is not None and self.ranks % self.nodes:
            raise ResourcesError(f"ranks must be a multiple of nodes; got ranks={self.ranks}, "
                                 f"nodes={self.nodes}")

    @classmethod
    def coerce(cls, value: Any) -> Resources:
        """``value`` as Resources: ``None`` -> ``Resources()``, a dict -> its fields.

        Raises:
            ResourcesError: an unknown key, or a value of the wrong kind.
        """
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            known = [field.name for field in fields(cls)]
            unknown = sorted(set(value) - set(known))
            if unknown:
                raise ResourcesError(f"unknown field {unknown[0]!r}; fields: {', '.join(known)}")
            return cls(**value)
        raise ResourcesError(f"must be Resources(...) or a dict of its fields; got {value!r}")

    def get(self, name: str, default: Any = None) -> Any:
        """A field by name, ``default`` when unset (the dict-style reads of older callers,
        e.g. ``resources.get("cores", 1)``)."""
        value = getattr(self, name, None)
        return default if value is None else value

    @property
    def mpi(self) -> bool:
        """Whether the task is an MPI task (``ranks`` or ``nodes`` is set)."""
        return self.ranks is not None or self.nodes is not None

    @property
    def node_count(self) -> int:
        """Nodes the task spans (1 unless ``nodes`` says more)."""
        return self.nodes or 1

    @property
    def rank_count(self) -> int:
        """MPI ranks (one per node when only ``nodes`` is set; 1 for a non-MPI task)."""
        return self.ranks if self.ranks is not None else self.node_count

    @property
    def ranks_per_node(self) -> int:
        """Ranks placed on each of the task's nodes."""
        return self.rank_count // self.node_count

    @property
    def total_cores(self) -> int:
        """Cores the task holds across its nodes: ``cores x ranks`` (the core slots it
        takes). A ``Budget(core_seconds=...)`` counts busy seconds times ``cores`` only
        (``campaign/engine.py``), not this."""
        return (self.cores or 1) * self.rank_count

    def describe(self) -> str:
        """The fields that are set, as ``ranks=2, cores=4`` (``defaults`` when none)."""
        shown = [f"{field.name}={getattr(self, field.name)}" for field in fields(self)
                 if getattr(self, field.name) is not None]
        return ", ".join(shown) or "defaults"


@dataclass(frozen=True)
class NodeShape:
    """One node of a site: ``cores`` (physical), ``gpus`` (the site's accelerator units),
    ``memory`` in GB (``None``: unknown), how many such nodes a block has, and whether the
    site runs MPI tasks."""

    cores: int | None
    gpus: int = 0
    memory: float | None = None
    nodes: int = 1
    gpu_kind: str = "GPU"
    mpi: bool = True

    def describe(self) -> str:
        """e.g. ``64 cores, 4 GPU, 256 GB, 1 node per block``."""
        cores = "? cores" if self.cores is None else f"{self.cores} cores"
        memory = "" if self.memory is None else f", {self.memory:g} GB"
        plural = "node" if self.nodes == 1 else "nodes"
        mpi = "" if self.mpi else ", no MPI"
        return (f"{cores}, {self.gpus} {self.gpu_kind}{memory}, {self.nodes} {plural} per "
                f"block{mpi}")


def problems_on(resources: Resources, node: NodeShape) -> list[str]:
    """What ``resources`` asks that ``node`` cannot give: one line each, empty if none."""
    problems = []
    if resources.mpi and not node.mpi:
        problems.append(f"an MPI task ({resources.rank_count} ranks); this site runs no MPI "
                        "tasks")
    per_node_cores = (resources.cores or 1) * resources.ranks_per_node
    if node.cores is not None and per_node_cores > node.cores:
        what = (f"{resources.ranks_per_node} ranks x {resources.cores or 1} cores"
                if resources.mpi else f"{per_node_cores} cores")
        problems.append(f"{what} per node; the node has {node.cores} cores")
    if resources.gpus and resources.gpus > node.gpus:
        problems.append(f"{resources.gpus} {node.gpu_kind}s per task on one node; the node "
                        f"has {node.gpus}")
    if resources.memory and node.memory is not None and resources.memory > node.memory:
        problems.append(f"{resources.memory:g} GB per node; the node has {node.memory:g} GB")
    if resources.node_count > node.nodes:
        problems.append(f"{resources.node_count} nodes per task; a block has {node.nodes} "
                        "(raise nodes_per_block)")
    return problems


def workers_per_node(resources: Resources, node: NodeShape) -> int | None:
    """How many single-node tasks of ``resources`` fit on ``node`` at once (by cores,
    GPUs and memory), or ``None`` when ``resources`` sets none of them."""
    limits = []
    if resources.cores is not None and node.cores is not None:
        limits.append(node.cores // resources.cores)
    if resources.gpus:
        limits.append(node.gpus // resources.gpus)
    if resources.memory is not None and node.memory is not None:
        limits.append(int(node.memory // resources.memory))
    return max(1, min(limits)) if limits else None


def accelerator_groups(accelerators: Sequence[str], gpus: int) -> list[str]:
    """``accelerators`` cut into groups of ``gpus`` (left-overs dropped), each group the
    comma-joined value a worker's ``CUDA_VISIBLE_DEVICES`` (``ROCR_VISIBLE_DEVICES``,
    ``ZE_AFFINITY_MASK``) is set to."""
    if gpus < 1:
        return []
    count = len(accelerators) // gpus
    return [",".join(accelerators[i * gpus:(i + 1) * gpus]) for i in range(count)]


def parsl_resource_specification(resources: Resources, *, mpi_mode: bool, priority: int | None,
                                 core_slots: bool = False,
                                 launcher_options: str = "") -> dict[str, Any]:
    """The ``parsl_resource_specification`` a task of ``resources`` is submitted with.

    Args:
        mpi_mode: whether its executor is in MPI mode (``MPIExecutor``): then
            ``num_nodes``, ``num_ranks``, ``ranks_per_node`` (and ``launcher_options``).
        priority: HTEX dispatch priority (lower first); ``None`` leaves it out.
        core_slots: the executor's "nodes" are core slots of one machine (``local`` lists
            each core as a node, so tasks pack by cores, not whole nodes): a task then
            takes ``cores x ranks`` of them.
        launcher_options: extra arguments for the MPI launcher (per-rank cores, GPU binding).
    """
    spec: dict[str, Any] = {}
    if priority is not None:
        spec["priority"] = priority
    if mpi_mode:
        if core_slots:
            spec.update(num_nodes=resources.total_cores, ranks_per_node=1)
        else:
            spec.update(num_nodes=resources.node_count, ranks_per_node=resources.ranks_per_node)
        spec["num_ranks"] = resources.rank_count
        if launcher_options:
            spec["launcher_options"] = launcher_options
    return spec


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
