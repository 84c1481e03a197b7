"""Any Slurm cluster: workers in batch jobs that Parsl submits with sbatch, one
HighThroughputExecutor per label, started on the job's nodes by srun."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import SlurmProvider

from campaign.resources import NodeShape, Resources
from site_configs.batch import (
    build_config,
    check_blocks,
    default_worker_init,
    provider_launcher,
    worker_address,
)
from site_configs.layout import simulation_executor


def config(
    *,
    scales: Sequence[str],
    run_dir: str,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    constraint: str | None = None,
    nodes_per_block: int = 1,
    init_blocks: int = 1,
    min_blocks: int = 0,
    max_blocks: int = 1,
    walltime: str = "01:00:00",
    cores_per_node: int | None = None,
    mem_per_node: int | None = None,
    gpus_per_node: int | None = None,
    workers_per_node: int | None = None,
    cores_per_worker: float = 1.0,
    exclusive: bool = True,
    launcher: str = "srun",
    launcher_options: str = "",
    scheduler_options: str = "",
    worker_init: str | None = None,
    interface: str | None = None,
    address: str | None = None,
    cmd_timeout: int = 60,
    strategy_period: float = 5.0,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    resources: Mapping[str, Resources | None] | None = None,
) -> Config:
    """A fresh Config: one HTEX per label over a ``SlurmProvider``, encrypted.

    Every parameter but ``scales``, ``run_dir``, ``strategy_period`` and ``overrides`` is a
    per-label setting; ``overrides={"sim-fine": {"constraint": "gpu", "gpus_per_node": 4}}``
    changes it for one label. ``cores_per_node`` becomes ``--cpus-per-task`` of the job's one
    task per node, and of the srun step that starts the worker pool.

    Args:
        scales: scale names; see :func:`site_configs.executor_labels`.
        run_dir: Parsl's run directory (submit scripts land in ``<run_dir>/.../submit_scripts``).
        gpus_per_node: ``--gpus-per-node``; one worker is pinned to each GPU.
        exclusive: ``--exclusive`` (whole nodes).
        resources: scale name -> what one of its tasks needs; an MPI scale gets an
            ``MPIExecutor`` launching through ``srun``.

    Raises:
        ValueError: bad scales, block, launcher or worker settings, an unknown override, or
            an ``interface`` this host does not have.
    """
    return build_config(dict(locals()), executor)


def executor(
    label: str,
    *,
    account: str | None,
    partition: str | None,
    qos: str | None,
    constraint: str | None,
    nodes_per_block: int,
    init_blocks: int,
    min_blocks: int,
    max_blocks: int,
    walltime: str,
    cores_per_node: int | None,
    mem_per_node: int | None,
    gpus_per_node: int | None,
    workers_per_node: int | None,
    cores_per_worker: float,
    exclusive: bool,
    launcher: str,
    launcher_options: str,
    scheduler_options: str,
    worker_init: str | None,
    interface: str | None,
    address: str | None,
    cmd_timeout: int,
    cpu_affinity: str = "none",
    accelerators: int | Sequence[str] | None = None,
    resources: Resources | None = None,
    node: NodeShape | None = None,
    threads_per_core: int = 1,
) -> HighThroughputExecutor:
    """One label's executor; machine sites (Perlmutter, Frontier) call this with their
    defaults and node shape. ``accelerators`` names the devices workers are pinned to when
    they are not simply ``range(gpus_per_node)``."""
    resources = resources or Resources()
    if node is None:
        node = node_shape(cores_per_node=cores_per_node, gpus_per_node=gpus_per_node,
                          mem_per_node=mem_per_node, nodes_per_block=nodes_per_block)
    check_blocks(nodes_per_block=nodes_per_block, init_blocks=init_blocks,
                 min_blocks=min_blocks, max_blocks=max_blocks, walltime=walltime)
    if launcher == "srun" and cores_per_node and not resources.mpi:
        # srun no longer inherits the job's --cpus-per-task (Slurm 22.05): without this the
        # worker pool's step would get one CPU.
        launcher_options = f"--cpus-per-task={cores_per_node} {launcher_options}".strip()
    provider = SlurmProvider(
        account=account,
        partition=partition,
        qos=qos,
        constraint=constraint,
        nodes_per_block=nodes_per_block,
        init_blocks=init_blocks,
        min_blocks=min_blocks,
        max_blocks=max_blocks,
        walltime=walltime,
        cores_per_node=cores_per_node,
        mem_per_node=mem_per_node,
        gpus_per_node=gpus_per_node,
        exclusive=exclusive,
        scheduler_options=scheduler_options,
        worker_init=default_worker_init() if worker_init is None else worker_init,
        launcher=provider_launcher(resources, launcher, launcher_options),
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
        accelerators=accelerators if accelerators is not None else gpus_per_node,
        cpu_affinity=cpu_affinity,
        threads_per_core=threads_per_core,
        mpi_launcher="srun",
    )


def node_shape(*, cores_per_node: int | None = None, gpus_per_node: int | None = None,
               mem_per_node: int | None = None, nodes_per_block: int = 1,
               **_: Any) -> NodeShape:
    """The node a job gets, as far as the settings say (cores unknown when unset)."""
    return NodeShape(cores=cores_per_node, gpus=gpus_per_node or 0, memory=mem_per_node,
                     nodes=nodes_per_block)
