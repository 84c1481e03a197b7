"""Progress: where a running campaign stands, as plain values and as one log line.

Owns: :func:`progress_snapshot` (what ``campaign.live`` shows and the log prints), its
text, and :class:`ProgressReporter`, which hands it to an ``on_progress`` callback. It
reads only the in-memory state, the spec and the clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from campaign.budget import budget_used
from campaign.spec import CampaignSpec
from campaign.state import CampaignState

logger = logging.getLogger("campaign.engine")  # the progress lines users grep for
LIVE_SECONDS = 1.0  # how often an ``on_progress`` callback is given a snapshot


class ProgressReporter:
    """Gives ``on_progress`` a snapshot at most every ``LIVE_SECONDS`` (one that raises
    is logged once and not called again: a display must never end a campaign), and
    writes the progress log lines."""

    def __init__(self, on_progress: Callable[[dict[str, Any]], None] | None,
                 snapshot: Callable[[], dict[str, Any]]) -> None:
        self.on_progress, self.snapshot = on_progress, snapshot
        self.last_live = float("-inf")

    def report(self, *, final: bool = False) -> None:
        if self.on_progress is None:
            return
        now = time.monotonic()
        if not final and now - self.last_live < LIVE_SECONDS:
            return
        self.last_live = now
        try:
            self.on_progress(self.snapshot())
        except Exception as error:  # a display must never end a campaign
            logger.warning("progress callback %r failed (%s: %s); not calling it again",
                           self.on_progress, type(error).__name__, error)
            self.on_progress = None

    def log_round(self, round_index: int) -> None:
        self.report()
        logger.info("round %d | %s", round_index, " | ".join(progress_parts(self.snapshot())))

    def log_progress(self) -> None:
        snapshot = self.snapshot()
        logger.info("%.0f s | %s", snapshot["elapsed_seconds"],
                    " | ".join(progress_parts(snapshot)))


def progress_snapshot(spec: CampaignSpec, state: CampaignState, elapsed: float,
                      stop_reason: str | None) -> dict[str, Any]:
    """Where the running campaign stands, as plain JSON-able values.

    Returns ``{"elapsed_seconds", "mode", "scales", "promotions", "budget_used",
    "seconds_left", "stop_reason"}``:

    * ``scales``: per scale ``{"name", "committed_rows", "tasks", "budget",
      "monitor"}``; ``tasks`` counts ``submitted`` (every task recorded, whatever
      became of it), ``running`` (attempts in flight: queued or running on the
      executor), ``waiting`` (of those, attempts no worker has started yet: queued, or
      their block not started), ``done`` and ``quarantined`` (outcomes committed), ``failed``
      (failed attempts retried by this driver), ``lost`` (attempts the
      infrastructure lost, resubmitted without using a retry); ``budget`` is the
      scale's task budget (None: none); ``monitor`` its segment monitor's
      ``{"restart", "stop"}`` counts (None: not monitored).
    * ``promotions``: per promotion ``{"name", "generation", "n_train",
      "fit_seconds", "reference_rmse", "prospective_rmse", "recorded", "scored"}``
      from its newest round record (``generation``: the newest model's index, None
      before the first; ``recorded``: whether it has a record at all); ``scored``
      is the newest prospectively scored model's ``{"model", "n", "rmse",
      "coverage_50", "coverage_90"}`` (None: none yet).
    * ``budget_used``: ``{"fraction", "what"}`` of the most used budget that ends
      the run (None: no such budget); ``seconds_left``: the time left that fraction
      implies at the pace so far (None: nothing used yet).
    * ``stop_reason``: why the campaign stops or stopped (None while it runs on).
    """
    scales = []
    for name, held in state.scales.items():
        monitor = None
        if held.monitor is not None:
            actions = held.monitor.actions
            monitor = {"restart": int(actions["restart"]), "stop": int(actions["stop"])}
        scales.append({
            "name": name, "committed_rows": int(held.committed_rows),
            "tasks": {"submitted": int(held.tasks_recorded), "running": int(held.in_flight),
                      "waiting": int(min(held.waiting, held.in_flight)),
                      "done": int(held.tasks.get("done", 0)),
                      "failed": int(held.failed_attempts), "lost": int(held.lost_attempts),
                      "quarantined": int(held.tasks.get("quarantined", 0))},
            "budget": spec.budget.tasks.get(name), "monitor": monitor})
    promotions = []
    for promotion_state in state.promotions:
        record = promotion_state.last_record
        promotions.append({
            "name": promotion_state.name,
            "generation": promotion_state.generation if promotion_state.fitted else None,
            "n_train": _number(record.get("n_train"), int),
            **{key: _number(record.get(key), float)
               for key in ("fit_seconds", "reference_rmse", "prospective_rmse")},
            "recorded": bool(record), "scored": promotion_state.scored})
    used = budget_used(spec, state, elapsed)
    seconds_left = None
    if used is not None and used[0] > 0:
        seconds_left = elapsed * (1.0 - used[0]) / used[0]
    return {"elapsed_seconds": elapsed, "mode": spec.mode, "scales": scales,
            "promotions": promotions,
            "budget_used": None if used is None else {"fraction": float(used[0]),
                                                      "what": used[1]},
            "seconds_left": seconds_left, "stop_reason": stop_reason or None}


def progress_parts(snapshot: dict[str, Any]) -> list[str]:
    """One grep-able progress line's parts: per scale rows, tasks (of the budget),
    running and quarantined; per promotion the newest model's errors; the budget used
    and the time left it implies."""
    parts = []
    for scale in snapshot["scales"]:
        tasks, limit, extra = scale["tasks"], scale["budget"], ""
        if tasks["quarantined"]:
            extra += f", {tasks['quarantined']} quarantined"
        if tasks.get("waiting"):
            extra += f", {tasks['waiting']} waiting to start"
        if tasks.get("lost"):
            extra += f", {tasks['lost']} lost to the infrastructure"
        if scale["monitor"] is not None:
            actions = scale["monitor"]
            extra += f", monitor: {actions['restart']} restarts, {actions['stop']} stops"
        parts.append(f"{scale['name']} {scale['committed_rows']} rows ({tasks['submitted']}"
                     f"{'' if limit is None else f'/{limit}'} tasks, "
                     f"{tasks['running']} running{extra})")
    for promotion in snapshot["promotions"]:
        if promotion["recorded"]:
            parts.append(f"{promotion['name']}{error_text(promotion)}")
    used, left = snapshot["budget_used"], snapshot["seconds_left"]
    if used is not None and left is not None:
        parts.append(f"budget {100 * used['fraction']:.0f}% used ({used['what']}), "
                     f"~{left:.0f} s left")
    return parts


def error_text(record: dict[str, Any]) -> str:
    """A model's fit time and errors, as a log line's tail."""
    text = ""
    if record.get("fit_seconds") is not None:
        text += f" fit {record['fit_seconds']:.2f} s"
    if record.get("reference_rmse") is not None:
        text += f" reference rmse {record['reference_rmse']:.3g}"
    if record.get("prospective_rmse") is not None:
        text += f" prospective rmse {record['prospective_rmse']:.3g}"
    return text


def score_of(record: dict[str, Any], model_index: int) -> dict[str, Any]:
    """The prospective score in a round record that has a ``calibration`` entry."""
    calibration = record["calibration"]
    return {"model": int(model_index), "n": int(calibration["n"]),
            "rmse": float(calibration["rmse"]),
            "coverage_50": float(calibration["coverage_50"]),
            "coverage_90": float(calibration["coverage_90"])}


def _number(value: Any, kind: type) -> Any:
    """``value`` as a plain int or float (JSON-able), None if missing."""
    return None if value is None else kind(value)
