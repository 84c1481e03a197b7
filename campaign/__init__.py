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

from pathlib import Path
from typing import Any

from campaign.engine import Engine, RunSummary
from campaign.spec import Budget, CampaignSpec, Promotion, Scale, SpecError

__all__ = ["Budget", "Campaign", "Promotion", "RunSummary", "Scale", "SpecError"]


class Campaign(CampaignSpec):
    """A campaign spec that can run itself (see :class:`campaign.spec.CampaignSpec`)."""

    def run(self, site: str = "local", out: str | Path | None = None, *,
            overwrite: bool = False, resume: bool = False, grace_period: float = 25.0,
            script: str | None = None, **site_params: Any) -> RunSummary:
        """Run on Parsl site ``site`` (see ``site_configs.SITES``) into ``out``
        (default ``runs/<name>``). Refuses a directory holding another campaign, or a
        previous run of this one unless ``overwrite`` (start again) or ``resume``
        (continue: committed results kept, unfinished tasks run again)."""
        run_dir = Path(out) if out is not None else Path("runs") / self.name
        engine = Engine(self, run_dir, site=site, site_params=site_params, script=script,
                        overwrite=overwrite, resume=resume, grace_period=grace_period)
        return engine.run()
