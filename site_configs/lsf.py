"""Any LSF cluster: workers in batch jobs that Parsl submits with bsub, one
HighThroughputExecutor per label."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import LSFProvider

from campaign.resources import NodeShape, Resources
from site_configs.batch import (
    build_config,
    check_blocks,
    default_worker_init,
    make_launcher,
    worker_address,
)
from site_configs.layout import simulation_executor


def config(
    *,
    scales: Sequence[str],
    run_dir: str,
    account: str | None = None,
    queue: str | None = None,
    nodes_per_block: int = 1,
    init_blocks: int = 1,
    min_blocks: int = 0,
    max_blocks: int = 1,
    walltime: str = "01:00:00",
    cores_per_node: int | None = None,
    gpus_per_node: int | None = None,
    workers_per_node: int | None = None,
    cores_per_worker: float = 1.0,
    launcher: str = "simple",
    launcher_options: str = "",
    scheduler_options: str = "",
    worker_init: str | None = None,
    interface: str | None = None,
    address: str | None = None,
    cmd_timeout: int = 120,
    strategy_period: float = 5.0,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    resources: Mapping[str, Resources | None] | None = None,
) -> Config:
    """A fresh Config: one HTEX per label over an ``LSFProvider`` (``#BSUB -nnodes``), encrypted.

    Every parameter but ``scales``, ``run_dir``, ``strategy_period`` and ``overrides`` is a
    per-label setting; ``overrides={"train": {"queue": "gpu"}}`` changes it for one label.

    Args:
        scales: scale names; see :func:`site_configs.executor_labels`.
        run_dir: Parsl's run directory.
        account: the LSF project (``#BSUB -P``).
        launcher: ``simple`` starts one worker pool on the job's first node (enough for
            ``nodes_per_block=1``); ``jsrun`` or ``mpirun`` for more nodes.
        gpus_per_node: one worker is pinned to each GPU (request them in
            ``scheduler_options``, e.g. ``#BSUB -gpu "num=4"``).
        resources: scale name -> what one of its tasks needs (no MPI tasks: Parsl's MPI
            mode reads Slurm's and PBS's node lists only).

    Raises:
        ValueError: bad scales, block, launcher or worker settings, an unknown override, or
            an ``interface`` this host does not have.
    """
    return build_config(dict(locals()), executor)


def executor(
    label: str,
    *,
    account: str | None,
    queue: str | None,
    nodes_per_block: int,
    init_blocks: int,
    min_blocks: int,
    max_blocks: int,
    walltime: str,
    cores_per_node: int | None,
    gpus_per_node: int | None,
    workers_per_node: int | None,
    cores_per_worker: float,
    launcher: str,
    launcher_options: str,
    scheduler_options: str,
    worker_init: str | None,
    interface: str | None,
    address: str | None,
    cmd_timeout: int,
    resources: Resources,
) -> HighThroughputExecutor:
    """One label's executor."""
    node = node_shape(cores_per_node=cores_per_node, gpus_per_node=gpus_per_node,
                      nodes_per_block=nodes_per_block)
    check_blocks(nodes_per_block=nodes_per_block, init_blocks=init_blocks,
                 min_blocks=min_blocks, max_blocks=max_blocks, walltime=walltime)
    provider = LSFProvider(
        project=account,
        queue=queue,
        nodes_per_block=nodes_per_block,
        cores_per_node=cores_per_node,
        init_blocks=init_blocks,
        min_blocks=min_blocks,
        max_blocks=max_blocks,
        walltime=walltime,
        scheduler_options=scheduler_options,
        worker_init=default_worker_init() if worker_init is None else worker_init,
        launcher=make_launcher(launcher, launcher_options),
        cmd_timeout=cmd_timeout,
    )
    return simulation_executor(
        label,
        provider,
        resources=resources,
        node=node,
        address=worker_address(interface, address),
        workers_per_node=workers_per_node,
        cores_per_worker=cores_per_worker,
        accelerators=gpus_per_node,
    )


def node_shape(*, cores_per_node: int | None = None, gpus_per_node: int | None = None,
               nodes_per_block: int = 1, **_: Any) -> NodeShape:
    """The node a job gets, as far as the settings say; no MPI mode (see ``resources``)."""
    return NodeShape(cores=cores_per_node, gpus=gpus_per_node or 0, nodes=nodes_per_block,
                     mpi=False)
