"""ALCF Polaris (PBS Pro): nodes with 4 A100 and a 32-core EPYC (64 hardware threads).

Run the campaign on a login node; Parsl submits the batch jobs. Settings follow ALCF's
Parsl guide and Parsl's bundled Polaris config: ``PBSProProvider`` with
``select ... ngpus=4``, ``-l filesystems=``, one worker per GPU, mpiexec starting one worker
pool per node (``--depth=64 --ppn 1``, ``--cpu-bind``), workers reaching the driver over
``bond0``. ALCF also suggests ``start_method="spawn"``, which this Parsl's HTEX lacks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from parsl.config import Config
from parsl.executors import HighThroughputExecutor

from campaign.resources import NodeShape, Resources
from site_configs import pbs
from site_configs.batch import build_config

CORES_PER_NODE = 32  # one EPYC 7543P, 2 hardware threads per core
MEMORY_GB = 512


def config(
    *,
    scales: Sequence[str],
    run_dir: str,
    account: str | None = None,
    queue: str = "debug",
    nodes_per_block: int = 1,
    init_blocks: int = 1,
    min_blocks: int = 0,
    max_blocks: int = 1,
    walltime: str = "01:00:00",
    filesystems: str = "home:eagle",
    gpus_per_node: int = 4,
    workers_per_node: int | None = None,
    cores_per_worker: float = 8.0,
    cpu_affinity: str = "block-reverse",
    launcher_options: str = "--depth=64 --ppn 1",
    scheduler_options: str = "",
    worker_init: str | None = None,
    interface: str | None = "bond0",
    address: str | None = None,
    cmd_timeout: int = 120,
    strategy_period: float = 5.0,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    resources: Mapping[str, Resources | None] | None = None,
) -> Config:
    """A fresh Polaris Config: one HTEX per label over whole nodes.

    Args:
        scales: scale names; see :func:`site_configs.executor_labels`.
        run_dir: Parsl's run directory (on Eagle or Grand, which compute nodes see).
        account: ALCF project.
        queue: ``debug`` (1-2 nodes), ``debug-scaling`` (up to 10) or ``prod`` (10 or more).
        filesystems: what the job mounts (``#PBS -l filesystems=``).
        gpus_per_node: GPUs given one worker each (``select ... ngpus=``).
        resources: scale name -> what one of its tasks needs (cores are physical, two
            hardware threads each); an MPI scale gets an ``MPIExecutor`` using mpiexec.

    Raises:
        ValueError: bad block or worker settings, an unknown override, or no ``bond0`` here
            (pass ``address=`` off Polaris).
    """
    return build_config(dict(locals()), executor)


def executor(label: str, *, gpus_per_node: int, resources: Resources,
             **settings: Any) -> HighThroughputExecutor:
    """One label's executor on Polaris nodes."""
    return pbs.executor(
        label,
        cpus_per_node=64,
        select_options=f"ngpus={gpus_per_node}" if gpus_per_node else "",
        gpus_per_node=gpus_per_node or None,
        launcher="mpiexec",
        resources=resources,
        node=node_shape(gpus_per_node=gpus_per_node, nodes_per_block=settings["nodes_per_block"]),
        threads_per_core=2,
        **settings,
    )


def node_shape(*, gpus_per_node: int = 4, nodes_per_block: int = 1, **_: Any) -> NodeShape:
    """A Polaris node: 32 cores, its A100s, memory."""
    return NodeShape(cores=CORES_PER_NODE, gpus=gpus_per_node, memory=MEMORY_GB,
                     nodes=nodes_per_block, gpu_kind="A100")
