"""Benchmarks, run from the checkout (``python -m benchmarks.NAME``); not installed.

Parsl workers unpickle a benchmark's apps by module name, so they must import
``benchmarks`` too: the checkout is put on the ``PYTHONPATH`` that workers inherit.
"""

import os
from pathlib import Path

_CHECKOUT = str(Path(__file__).resolve().parents[1])
if _CHECKOUT not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (_CHECKOUT, os.environ.get("PYTHONPATH")) if p)
