"""From a scale's :class:`~campaign.resources.Resources` to one executor's layout.

Owns the executor kinds a simulation scale gets: a ``HighThroughputExecutor`` whose workers
per node, cores per worker, memory per worker and accelerator groups follow the task's
cores, GPUs and memory; or, for an MPI task (``ranks`` or ``nodes``), Parsl's
``MPIExecutor`` (HTEX in MPI mode: one worker pool on a block's first node that hands each
task its nodes and ``$PARSL_MPI_PREFIX``). Nothing here starts anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from parsl.executors import HighThroughputExecutor, MPIExecutor
from parsl.executors.high_throughput.mpi_prefix_composer import validate_resource_spec

from campaign.resources import NodeShape, Resources, accelerator_groups, problems_on
from campaign.resources import workers_per_node as fitting_workers
from site_configs.mpi_worker_pool import LAUNCH_CMD


class PrioritizedMPIExecutor(MPIExecutor):
    """Parsl's ``MPIExecutor`` that also takes HTEX's ``priority`` in a task's resource
    specification (the interchange orders waiting tasks by it; the MPI keys are checked by
    Parsl's own validation), and starts its pools through
    :mod:`site_configs.mpi_worker_pool` (Parsl's pool with its MPI backlog loop fixed)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("launch_cmd", LAUNCH_CMD)
        super().__init__(**kwargs)

    def validate_resource_spec(self, resource_specification: dict) -> None:
        mpi_keys = {key: value for key, value in resource_specification.items()
                    if key != "priority"}
        validate_resource_spec(mpi_keys)
        resource_specification.update(mpi_keys)  # Parsl fills in num_ranks/ranks_per_node


def label_resources(labels: Sequence[str],
                    resources: Mapping[str, Resources | Mapping[str, Any] | None] | None,
                    ) -> dict[str, Resources]:
    """Each executor label's Resources: ``sim-<scale>`` gets ``resources[scale]``, other
    labels (``train``) and scales not named get ``Resources()`` (the site's defaults).

    Raises:
        ValueError: a key that is not one of the scales, or an invalid request.
    """
    scales = [label.removeprefix("sim-") for label in labels if label.startswith("sim-")]
    given = dict(resources or {})
    for scale in given:
        if scale not in scales:
            raise ValueError(f"resources: no scale {scale!r}; scales: {', '.join(scales)}")
    return {label: Resources.coerce(given.get(label.removeprefix("sim-")))
            if label.startswith("sim-") else Resources() for label in labels}


def check_fits(label: str, resources: Resources, node: NodeShape) -> None:
    """Raise ``ValueError`` (one line naming the label) if ``node`` cannot run the task."""
    problems = problems_on(resources, node)
    if problems:
        raise ValueError(f"{label}: {resources.describe()} cannot run on this site's node "
                         f"({node.describe()}): {problems[0]}")


def simulation_executor(
    label: str,
    provider: Any,
    *,
    resources: Resources,
    node: NodeShape,
    address: str | None,
    workers_per_node: int | None,
    cores_per_worker: float,
    accelerators: int | Sequence[str] | None,
    cpu_affinity: str = "none",
    threads_per_core: int = 1,
    mpi_launcher: str = "mpiexec",
    **htex: Any,
) -> HighThroughputExecutor:
    """The executor for ``resources`` on ``node``-shaped nodes (a provider already built
    with ``SimpleLauncher`` when ``resources.mpi``).

    Non-MPI: workers per node = how many tasks fit by cores, GPUs and memory (unless
    ``workers_per_node`` is given), ``cores_per_worker = cores x threads_per_core``, each
    worker pinned to ``gpus`` accelerators (``"0,1"``), ``mem_per_worker = memory``.
    MPI: an encrypted :class:`PrioritizedMPIExecutor` running ``nodes_per_block // nodes``
    tasks at once per block.
    """
    check_fits(label, resources, node)
    if workers_per_node is not None and workers_per_node < 1:
        raise ValueError(f"workers_per_node must be >= 1; got {workers_per_node}")
    if cores_per_worker <= 0:
        raise ValueError(f"cores_per_worker must be > 0; got {cores_per_worker}")
    if resources.mpi:
        nodes = getattr(provider, "nodes_per_block", 1) or 1
        return PrioritizedMPIExecutor(
            label=label, provider=provider, address=address,
            max_workers_per_block=max(1, nodes // resources.node_count),
            mpi_launcher=mpi_launcher, prefetch_capacity=0, encrypted=True, **htex,
        )
    names = ([str(i) for i in range(accelerators)] if isinstance(accelerators, int)
             else list(accelerators or []))
    if resources.gpus is not None:
        names = accelerator_groups(names, resources.gpus) if resources.gpus else []
    if resources.cores is not None:
        cores_per_worker = float(resources.cores * threads_per_core)
    if workers_per_node is None:
        workers_per_node = fitting_workers(resources, node)
    return HighThroughputExecutor(
        label=label,
        provider=provider,
        address=address,
        max_workers_per_node=workers_per_node,
        cores_per_worker=cores_per_worker,
        mem_per_worker=resources.memory,
        available_accelerators=names,
        cpu_affinity=cpu_affinity,
        prefetch_capacity=0,
        encrypted=True,
        **htex,
    )

