"""Active-learning multiscale campaigns: the engine and its public API.

A campaign names its scales (plain simulation functions), the promotions between them
(featurizer, learner, acquisition, batch size) and a budget; :meth:`Campaign.run` runs
it on a Parsl site into a run directory holding a zarr store and a SQLite ledger::

    >>> from campaign import Budget, Campaign, Promotion, Scale
    >>> from apps import toy
    >>> from learners import ExactGP
    >>> from learners.acquisition import MaxVariance
    >>> demo = Campaign(
    ...     name="tiny",
    ...     scales=[Scale("coarse", app=toy.langevin, walkers=toy.initial_walkers(2)),
    ...             Scale("fine", app=toy.smeared_energy)],
    ...     promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
    ...                           learner=ExactGP(), acquisition=MaxVariance(), batch_size=2)],
    ...     budget=Budget(fine=4),
    ... )
    >>> [scale.executor_label for scale in demo.scales]
    ['sim-coarse', 'sim-fine']

The engine knows nothing of molecules: what a scale computes is the app's business.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Budget", "Campaign", "Promotion", "RunSummary", "Scale", "SpecError"]

# Names are imported on first use: workers unpickle ``campaign.task.run_app``, which
# imports this package, and must not pay for the engine, the learners and torch (measured:
# 2.2 s and 1,856 modules per worker process, 52 s for 16 workers starting at once here).
_FROM = {"Budget": "campaign.spec", "CampaignSpec": "campaign.spec",
         "Promotion": "campaign.spec", "Scale": "campaign.spec", "SpecError": "campaign.spec",
         "Campaign": "campaign.runnable", "RunSummary": "campaign.engine",
         "Engine": "campaign.engine"}


def __getattr__(name: str) -> Any:
    if name not in _FROM:
        raise AttributeError(f"module 'campaign' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_FROM[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FROM))
