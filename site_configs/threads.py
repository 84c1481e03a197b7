"""Threads in the driver process: no workers to start, for tests and quick looks.

Every task shares the driver's interpreter (and its GIL), so numpy-heavy apps overlap
only where numpy releases the GIL. Use ``local`` for real parallelism.
"""

from collections.abc import Sequence

from parsl.config import Config
from parsl.executors import ThreadPoolExecutor
from parsl.usage_tracking.levels import DISABLED

from site_configs.labels import executor_labels


def config(*, scales: Sequence[str], run_dir: str, max_threads: int = 2) -> Config:
    """A fresh Config with one ``ThreadPoolExecutor`` per label (``sim-<scale>``, ``train``).

    Args:
        scales: scale names; see :func:`site_configs.executor_labels`.
        run_dir: Parsl's run directory (logs, per-run subdirectories).
        max_threads: threads per executor, >= 1.

    Raises:
        ValueError: bad ``scales`` or ``max_threads < 1``.
    """
    if max_threads < 1:
        raise ValueError(f"max_threads must be >= 1; got {max_threads}")
    return Config(
        executors=[
            ThreadPoolExecutor(label=label, max_threads=max_threads)
            for label in executor_labels(scales)
        ],
        run_dir=run_dir,
        usage_tracking=DISABLED,
    )
