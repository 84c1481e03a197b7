"""OLCF Frontier (Slurm): nodes with 4 AMD MI250X (8 GCDs, each seen as one GPU) and a
64-core EPYC, 56 cores of which are left to jobs (low-noise mode).

Run the campaign on a login node; Parsl submits the batch jobs. Settings follow OLCF's
Parsl example: ``SlurmProvider`` with an ``#SBATCH -A`` account, partition ``batch`` (or
``extended``), srun launcher, workers reaching the driver over ``hsn0``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from parsl.config import Config
from parsl.executors import HighThroughputExecutor

from campaign.resources import NodeShape, Resources
from site_configs import slurm
from site_configs.batch import build_config

CORES_PER_NODE = 56  # 64 less the 8 Frontier reserves for the system (core specialization)
GCDS_PER_NODE = 8
MEMORY_GB = 512  # DDR4 per node


def config(
    *,
    scales: Sequence[str],
    run_dir: str,
    account: str | None = None,
    partition: str = "batch",
    qos: str | None = None,
    nodes_per_block: int = 1,
    init_blocks: int = 1,
    min_blocks: int = 0,
    max_blocks: int = 1,
    walltime: str = "01:00:00",
    gpus_per_node: int = GCDS_PER_NODE,
    workers_per_node: int | None = None,
    cores_per_worker: float = 1.0,
    cpu_affinity: str = "block",
    launcher_options: str = "--cpu-bind=none",
    scheduler_options: str = "",
    worker_init: str | None = None,
    interface: str | None = "hsn0",
    address: str | None = None,
    cmd_timeout: int = 60,
    strategy_period: float = 5.0,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    resources: Mapping[str, Resources | None] | None = None,
) -> Config:
    """A fresh Frontier Config: one HTEX per label over whole nodes.

    Args:
        scales: scale names; see :func:`site_configs.executor_labels`.
        run_dir: Parsl's run directory (on Orion, e.g. under $MEMBERWORK).
        account: OLCF project ID (e.g. ``ABC123``).
        partition: ``batch`` or ``extended`` (long, small jobs).
        gpus_per_node: GCDs given one worker each (8 per node; 0 for CPU-only tasks).
        resources: scale name -> what one of its tasks needs (``gpus`` counts GCDs); an
            MPI scale gets an ``MPIExecutor`` using srun.

    Raises:
        ValueError: bad block or worker settings, an unknown override, or no ``hsn0`` here
            (pass ``address=`` off Frontier).
    """
    return build_config(dict(locals()), executor)


def executor(label: str, *, gpus_per_node: int, resources: Resources,
             **settings: Any) -> HighThroughputExecutor:
    """One label's executor on Frontier nodes."""
    return slurm.executor(
        label,
        constraint=None,
        cores_per_node=CORES_PER_NODE,
        mem_per_node=None,
        gpus_per_node=gpus_per_node or None,
        exclusive=True,
        launcher="srun",
        resources=resources,
        node=node_shape(gpus_per_node=gpus_per_node, nodes_per_block=settings["nodes_per_block"]),
        **settings,
    )


def node_shape(*, gpus_per_node: int = GCDS_PER_NODE, nodes_per_block: int = 1,
               **_: Any) -> NodeShape:
    """A Frontier node: the 56 cores left to jobs, its GCDs, memory."""
    return NodeShape(cores=CORES_PER_NODE, gpus=gpus_per_node, memory=MEMORY_GB,
                     nodes=nodes_per_block, gpu_kind="GCD")
