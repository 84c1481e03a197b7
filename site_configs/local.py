"""This machine, one HighThroughputExecutor per label, talking over 127.0.0.1 only.

Each label gets its own worker pool (one LocalProvider block), so simulation and training
tasks never queue behind each other. Parsl starts the interchange (``interchange.py``) and
the pool (``process_worker_pool.py``) by name, so the directory holding them (the
environment's ``bin/``) must be on PATH when the config is loaded; the engine puts
``os.path.dirname(sys.executable)`` there, and ``worker_init`` can activate an environment.
"""

from collections.abc import Sequence

from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider
from parsl.usage_tracking.levels import DISABLED

from site_configs.labels import TRAIN_LABEL, executor_labels

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

    Raises:
        ValueError: bad ``scales``, a worker count below 1 or ``strategy_period <= 0``.
    """
    if workers_per_scale < 1 or train_workers < 1:
        raise ValueError(
            f"worker counts must be >= 1; got workers_per_scale={workers_per_scale}, "
            f"train_workers={train_workers}"
        )
    if strategy_period <= 0:
        raise ValueError(f"strategy_period must be > 0; got {strategy_period}")
    executors = [
        HighThroughputExecutor(
            label=label,
            address=LOOPBACK,
            loopback_address=LOOPBACK,
            max_workers_per_node=train_workers if label == TRAIN_LABEL else workers_per_scale,
            cores_per_worker=CORES_PER_WORKER,
            encrypted=True,
            # on one machine a lost interchange or pool is noticed in seconds: pools exit
            # HEARTBEAT_THRESHOLD after their interchange dies. A killed driver's
            # interchange does not die by itself (Parsl issue 3663); the engine records
            # its pids and ends them on the next start (campaign.processes)
            heartbeat_period=HEARTBEAT_PERIOD,
            heartbeat_threshold=HEARTBEAT_THRESHOLD,
            provider=LocalProvider(
                init_blocks=1,
                min_blocks=1,
                max_blocks=1,
                worker_init=worker_init,
            ),
        )
        for label in executor_labels(scales)
    ]
    return Config(
        executors=executors,
        run_dir=run_dir,
        strategy_period=strategy_period,
        usage_tracking=DISABLED,
    )
