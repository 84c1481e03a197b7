"""What a person looks at after a run: ``report.html`` (self-contained, with its PNGs),
``report.png`` (the three main panels in one image) and ``summary.json``.

The page shows the learning curve (this campaign against random selection, N seeds run
on demand into ``<run>/baseline-random[-i]``, their median and range), where the learner
sampled (a 2-D projection of the source rows with the chosen points per model
generation, and the surrogate's mean and standard deviation behind them when the spec
is given and the rows are 2-D), parity and calibration of the surrogate on results it
had not been trained on, every attempt on a timeline per worker with utilization and
resume gaps, and tables of counts, costs and quarantine reasons.
"""


from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from campaign.ledger import Ledger
from campaign.report.baseline import (
    BASELINE_DIR,
    baseline_complete,
    baseline_dir,
    completed_baselines,
    random_band,
    run_random_baseline,
    sims_to_reach,
)
from campaign.report.figures import page_figures, plot_overview
from campaign.report.page import HTML_NAME, render_html
from campaign.report.parity import parity_points
from campaign.report.plotting import Figure
from campaign.report.records import ReportError, learning_curve, open_run
from campaign.report.sampling import project_2d
from campaign.report.summary import summary_record
from campaign.report.tables import counts_table, quarantine_table, rounds_table
from campaign.report.timeline import find_gaps, resume_gaps
from campaign.spec import CampaignSpec

__all__ = ["BASELINE_DIR", "HTML_NAME", "Figure", "ReportError", "baseline_dir",
           "completed_baselines", "counts_table", "find_gaps", "learning_curve", "open_run",
           "parity_points", "project_2d", "quarantine_table", "random_band", "resume_gaps",
           "rounds_table", "run_random_baseline", "sims_to_reach", "summarize"]

logger = logging.getLogger(__name__)


def summarize(run_dir: str | Path, spec: CampaignSpec | None = None,
              baseline: int | bool = 0) -> dict[str, Any]:
    """Write ``report.html`` with its PNGs, ``report.png`` and ``summary.json`` into
    ``run_dir``; returns the summary.

    With ``baseline`` = N > 0 and a ``spec`` whose promotions have a reference, random
    baselines of seeds ``spec.seed`` ... ``spec.seed + N - 1`` are run first where
    ``<run>/baseline-random[-i]`` does not hold a finished one yet (``True`` means 1).
    Every finished baseline found is compared: the learning curve shows their median and
    range, and the summary's ``sims_to_stay_below`` and ``error_ratio_at_equal_sims``
    compare with the seeds (:func:`campaign.report.headline.compare_with_random`). With a
    ``spec``, saved models are loaded for the surrogate map and the parity plot.
    """
    run_dir = Path(run_dir)
    count = int(baseline)
    if count < 0:
        raise ReportError(f"baseline must be a number of seeds >= 0, got {baseline!r}")
    ledger, store = open_run(run_dir)
    baselines: list[Ledger] = []
    try:
        promotions = [p["source"] + "-to-" + p["target"]
                      for p in ledger.fact("spec", {}).get("promotions", [])]
        has_reference = any(learning_curve(ledger, p)[0].size for p in promotions)
        if count and spec is not None and has_reference:
            for index in range(count):
                if not baseline_complete(baseline_dir(run_dir, index)):
                    run_random_baseline(run_dir, spec, index)
        baselines = [Ledger(path / "ledger.sqlite") for path in completed_baselines(run_dir)]
        summary = summary_record(ledger, store, promotions, baselines)
        if baselines:  # what the comparison cost
            summary["baseline"] = {
                "seeds": len(baselines),
                "tasks": sum(sum(sum(c.values()) for c in b.task_counts().values())
                             for b in baselines),
                "wall_seconds": sum(float(b.fact("wall_seconds", 0.0) or 0.0)
                                    for b in baselines)}
        plot_overview(run_dir / "report.png", ledger, store, promotions, baselines)
        summary["extra_reports"] = _extra_reports(run_dir, spec)
        figures, notes = page_figures(run_dir, ledger, store, promotions, baselines, spec)
        figures += _extra_figures(run_dir, summary["extra_reports"])
        (run_dir / HTML_NAME).write_text(
            render_html(run_dir, ledger, store, figures, notes, summary), encoding="utf-8")
        summary["html"] = HTML_NAME
        summary["figures"] = {figure.id: figure.file for figure in figures}
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary
    finally:
        for opened in baselines:
            opened.close()
        ledger.close()


def _extra_reports(run_dir: Path, spec: CampaignSpec | None) -> list[str]:
    """Run the spec's own report hooks; a failing hook is logged, not fatal."""
    written = []
    for hook in spec.reports if spec is not None else []:
        name = getattr(hook, "__name__", type(hook).__name__)
        try:
            path = hook(run_dir)
        except Exception as error:  # a user's figure must not lose the main report
            logger.warning("report hook %s failed: %s: %s", name, type(error).__name__, error)
            continue
        if path is not None:
            written.append(str(path))
    return written


def _extra_figures(run_dir: Path, paths: list[str]) -> list[Figure]:
    """The PNGs the spec's report hooks wrote, as figures of the page."""
    figures = []
    for path in paths:
        file = Path(path) if Path(path).is_absolute() else run_dir / path
        if file.suffix.lower() == ".png" and file.is_file():
            figures.append(Figure(f"extra-{file.stem}", str(file),
                                  f"{file.name}: written by the campaign's own report hook."))
    return figures
