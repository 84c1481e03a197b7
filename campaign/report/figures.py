"""Which figures the report draws: the page's PNGs in order with their captions (and a
note where one cannot be drawn), and ``report.png``, the three main panels in one image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from campaign.ledger import Ledger
from campaign.report.baseline import BASELINE_DIR, random_band
from campaign.report.parity import parity_figure, plot_calibration
from campaign.report.plotting import Figure, no_data, pyplot, save
from campaign.report.records import attempt_spans, fit_spans, learning_curve
from campaign.report.sampling import plot_sampling, surrogate_figure
from campaign.report.timeline import (
    GAP_FACTOR,
    GAP_MIN_SECONDS,
    UTILIZATION_BINS,
    find_gaps,
    plot_timeline,
    plot_utilization,
    resume_gaps,
    utilization_by_scale,
)
from campaign.spec import CampaignSpec
from campaign.store import Store


def plot_overview(path: Path, ledger: Ledger, store: Store, promotions: list[str],
          baselines: list[Ledger]) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    _plot_learning_curves(axes[0], ledger, promotions, baselines)
    if promotions:
        plot_sampling(axes[1], ledger, store, promotions[0])
    else:
        no_data(axes[1], "no promotions")
    plot_timeline(axes[2], attempt_spans(ledger), [], [])
    figure.suptitle(f"campaign '{ledger.fact('name')}': {ledger.fact('stop_reason') or 'running'}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def page_figures(run_dir: Path, ledger: Ledger, store: Store, promotions: list[str],
             baselines: list[Ledger], spec: CampaignSpec | None
             ) -> tuple[list[Figure], dict[str, str]]:
    """Write the page's PNGs; returns the figures and, per section, a note saying what
    could not be shown and why."""
    plt = pyplot()
    figures: list[Figure] = []
    notes: dict[str, str] = {}
    columns = max(1, len(promotions))

    figure, axes = plt.subplots(1, columns, figsize=(6.4 * columns, 4.4), squeeze=False)
    for axis, name in zip(axes[0], promotions or [""], strict=True):
        _plot_learning_curves(axis, ledger, [name] if name else [], baselines)
    if not baselines:
        about = ("No random baseline in this run (campaign report DIR --baseline N runs N "
                 "seeds of it, each the same budget again).")
    elif len(baselines) == 1:
        about = ("Dashed: the same campaign with random selection, one seed "
                 f"({BASELINE_DIR}/), so no spread between seeds is shown "
                 "(--baseline N runs N seeds).")
    else:
        about = (f"Dashed: the median of {len(baselines)} seeds of the same campaign with "
                 f"random selection ({BASELINE_DIR}*/), shaded: their range (min to max), "
                 "each seed interpolated linearly between its fits, over the simulation "
                 "counts every seed reached.")
    figures.append(save(figure, run_dir, "learning-curve",
                         "Surrogate RMSE against the reference after each model fit, "
                         "against the number of finer-scale simulations it was trained on. "
                         + about))

    figure, axes = plt.subplots(1, columns, figsize=(6.4 * columns, 4.8), squeeze=False)
    for axis, name in zip(axes[0], promotions or [""], strict=True):
        if name:
            plot_sampling(axis, ledger, store, name)
        else:
            no_data(axis, "no promotions")
    figures.append(save(figure, run_dir, "sampling",
                         "Source rows (grey; projected on their first two principal "
                         "components when they have more than two columns) and the rows "
                         "chosen for the finer scale, coloured by the round or model "
                         "generation that chose them (0: the seed design); x: quarantined."))

    surrogate = surrogate_figure(run_dir, store, spec, promotions)
    if isinstance(surrogate, Figure):
        figures.append(surrogate)
    else:
        notes["surrogate"] = surrogate

    parity, pooled = parity_figure(run_dir, ledger, store, spec, promotions)
    if isinstance(parity, Figure):
        figures.append(parity)
    else:
        notes["parity"] = parity
    notes["rounds"] = rounds_note(pooled)

    calibrated = [(name, [r for r in ledger.rounds(name) if r.get("calibration")])
                  for name in promotions]
    calibrated = [(name, records) for name, records in calibrated if records]
    if calibrated:
        figure, axes = plt.subplots(1, len(calibrated), figsize=(6.4 * len(calibrated), 4),
                                    squeeze=False)
        for axis, (name, records) in zip(axes[0], calibrated, strict=True):
            plot_calibration(axis, name, records)
        figures.append(save(figure, run_dir, "calibration",
                             "Fraction of the new finer-scale results inside each model's "
                             "central 50% and 90% predictive intervals, measured before the "
                             "model was trained on them (the rounds' prospective calibration "
                             "records; n: results scored). Dotted: the nominal levels."))
    else:
        notes["calibration"] = ("No prospective calibration recorded (a model is scored on "
                                "results that arrive after it was fitted).")

    spans = attempt_spans(ledger)
    fits = fit_spans(ledger, promotions)
    resumed = int(ledger.fact("resumed", 0) or 0)
    sessions = ledger.fact("sessions")
    if sessions is not None:  # recorded driver start times: the gaps are exact
        gaps = resume_gaps(sessions, ledger.attempts(), fits)
        gap_text = (f"Shaded: the {len(gaps)} resume gap(s), from the last event the "
                    "previous driver recorded (an attempt submitted, started or ended, or a "
                    "fit ended) to the first attempt started after the next driver began "
                    "(the ledger records when each driver started).")
        resume_text = "" if resumed else " The run was never resumed."
    else:  # a run recorded before driver start times were kept
        gaps = find_gaps([span["started"] for span in spans])
        gap_text = (f"Shaded: gaps between attempt starts longer than {GAP_FACTOR:g}x the "
                    f"median and at least {GAP_MIN_SECONDS:g} s ({len(gaps)} here; this run's "
                    "ledger predates recorded driver start times).")
        resume_text = (f" The ledger records {resumed} resume(s)." if resumed
                       else " The run was never resumed.")
    lanes = len({span["worker"] for span in spans}) + (1 if fits else 0)
    figure, axis = plt.subplots(figsize=(11, max(3.0, min(14.0, 1.2 + 0.28 * lanes))))
    plot_timeline(axis, spans, fits, gaps)
    figures.append(save(figure, run_dir, "timeline",
                         "Every attempt, one lane per worker (host/pid/thread), coloured by "
                         "scale; red edge: an attempt that failed or was quarantined; "
                         "the lane 'train' holds the model fits. " + gap_text + resume_text))

    figure, axis = plt.subplots(figsize=(11, 3.6))
    utilization = plot_utilization(axis, spans, gaps)
    per_scale = "; ".join(f"{row['scale']} {row['utilization']:.2f} on {row['workers']} "
                          f"worker{'s' if row['workers'] != 1 else ''}"
                          for row in utilization_by_scale(spans)[:-1])
    figures.append(save(figure, run_dir, "utilization",
                         "Mean number of attempts running in each of "
                         f"{UTILIZATION_BINS} time bins, per scale and in all, against the "
                         f"number of workers seen; busy time / (workers x span) = "
                         f"{utilization:.2f} in all"
                         + (f", per scale (its own workers): {per_scale}" if per_scale else "")
                         + ". " + gap_text))
    return figures, notes


def rounds_note(pooled: dict[str, float]) -> str:
    """What the models table's errors are, and why they differ from the parity plot's."""
    text = ("Each row is one fitted model. Reference RMSE: that model's mean against the "
            "reference values (the learning curve). Prospective RMSE: that model on the "
            "finer-scale results that arrived after it was fitted and before the next "
            "one (n scored), the same results its coverage is measured on.")
    if pooled:
        figures = ", ".join(f"{name} {rmse:.3g}" for name, rmse in pooled.items())
        text += (f" The parity plot's RMSE ({figures}) pools the prospective predictions of "
                 "every model, early ones included: it is no one model's error, and is "
                 "usually larger than the newest models' errors here.")
    return text


def _plot_learning_curves(axis: Any, ledger: Ledger, promotions: list[str],
                          baselines: list[Ledger]) -> None:
    plotted = False
    for name in promotions:
        label, key = "this campaign", "reference_rmse"
        n, error = learning_curve(ledger, name)
        if not len(n):
            key = "prospective_rmse"
            n, error = learning_curve(ledger, name, key)
            label += " (prospective error)"
        if len(n):
            axis.plot(n, error, "o-", label=f"{name}: {label}", markersize=4)
            plotted = True
        curves = [learning_curve(b, name, key) for b in baselines]
        grid, median, low, high = random_band(curves)
        if len(grid):
            seeds = sum(1 for c in curves if len(c[0]))
            what = "random selection" + (f" (median of {seeds} seeds)" if seeds > 1 else "")
            line, = axis.plot(grid, median, "s--", label=f"{name}: {what}", markersize=4)
            if seeds > 1:
                axis.fill_between(grid, low, high, alpha=0.2, color=line.get_color(),
                                  label=f"{name}: random range (min to max)")
            plotted = True
    axis.set_xlabel("finer-scale simulations (training points)")
    axis.set_ylabel("surrogate RMSE vs reference")
    axis.set_title("learning curve" + (f": {promotions[0]}" if len(promotions) == 1 else ""))
    if plotted:
        axis.set_yscale("log")
        axis.legend(fontsize=8)
    else:
        axis.text(0.5, 0.5, "no scored rounds yet", ha="center", transform=axis.transAxes)
