"""This machine, one HighThroughputExecutor per label, talking over 127.0.0.1 only.

A scale whose tasks are MPI tasks (``Resources(ranks=...)``) gets Parsl's MPI mode
(``MPIExecutor``) over ``mpi_slots`` core slots: the pool's node list names this machine
once per slot, a task takes ``cores x ranks`` slots and launches its ranks with
``$PARSL_MPI_PREFIX`` (MPICH's or Open MPI's ``mpiexec``, which must be on PATH).

Each label gets its own worker pool (one LocalProvider block), so simulation and training
tasks never queue behind each other. Parsl starts the interchange (``interchange.py``) and
the pool (``process_worker_pool.py``) by name, so the directory holding them (the
environment's ``bin/``) must be on PATH when the config is loaded; the engine puts
``os.path.dirname(sys.executable)`` there, and ``worker_init`` can activate an environment.
"""

import os
from collections.abc import Mapping, Sequence
from typing import Any

from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.launchers import SimpleLauncher
from parsl.providers import LocalProvider
from parsl.usage_tracking.levels import DISABLED

from campaign.resources import NodeShape, Resources, accelerator_groups
from site_configs.labels import TRAIN_LABEL, executor_labels
from site_configs.layout import PrioritizedMPIExecutor, check_fits, label_resources

LOOPBACK = "127.0.0.1"
# Workers are limited by max_workers_per_node alone: a tiny core share per worker lets a
# 2-core laptop run more workers than cores (simulation tasks often wait on I/O or Parsl).
CORES_PER_WORKER = 0.01
HEARTBEAT_PERIOD = 2
HEARTBEAT_THRESHOLD = 15


def config(
    *,
    scales: Sequence[str],
    run_dir: str,
    workers_per_scale: int = 2,
    train_workers: int = 1,
    strategy_period: float = 0.5,
    worker_init: str = "",
    accelerators: Sequence[str] = (),
    mpi_slots: int | None = None,
    resources: Mapping[str, Resources | None] | None = None,
) -> Config:
    """A fresh Config with one ``HighThroughputExecutor`` per label on this machine.

    Labels ``sim-<scale>`` get ``workers_per_scale`` workers each, ``train`` gets
    ``train_workers``. One block per executor is started at load and kept until cleanup
    (``min_blocks = max_blocks = 1``): on one machine there is no queue to give it back to,
    and restarting a pool costs seconds. Connections are bound to 127.0.0.1 and encrypted
    (Parsl's default, CurveZMQ); usage tracking is off.

    Args:
        scales: scale names; see :func:`site_configs.executor_labels`.
        run_dir: Parsl's run directory (logs, per-run subdirectories).
        workers_per_scale: workers per simulation executor, >= 1.
        train_workers: workers of the ``train`` executor, >= 1.
        strategy_period: seconds between Parsl's scaling/status polls, > 0. The worker
            pools are launched at the first poll, so Parsl's default of 5 s delays the first
            result by seconds. Not shorter than needed: every poll writes DEBUG lines to
            parsl.log (measured, idle, three executors: 27 KiB/s at 0.1 s, 3 KiB/s at 1 s).
        worker_init: shell lines run before each worker pool starts (e.g. activating an
            environment).
        accelerators: this machine's GPUs by name (e.g. ``["0", "1"]``); each simulation
            worker is pinned to one, or to ``Resources.gpus`` of them
            (``CUDA_VISIBLE_DEVICES=0,1``), and there are no more workers than groups.
        mpi_slots: core slots of an MPI scale's executor (default: ``workers_per_scale``,
            or one task's ``cores x ranks`` if more).
        resources: scale name -> what one of its tasks needs.

    Raises:
        ValueError: bad ``scales``, a worker count below 1, ``strategy_period <= 0``, or
            a request this machine cannot meet.
    """
    if workers_per_scale < 1 or train_workers < 1:
        raise ValueError(
            f"worker counts must be >= 1; got workers_per_scale={workers_per_scale}, "
            f"train_workers={train_workers}"
        )
    if strategy_period <= 0:
        raise ValueError(f"strategy_period must be > 0; got {strategy_period}")
    if mpi_slots is not None and mpi_slots < 1:
        raise ValueError(f"mpi_slots must be >= 1; got {mpi_slots}")
    labels = executor_labels(scales)
    wanted = label_resources(labels, resources)
    node = node_shape(accelerators=accelerators, mpi_slots=mpi_slots)
    executors = []
    for label in labels:
        need = wanted[label]
        check_fits(label, need, node)
        workers = train_workers if label == TRAIN_LABEL else workers_per_scale
        if need.mpi:
            slots = mpi_slots or max(workers_per_scale, need.total_cores)
            if need.total_cores > slots:
                raise ValueError(f"{label}: a task takes {need.total_cores} core slots "
                                 f"(cores x ranks); mpi_slots={slots}")
            executors.append(PrioritizedMPIExecutor(
                label=label, address=LOOPBACK, loopback_address=LOOPBACK, encrypted=True,
                max_workers_per_block=slots, mpi_launcher="mpiexec",
                heartbeat_period=HEARTBEAT_PERIOD, heartbeat_threshold=HEARTBEAT_THRESHOLD,
                provider=_provider(slot_list(slots) + worker_init, SimpleLauncher())))
            continue
        names = list(accelerators) if label != TRAIN_LABEL else []
        if need.gpus is not None:
            names = accelerator_groups(names, need.gpus)
        executors.append(HighThroughputExecutor(
            label=label,
            address=LOOPBACK,
            loopback_address=LOOPBACK,
            max_workers_per_node=workers,
            cores_per_worker=CORES_PER_WORKER,
            available_accelerators=names,
            encrypted=True,
            # on one machine a lost interchange or pool is noticed in seconds: pools exit
            # HEARTBEAT_THRESHOLD after their interchange dies. A killed driver's
            # interchange does not die by itself (Parsl issue 3663); the engine records
            # its pids and ends them on the next start (campaign.processes)
            heartbeat_period=HEARTBEAT_PERIOD,
            heartbeat_threshold=HEARTBEAT_THRESHOLD,
            provider=_provider(worker_init),
        ))
    return Config(
        executors=executors,
        run_dir=run_dir,
        strategy_period=strategy_period,
        usage_tracking=DISABLED,
    )


def _provider(worker_init: str, launcher: Any = None) -> LocalProvider:
    """One block, started at load and kept until cleanup."""
    extra = {} if launcher is None else {"launcher": launcher}
    return LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1, worker_init=worker_init,
                         **extra)


def slot_list(slots: int) -> str:
    """Shell lines giving Parsl's MPI mode a node list naming this machine ``slots`` times
    (it reads ``$PBS_NODEFILE``; a Slurm job's own node list is hidden from it)."""
    return ("unset SLURM_NODELIST SLURM_JOB_NODELIST\n"
            'export PBS_NODEFILE="$(mktemp -t parsl-slots.XXXXXX)"\n'
            f"for _ in $(seq {slots}); do echo localhost; done > \"$PBS_NODEFILE\"\n")


def node_shape(*, accelerators: Sequence[str] = (), mpi_slots: int | None = None,
               **_: Any) -> NodeShape:
    """This machine: its cores (``mpi_slots`` when given: slots may oversubscribe), the
    accelerators named, its memory."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        memory = None
    return NodeShape(cores=mpi_slots or os.cpu_count(), gpus=len(accelerators),
                     memory=None if memory is None else round(memory, 1))
