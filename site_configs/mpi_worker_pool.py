"""Parsl's worker pool (``process_worker_pool.py``) with its MPI backlog loop fixed.

In MPI mode a block's pool keeps the tasks that do not fit the free nodes in a backlog.
When a task ends, Parsl's ``MPITaskScheduler._schedule_backlog_tasks`` takes backlogged
tasks one by one and re-queues each that still does not fit, then takes the next one:
with one task left that does not fit (a 2-node task when 1 node is free), it recurses
until ``RecursionError`` and the pool stops handing out work (Parsl PR #3800, open;
seen here with 1- and 2-slot tasks sharing one executor). This module installs the fix
that PR describes (take every backlogged task once, re-queue what does not fit) and runs
Parsl's own pool script unchanged: ``python3 -m site_configs.mpi_worker_pool <the pool's
arguments>``; :data:`LAUNCH_CMD` is Parsl's launch command with that start.
"""

from __future__ import annotations

import queue
import runpy
import sys
from pathlib import Path
from typing import Any

from parsl.executors.high_throughput import mpi_resource_management
from parsl.executors.high_throughput.executor import DEFAULT_LAUNCH_CMD

POOL_SCRIPT = "process_worker_pool.py"
LAUNCH_CMD = DEFAULT_LAUNCH_CMD.replace(POOL_SCRIPT, "python3 -m site_configs.mpi_worker_pool",
                                        1)


def schedule_backlog_tasks(self: Any) -> None:
    """Try every backlogged task once, in the backlog's order; ``put_task`` starts those
    that fit and puts the others back."""
    waiting = []
    while True:
        try:
            waiting.append(self._backlog_queue.get(block=False))
        except queue.Empty:
            break
    for prioritized in waiting:
        self.put_task(prioritized.task)


def install() -> None:
    """Replace Parsl's backlog loop by :func:`schedule_backlog_tasks` in this process."""
    mpi_resource_management.MPITaskScheduler._schedule_backlog_tasks = schedule_backlog_tasks


def main() -> None:
    """Run Parsl's pool script as ``__main__`` (its spawned workers re-import it by path,
    as they do when Parsl starts it directly), with the fix installed."""
    install()
    script = Path(mpi_resource_management.__file__).with_name(POOL_SCRIPT)
    sys.argv[0] = str(script)
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
