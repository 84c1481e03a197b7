"""Check a campaign end to end at the smallest size before spending an allocation on it.

:func:`validate` runs a copy of the spec on the ``threads`` site into a scratch
directory: one walker per walker scale running one segment, and one task per promoted
scale (batches of one). Every app, featurizer, mapping, the learner's fit on one point
and the engine's first-result checks (the columns of a scale's results, the learned
quantity of a promotion) run as they will in the real campaign, so a misspelled
``quantity`` or a misshapen result shows up in seconds, not after the first fine
simulations of the real run.

    >>> from apps import toy
    >>> from campaign import Budget, Campaign, Promotion, Scale
    >>> spec = Campaign(name="check", scales=[
    ...     Scale("coarse", app=toy.langevin, walkers=toy.initial_walkers(4),
    ...           params={"n_steps": 200, "stride": 20}),
    ...     Scale("fine", app=toy.smeared_energy, params={"n_samples": 1024})],
    ...     promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
    ...                           learner="exact_gp", acquisition="max_variance",
    ...                           batch_size=8, quantity="enrgy")],
    ...     budget=Budget(fine=100))
    >>> report = validate(spec)
    >>> report.ok
    False
    >>> print(report.problems[0][:68])
    promotion coarse-to-fine: quantity 'enrgy' is not an output of scale
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campaign.spec import Budget, CampaignSpec

__all__ = ["ValidationReport", "smallest_copy", "validate"]


@dataclass
class ValidationReport:
    """What the smallest run did: ``ok`` when every scale committed a result and nothing
    was quarantined; ``problems`` says what went wrong, one line each."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    task_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0


def smallest_copy(spec: CampaignSpec) -> CampaignSpec:
    """``spec`` with one walker per walker scale, batches of one, one segment per walker
    and one task per promoted scale, in async mode."""
    scales = [s.model_copy(update={"walkers": s.walkers[:1]}) if s.walkers is not None else s
              for s in spec.scales]
    promotions = [p.model_copy(update={"batch_size": 1, "initial_design": 1,
                                       "retrain_every": None}) for p in spec.promotions]
    tasks = {p.target: 1 for p in spec.promotions}
    tasks.update({s.name: 1 for s in spec.scales if s.walkers is not None})
    fields = {name: getattr(spec, name) for name in type(spec).model_fields}
    fields.update(scales=scales, promotions=promotions, mode="async", stopping=[],
                  budget=Budget(rounds=1, **tasks))
    return CampaignSpec(**fields)


def validate(spec: CampaignSpec, run_dir: str | Path | None = None) -> ValidationReport:
    """Run :func:`smallest_copy` of ``spec`` on threads (into ``run_dir``, default a
    temporary directory that is removed) and report what went wrong."""
    from campaign.engine import Engine
    from campaign.ledger import Ledger

    small = smallest_copy(spec)
    with tempfile.TemporaryDirectory(prefix="campaign-validate-") as scratch:
        out = Path(run_dir) if run_dir is not None else Path(scratch) / "run"
        # the apps' behaviour is checked here, not their placement (``--site`` checks
        # each scale's resources against the real site's node): threads place nothing
        summary = Engine(small, out, site="threads", overwrite=True,
                         site_params={"resources": {}}).run()
        ledger = Ledger(out / "ledger.sqlite", read_only=True)
        try:
            quarantined = ledger.tasks(status="quarantined")
        finally:
            ledger.close()
    problems: list[str] = []
    if summary.failed:
        problems.append(_reason(summary))
    for task in quarantined:
        reason = task["reason"] or "no reason recorded"
        line = f"scale '{task['scale']}': task {task['task_id']} quarantined: {reason}"
        # the same mistake as the run's reason (which may add a did-you-mean) is one problem
        if not any(reason in p or p.split("; did you mean")[0] in reason for p in problems):
            problems.append(line)
    for scale in small.scales:
        if not summary.rows.get(scale.name) and not any(scale.name in p for p in problems):
            problems.append(f"scale '{scale.name}' committed no result "
                            f"({summary.stop_reason})")
    return ValidationReport(ok=not problems, problems=problems,
                            task_counts=summary.task_counts, rows=summary.rows,
                            wall_seconds=summary.wall_seconds)


def _reason(summary: Any) -> str:
    reason = str(summary.stop_reason)
    return reason.split("; but ", 1)[-1]
