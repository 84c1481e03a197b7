"""Threads in the driver process: no workers to start, for tests and quick looks.

Every task shares the driver's interpreter (and its GIL), so numpy-heavy apps overlap
only where numpy releases the GIL. Use ``local`` for real parallelism.
"""

import os
from collections.abc import Mapping, Sequence
from typing import Any

from parsl.config import Config
from parsl.executors import ThreadPoolExecutor
from parsl.usage_tracking.levels import DISABLED

from campaign.resources import NodeShape, Resources
from site_configs.labels import executor_labels
from site_configs.layout import check_fits, label_resources


def config(*, scales: Sequence[str], run_dir: str, max_threads: int = 2,
           resources: Mapping[str, Resources | None] | None = None) -> Config:
    """A fresh Config with one ``ThreadPoolExecutor`` per label (``sim-<scale>``, ``train``).

    Args:
        scales: scale names; see :func:`site_configs.executor_labels`.
        run_dir: Parsl's run directory (logs, per-run subdirectories).
        max_threads: threads per executor, >= 1.
        resources: scale name -> what one of its tasks needs (no MPI tasks, no GPUs).

    Raises:
        ValueError: bad ``scales``, ``max_threads < 1`` or a request threads cannot meet.
    """
    if max_threads < 1:
        raise ValueError(f"max_threads must be >= 1; got {max_threads}")
    node = node_shape()
    for label, need in label_resources(executor_labels(scales), resources).items():
        check_fits(label, need, node)
    return Config(
        executors=[
            ThreadPoolExecutor(label=label, max_threads=max_threads)
            for label in executor_labels(scales)
        ],
        run_dir=run_dir,
        usage_tracking=DISABLED,
    )


def node_shape(**_: Any) -> NodeShape:
    """This machine's cores; threads pin no GPUs and run no MPI tasks."""
    return NodeShape(cores=os.cpu_count(), gpus=0, mpi=False)
