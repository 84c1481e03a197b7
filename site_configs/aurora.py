"""ALCF Aurora (PBS Pro): nodes with 6 Intel Data Center GPU Max (2 tiles each, 12 tiles)
and two 52-core Xeon Max CPUs (208 hardware threads).

Run the campaign on a login node; Parsl submits the batch jobs. Settings follow ALCF's
Parsl guide for Aurora: one worker per GPU tile (``available_accelerators`` named
``<gpu>.<tile>``), the guide's per-tile CPU affinity list, mpiexec starting one worker pool
per node (``--ppn 1``, ``--cpu-bind``), ``-l filesystems=home:flare``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from parsl.config import Config
from parsl.executors import HighThroughputExecutor

from campaign.resources import NodeShape, Resources
from site_configs import pbs
from site_configs.batch import build_config

CORES_PER_NODE = 104  # two 52-core Xeon Max, 2 hardware threads per core
MEMORY_GB = 1024  # DDR5 (each CPU also has 64 GB HBM)

# ALCF's list: each tile's worker gets 8 cores and their hyperthreads, skipping the cores
# (0 and 52) the system keeps.
TILE_AFFINITY = (
    "list:1-8,105-112:9-16,113-120:17-24,121-128:25-32,129-136:33-40,137-144:41-48,145-152"
    ":53-60,157-164:61-68,165-172:69-76,173-180:77-84,181-188:85-92,189-196:93-100,197-204"
)


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
    filesystems: str = "home:flare",
    gpus_per_node: int = 6,
    tiles_per_gpu: int = 2,
    workers_per_node: int | None = None,
    cores_per_worker: float = 1.0,
    cpu_affinity: str = TILE_AFFINITY,
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
    """A fresh Aurora Config: one HTEX per label over whole nodes, a worker per GPU tile.

    Args:
        scales: scale names; see :func:`site_configs.executor_labels`.
        run_dir: Parsl's run directory (on Flare, which compute nodes see).
        account: ALCF project.
        queue: ``debug``, ``debug-scaling`` or ``prod``.
        filesystems: what the job mounts (``#PBS -l filesystems=``).
        gpus_per_node: GPUs used per node (0 for CPU-only tasks: then set ``cpu_affinity``
            to suit, e.g. ``block``).
        tiles_per_gpu: workers per GPU, one per tile (``ZE_AFFINITY_MASK=<gpu>.<tile>``);
            1 gives each worker a whole GPU.
        interface: ALCF's guide leaves it unset (workers try every address).
        resources: scale name -> what one of its tasks needs (``gpus`` counts tiles when
            ``tiles_per_gpu=2``); an MPI scale gets an ``MPIExecutor`` using mpiexec.

    Raises:
        ValueError: bad block, tile or worker settings, or an unknown override.
    """
    return build_config(dict(locals()), executor)


def executor(
    label: str, *, gpus_per_node: int, tiles_per_gpu: int, resources: Resources,
    **settings: Any
) -> HighThroughputExecutor:
    """One label's executor on Aurora nodes."""
    node = node_shape(gpus_per_node=gpus_per_node, tiles_per_gpu=tiles_per_gpu,
                      nodes_per_block=settings["nodes_per_block"])
    if tiles_per_gpu == 2:
        tiles = [f"{gpu}.{tile}" for gpu in range(gpus_per_node) for tile in range(2)]
    else:
        tiles = [str(gpu) for gpu in range(gpus_per_node)]
    return pbs.executor(
        label,
        cpus_per_node=208,
        select_options="",
        gpus_per_node=None,
        accelerators=tiles or None,
        launcher="mpiexec",
        resources=resources,
        node=node,
        threads_per_core=2,
        **settings,
    )


def node_shape(*, gpus_per_node: int = 6, tiles_per_gpu: int = 2, nodes_per_block: int = 1,
               **_: Any) -> NodeShape:
    """An Aurora node: 104 cores, its GPUs counted in tiles (or whole GPUs), memory."""
    if gpus_per_node < 0 or tiles_per_gpu not in (1, 2):
        raise ValueError(
            f"need gpus_per_node >= 0 and tiles_per_gpu 1 or 2; got "
            f"gpus_per_node={gpus_per_node}, tiles_per_gpu={tiles_per_gpu}"
        )
    return NodeShape(cores=CORES_PER_NODE, gpus=gpus_per_node * tiles_per_gpu,
                     memory=MEMORY_GB, nodes=nodes_per_block,
                     gpu_kind="GPU tile" if tiles_per_gpu == 2 else "GPU")
