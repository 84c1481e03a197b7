"""Tasks over time: every attempt on a lane per worker, the resume gaps, and how many
attempts ran at once (utilization)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from campaign.report.plotting import no_data, scale_colours

GAP_FACTOR = 10.0  # a gap between attempt starts this many times the median is marked


GAP_MIN_SECONDS = 1.0  # ... and only if it is at least this long


UTILIZATION_BINS = 120


def resume_gaps(sessions: list[float], attempts: list[dict[str, Any]],
                fits: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(from, to) of each resume's downtime: from the last event recorded before a driver
    started (an attempt submitted, started or ended, a fit ended) to the first attempt
    that started after it (the driver's own start if none did)."""
    events = np.sort(np.asarray(
        [a[key] for a in attempts for key in ("submitted", "started", "ended")
         if a.get(key) is not None] + [end for _, end in fits], np.float64))
    starts = np.sort(np.asarray([a["started"] for a in attempts
                                 if a.get("started") is not None], np.float64))
    gaps = []
    for began in sorted(sessions)[1:]:
        before = events[events < began]
        if not len(before):
            continue
        after = starts[starts >= began]
        gaps.append((float(before[-1]), float(after[0]) if len(after) else float(began)))
    return gaps


def find_gaps(starts: list[float], factor: float = GAP_FACTOR,
              minimum: float = GAP_MIN_SECONDS) -> list[tuple[float, float]]:
    """(from, to) of each interval between consecutive attempt starts longer than
    ``factor`` times the median interval and at least ``minimum`` seconds."""
    times = np.sort(np.asarray(starts, np.float64))
    if len(times) < 3:
        return []
    intervals = np.diff(times)
    threshold = max(factor * float(np.median(intervals)), minimum)
    return [(float(times[i]), float(times[i + 1]))
            for i in np.flatnonzero(intervals > threshold)]


def plot_timeline(axis: Any, spans: list[dict[str, Any]], fits: list[tuple[float, float]],
                   gaps: list[tuple[float, float]]) -> None:
    axis.set_title("attempts per worker")
    if not spans:
        no_data(axis, "no attempt has run yet")
        return
    start = min(span["started"] for span in spans)
    workers = sorted({span["worker"] for span in spans})
    lane = {worker: i for i, worker in enumerate(workers)}
    colours = scale_colours(list({span["scale"] for span in spans}))
    grouped: dict[tuple[str, str, bool], list[tuple[float, float]]] = {}
    for span in spans:  # one call per lane and kind: thousands of bars stay fast
        grouped.setdefault((span["worker"], span["scale"], span["failed"]), []).append(
            (span["started"] - start, span["ended"] - span["started"]))
    for (worker, scale, failed), bars in grouped.items():
        axis.broken_barh(bars, (lane[worker] - 0.35, 0.7), facecolors=colours[scale],
                         edgecolors="red" if failed else "none", linewidth=1.0)
    labels = list(workers)
    if fits:
        axis.broken_barh([(low - start, high - low) for low, high in fits],
                         (len(workers) - 0.35, 0.7), facecolors="0.3")
        labels.append("train")
    for low, high in gaps:
        axis.axvspan(low - start, high - start, color="orange", alpha=0.25)
    from matplotlib.patches import Patch

    handles = [Patch(color=colour, label=scale) for scale, colour in colours.items()]
    if any(span["failed"] for span in spans):
        handles.append(Patch(facecolor="white", edgecolor="red", label="failed attempt"))
    if len(labels) <= 40:
        axis.set_yticks(range(len(labels)), labels, fontsize=6)
    axis.set_ylabel("worker")
    end = max([span["ended"] for span in spans] + [f[1] for f in fits])
    axis.set_xlabel("seconds since the first attempt started")
    if math.isfinite(end - start):
        axis.set_xlim(0, max(end - start, 1e-6) * 1.02)
    axis.legend(handles=handles, fontsize=7, loc="upper right")


def utilization_by_scale(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scale, then ``all``: its workers (those that ran one of its attempts), busy
    seconds, and utilization = busy / (its workers x the run's span, first attempt start
    to last attempt end). A scale whose workers idle half the run reads 0.5."""
    if not spans:
        return []
    start = min(span["started"] for span in spans)
    span = max(max(s["ended"] for s in spans) - start, 1e-9)
    rows = []
    for scale in [*sorted({s["scale"] for s in spans}), None]:
        mine = [s for s in spans if scale is None or s["scale"] == scale]
        workers = len({s["worker"] for s in mine})
        busy = sum(s["ended"] - s["started"] for s in mine)
        rows.append({"scale": "all" if scale is None else scale, "workers": workers,
                     "attempts": len(mine), "busy seconds": round(busy, 3),
                     "span seconds": round(span, 3),
                     "utilization": round(busy / (workers * span), 3)})
    return rows


def plot_utilization(axis: Any, spans: list[dict[str, Any]],
                      gaps: list[tuple[float, float]]) -> float:
    """Mean attempts running per time bin; returns busy / (workers x span)."""
    axis.set_title("utilization")
    if not spans:
        no_data(axis, "no attempt has run yet")
        return 0.0
    start = min(span["started"] for span in spans)
    end = max(span["ended"] for span in spans)
    workers = len({span["worker"] for span in spans})
    colours = scale_colours(list({span["scale"] for span in spans}))

    edges = np.linspace(0.0, max(end - start, 1e-9), UTILIZATION_BINS + 1)

    def mean_running(selected: list[dict[str, Any]]) -> np.ndarray:
        """Mean number of ``selected`` attempts running in each bin (exact: the integral
        of the running count, piecewise linear between events, read at the bin edges)."""
        times = np.asarray([s["started"] for s in selected] + [s["ended"] for s in selected])
        steps = np.asarray([1] * len(selected) + [-1] * len(selected))
        order = np.argsort(times, kind="stable")
        times, count = times[order] - start, np.cumsum(steps[order])
        area = np.concatenate([[0.0], np.cumsum(count[:-1] * np.diff(times))])
        return np.diff(np.interp(edges, times, area)) / np.diff(edges)

    for scale, colour in colours.items():
        axis.stairs(mean_running([s for s in spans if s["scale"] == scale]), edges,
                    color=colour, label=scale, linewidth=1)
    axis.stairs(mean_running(spans), edges, color="k", label="all", linewidth=1.4)
    axis.axhline(workers, color="0.5", linestyle="--", linewidth=1, label=f"{workers} workers")
    for low, high in gaps:
        axis.axvspan(low - start, high - start, color="orange", alpha=0.25)
    axis.set_xlabel("seconds since the first attempt started")
    axis.set_ylabel(f"attempts running (mean over {edges[1]:.3g} s)")
    axis.legend(fontsize=7, loc="upper right")
    busy = sum(s["ended"] - s["started"] for s in spans)
    return busy / max(workers * (end - start), 1e-9)
