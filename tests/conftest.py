"""Shared fixtures: a tiny Müller-Brown campaign that runs in seconds."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

from apps import toy
from campaign import Budget, Campaign, Promotion, Scale
from learners import ExactGP
from learners.acquisition import MaxVariance

# Parsl starts interchange.py and workers through PATH.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

TINY_COARSE = {"n_steps": 2000, "stride": 100}
TINY_FINE = {"n_samples": 4096}


def tiny_campaign(**changes: Any) -> Campaign:
    """Two walkers, 20-frame coarse segments, cheap fine estimates, 12 fine tasks.

    Round-locked (``mode="rounds"``) unless ``mode="async"`` is given: most engine tests
    check exact, per-round behaviour; ``test_async.py`` covers the default mode."""
    promotion: dict[str, Any] = dict(
        source="coarse", target="fine", features=toy.positions,
        learner=ExactGP(restarts=1, iterations=60), acquisition=MaxVariance(), batch_size=4,
        quantity="energy", reference=lambda: toy.reference(resolution=25),
    )
    promotion.update(changes.pop("promotion", {}))
    fields: dict[str, Any] = dict(
        name="tiny",
        scales=[Scale("coarse", app=toy.langevin, params=TINY_COARSE,
                      walkers=toy.initial_walkers(2)),
                Scale("fine", app=changes.pop("fine_app", toy.smeared_energy),
                      params=changes.pop("fine_params", TINY_FINE))],
        promotions=[Promotion(**promotion)],
        budget=Budget(fine=12),
        mode="rounds",
    )
    fields.update(changes)
    return Campaign(**fields)


@pytest.fixture
def tiny() -> Campaign:
    return tiny_campaign()
