"""A probe app: where a task ran and what it was given, for placement tests and checks.

``where(x, seed=...)`` returns the input row and, as strings, the devices the task may use
(``CUDA_VISIBLE_DEVICES``, ``ROCR_VISIBLE_DEVICES``, ``ZE_AFFINITY_MASK``), the MPI
launcher prefix Parsl set (``PARSL_MPI_PREFIX``), its host and pid. Nothing is computed.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import numpy as np

SEEN = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK", "PARSL_MPI_PREFIX")


def where(x: np.ndarray, *, seed: int, **_: Any) -> dict[str, Any]:
    """``{"x": (1, d), name: value or None for each of SEEN, "host": ..., "pid": ...}``."""
    seen: dict[str, Any] = {name: os.environ.get(name) for name in SEEN}
    return {"x": np.atleast_2d(np.asarray(x, dtype=np.float64)), **seen,
            "host": socket.gethostname(), "pid": os.getpid(), "seed": seed}
