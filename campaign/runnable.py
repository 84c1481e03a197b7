"""A campaign spec that can run itself: :class:`Campaign`, the name users import.

It lives apart from ``campaign.spec`` so that the spec imports nothing of the engine
(``campaign/`` has no import circle); this module is the one place that joins the two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from campaign.spec import CampaignSpec

__all__ = ["Campaign"]


class Campaign(CampaignSpec):
    """A campaign spec that can run itself (see :class:`~campaign.spec.CampaignSpec`)."""

    def run(self, site: str = "local", out: str | Path | None = None, *,
            overwrite: bool = False, resume: bool = False, grace_period: float = 25.0,
            script: str | None = None, **site_params: Any) -> Any:
        """Run on Parsl site ``site`` (see ``site_configs.SITES``) into ``out``
        (default ``runs/<name>``) and return a ``campaign.engine.RunSummary``. Refuses a
        directory holding another campaign, or a previous run of this one unless
        ``overwrite`` (start again) or ``resume`` (continue: committed results kept,
        unfinished tasks run again)."""
        from campaign.engine import Engine

        run_dir = Path(out) if out is not None else Path("runs") / self.name
        engine = Engine(self, run_dir, site=site, site_params=site_params, script=script,
                        overwrite=overwrite, resume=resume, grace_period=grace_period)
        return engine.run()
