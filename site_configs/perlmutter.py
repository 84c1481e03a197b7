"""NERSC Perlmutter (Slurm): GPU nodes (4 A100, 1 EPYC 7763) or CPU nodes (2 EPYC 7763).

Run the campaign on a login node; Parsl submits the batch jobs. Settings follow NERSC's
Parsl and Slurm documentation: ``--constraint gpu|cpu``, ``--qos regular|debug|...``,
workers reach the driver over the high-speed network (``hsn0``), srun starts one worker
pool per node. Give AA and CG scales different node types with ``overrides``, e.g.
``{"sim-aa": {"node_type": "gpu"}, "sim-cg": {"node_type": "cpu"}}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from parsl.config import Config
from parsl.executors import HighThroughputExecutor

from campaign.resources import NodeShape, Resources
from site_configs import slurm
from site_configs.batch import build_config

# node type -> (Slurm CPUs = hardware threads per node, GPUs per node, threads per core)
NODE_TYPES = {"gpu": (128, 4, 2), "cpu": (256, 0, 2)}
MEMORY_GB = {"gpu": 256, "cpu": 512}  # NERSC: 256 GB DDR4 (GPU nodes), 512 GB (CPU nodes)


def config(
    *,
    scales: Sequence[str],
    run_dir: str,
    account: str | None = None,
    node_type: str = "gpu",
    qos: str = "regular",
    nodes_per_block: int = 1,
    init_blocks: int = 1,
    min_blocks: int = 0,
    max_blocks: int = 1,
    walltime: str = "01:00:00",
    gpus_per_node: int | None = None,
    workers_per_node: int | None = None,
    cores_per_worker: float | None = None,
    cpu_affinity: str = "block",
    launcher_options: str = "--cpu-bind=none",
    scheduler_options: str = "",
    worker_init: str | None = None,
    interface: str | None = "hsn0",
    address: str | None = None,
    cmd_timeout: int = 120,
    strategy_period: float = 5.0,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    resources: Mapping[str, Resources | None] | None = None,
) -> Config:
    """A fresh Perlmutter Config: one HTEX per label over whole nodes of ``node_type``.

    Args:
        scales: scale names; see :func:`site_configs.executor_labels`.
        run_dir: Parsl's run directory (on a file system compute nodes see, e.g. $SCRATCH).
        account: NERSC project (e.g. ``m1234``; some projects use ``m1234_g`` for GPU hours).
        node_type: ``gpu`` (4 A100 each, one worker per GPU) or ``cpu`` (128 cores, one
            worker per core by default).
        gpus_per_node: default 4 on GPU nodes, none on CPU nodes.
        cores_per_worker: default 1 on GPU nodes (workers = GPUs), 2 hardware threads (one
            core) on CPU nodes.
        resources: scale name -> what one of its tasks needs (cores are physical cores,
            two hardware threads each); an MPI scale gets an ``MPIExecutor`` using srun.

    Raises:
        ValueError: an unknown node type, bad block or worker settings, an unknown
            override, or no ``hsn0`` here (pass ``address=`` off Perlmutter).
    """
    return build_config(dict(locals()), executor)


def executor(
    label: str,
    *,
    node_type: str,
    gpus_per_node: int | None,
    cores_per_worker: float | None,
    resources: Resources,
    **settings: Any,
) -> HighThroughputExecutor:
    """One label's executor on ``node_type`` nodes."""
    node = node_shape(node_type=node_type, gpus_per_node=gpus_per_node,
                      nodes_per_block=settings["nodes_per_block"])
    cpus, _, threads_per_core = NODE_TYPES[node_type]
    gpus = node.gpus
    if cores_per_worker is None:
        cores_per_worker = 1.0 if gpus else float(threads_per_core)
    return slurm.executor(
        label,
        partition=None,
        constraint=node_type,
        cores_per_node=cpus,
        mem_per_node=None,
        gpus_per_node=gpus or None,
        cores_per_worker=cores_per_worker,
        exclusive=True,
        launcher="srun",
        resources=resources,
        node=node,
        threads_per_core=threads_per_core,
        **settings,
    )


def node_shape(*, node_type: str = "gpu", gpus_per_node: int | None = None,
               nodes_per_block: int = 1, **_: Any) -> NodeShape:
    """A Perlmutter node of ``node_type``: physical cores, A100s, memory."""
    if node_type not in NODE_TYPES:
        raise ValueError(f"node_type={node_type!r}: expected one of {', '.join(NODE_TYPES)}")
    cpus, gpus, threads_per_core = NODE_TYPES[node_type]
    return NodeShape(cores=cpus // threads_per_core,
                     gpus=gpus if gpus_per_node is None else gpus_per_node,
                     memory=MEMORY_GB[node_type], nodes=nodes_per_block, gpu_kind="A100")
