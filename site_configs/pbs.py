"""Any PBS Pro cluster: workers in batch jobs that Parsl submits with qsub, one
HighThroughputExecutor per label, started on the job's nodes by mpiexec."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import PBSProProvider

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
    queue: str | None = None,
    nodes_per_block: int = 1,
    init_blocks: int = 1,
    min_blocks: int = 0,
    max_blocks: int = 1,
    walltime: str = "01:00:00",
    cpus_per_node: int = 1,
    select_options: str = "",
    filesystems: str | None = None,
    gpus_per_node: int | None = None,
    workers_per_node: int | None = None,
    cores_per_worker: float = 1.0,
    cpu_affinity: str = "none",
    launcher: str = "mpiexec",
    launcher_options: str = "--ppn 1",
    scheduler_options: str = "",
    worker_init: str | None = None,
    interface: str | None = None,
    address: str | None = None,
    cmd_timeout: int = 120,
    strategy_period: float = 5.0,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    resources: Mapping[str, Resources | None] | None = None,
) -> Config:
    """A fresh Config: one HTEX per label over a ``PBSProProvider``, encrypted.

    Every parameter but ``scales``, ``run_dir``, ``strategy_period`` and ``overrides`` is a
    per-label setting; ``overrides={"sim-fine": {"queue": "gpu"}}`` changes it for one label.
    The account and queue go on the ``qsub`` command line (``-A``, ``-q``), the rest in the
    script's ``#PBS`` lines.

    Args:
        scales: scale names; see :func:`site_configs.executor_labels`.
        run_dir: Parsl's run directory.
        cpus_per_node: ``ncpus`` in ``#PBS -l select=<nodes>:ncpus=<cpus_per_node>``.
        launcher_options: mpiexec arguments; ``--ppn 1`` starts one worker pool per node.
        filesystems: adds ``#PBS -l filesystems=<filesystems>`` (required at ALCF).
        resources: scale name -> what one of its tasks needs; an MPI scale gets an
            ``MPIExecutor`` using mpiexec.

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
    cpus_per_node: int,
    select_options: str,
    filesystems: str | None,
    gpus_per_node: int | None,
    workers_per_node: int | None,
    cores_per_worker: float,
    cpu_affinity: str,
    launcher: str,
    launcher_options: str,
    scheduler_options: str,
    worker_init: str | None,
    interface: str | None,
    address: str | None,
    cmd_timeout: int,
    accelerators: int | Sequence[str] | None = None,
    resources: Resources | None = None,
    node: NodeShape | None = None,
    threads_per_core: int = 1,
) -> HighThroughputExecutor:
    """One label's executor; machine sites (Polaris, Aurora) call this with their defaults
    and node shape."""
    resources = resources or Resources()
    if node is None:
        node = node_shape(cpus_per_node=cpus_per_node, gpus_per_node=gpus_per_node,
                          nodes_per_block=nodes_per_block)
    check_blocks(nodes_per_block=nodes_per_block, init_blocks=init_blocks,
                 min_blocks=min_blocks, max_blocks=max_blocks, walltime=walltime)
    if cpus_per_node < 1:
        raise ValueError(f"cpus_per_node must be >= 1; got {cpus_per_node}")
    header = scheduler_options
    if filesystems:
        header = f"#PBS -l filesystems={filesystems}\n{header}"
    provider = PBSProProvider(
        account=account,
        queue=queue,
        nodes_per_block=nodes_per_block,
        init_blocks=init_blocks,
        min_blocks=min_blocks,
        max_blocks=max_blocks,
        walltime=walltime,
        cpus_per_node=cpus_per_node,
        select_options=select_options,
        scheduler_options=header,
        worker_init=default_worker_init() if worker_init is None else worker_init,
        # MPICH (Cray PALS at ALCF) binds with --cpu-bind
        launcher=provider_launcher(resources, launcher, launcher_options, bind_cmd="--cpu-bind"),
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
        mpi_launcher="mpiexec",
    )


def node_shape(*, cpus_per_node: int = 1, gpus_per_node: int | None = None,
               nodes_per_block: int = 1, **_: Any) -> NodeShape:
    """The node a job asks for: ``ncpus`` (unknown when left at 1), GPUs."""
    return NodeShape(cores=cpus_per_node if cpus_per_node > 1 else None,
                     gpus=gpus_per_node or 0, nodes=nodes_per_block)
