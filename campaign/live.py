"""A live progress panel for a campaign running on a terminal.

It shows, from the engine's :meth:`~campaign.engine.Engine.progress_snapshot`: per scale
the committed rows and its tasks submitted (in total, as ``campaign status`` counts
them) / in flight / waiting to start (of those in flight: queued, or their block not
started) / done / failed (attempts retried) / quarantined, with the task
budget; per promotion the newest model, the points it was trained on, its reference
and prospective errors and the 90% interval coverage of the newest scored model; and a
footer with the elapsed time, the budget used and the time it implies is left (then why
the campaign stopped). Off a terminal the engine's plain
progress log lines say the same; the CLI (``campaign run``) shows the panel only on a
terminal.

Example::

    from rich.console import Console
    from campaign.engine import Engine
    from campaign.live import LiveProgress

    console = Console()
    with LiveProgress(console) as live:
        summary = Engine(spec, "runs/x", site="threads", on_progress=live.update).run()
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

__all__ = ["LiveProgress", "render"]

REFRESH_PER_SECOND = 4.0


class LiveProgress:
    """A ``rich.live.Live`` panel on ``console`` showing the newest snapshot given to
    :meth:`update`. The panel appears with the first snapshot (a run that fails while
    starting shows none) and stays on screen when the context ends (not transient);
    log lines printed on the same console go above it."""

    def __init__(self, console: Console, *,
                 refresh_per_second: float = REFRESH_PER_SECOND) -> None:
        self.console = console
        self.refresh_per_second = refresh_per_second
        self.snapshot: dict[str, Any] | None = None
        self._live: Live | None = None
        self._entered = False

    def __enter__(self) -> LiveProgress:
        self._entered = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._entered = False
        if self._live is not None:
            self._live.stop()
            self._live = None

    def update(self, snapshot: dict[str, Any]) -> None:
        """Show ``snapshot`` (an ``Engine.progress_snapshot()``); starts the panel on the
        first call inside the context, and only records the snapshot outside it."""
        self.snapshot = snapshot
        if not self._entered:
            return
        if self._live is None:
            self._live = Live(render(snapshot), console=self.console, transient=False,
                              refresh_per_second=self.refresh_per_second)
            self._live.start()
        else:
            self._live.update(render(snapshot))


def render(snapshot: dict[str, Any]) -> RenderableType:
    """The panel for one ``Engine.progress_snapshot()``: a table with one row per scale
    and one per promotion, and a footer line. Pure: it only reads ``snapshot``."""
    table = Table(title=f"campaign progress ({snapshot['mode']})", title_justify="left",
                  expand=False)
    # "submitted (total)": every task recorded so far, as in `campaign status`; "in
    # flight": attempts handed to the executor and not back yet (queued or running);
    # "waiting": of those, the attempts no worker has started (queued, or their block
    # not started at the scheduler)
    for header in ("scale", "rows", "submitted (total)", "in flight", "waiting", "done",
                   "failed", "quarantined", "budget"):
        table.add_column(header, justify="left" if header == "scale" else "right")
    for scale in snapshot["scales"]:
        tasks = scale["tasks"]
        budget = scale["budget"]
        name = escape(scale["name"])
        if scale["monitor"] is not None:
            name += (f" (monitor: {scale['monitor']['restart']} restarts, "
                     f"{scale['monitor']['stop']} stops)")
        table.add_row(
            name, str(scale["committed_rows"]), str(tasks["submitted"]),
            str(tasks["running"]), _count(tasks.get("waiting", 0), "cyan"),
            str(tasks["done"]),
            _count(tasks["failed"], "yellow"), _count(tasks["quarantined"], "red"),
            "-" if budget is None else str(budget))
    parts: list[RenderableType] = [table]
    if snapshot["promotions"]:
        models = Table(expand=False)
        for header in ("promotion", "model", "n_train", "reference rmse",
                       "prospective rmse", "90% coverage"):
            models.add_column(header, justify="left" if header == "promotion" else "right")
        for promotion in snapshot["promotions"]:
            scored = promotion["scored"]
            prospective = promotion["prospective_rmse"]
            coverage = "-"
            if scored is not None:
                prospective = scored["rmse"] if prospective is None else prospective
                coverage = f"{100 * scored['coverage_90']:.0f}% (model {scored['model']}, " \
                           f"n={scored['n']})"
            models.add_row(
                escape(promotion["name"]),
                "-" if promotion["generation"] is None else str(promotion["generation"]),
                "-" if promotion["n_train"] is None else str(promotion["n_train"]),
                _figure(promotion["reference_rmse"]), _figure(prospective), coverage)
        parts.append(models)
    parts.append(_footer(snapshot))
    return Group(*parts)


def _footer(snapshot: dict[str, Any]) -> Text:
    text = Text(f"elapsed {_duration(snapshot['elapsed_seconds'])}")
    used = snapshot["budget_used"]
    if used is not None:
        text.append(f" | budget {100 * used['fraction']:.0f}% used ({used['what']})")
    if snapshot["seconds_left"] is not None and not snapshot["stop_reason"]:
        text.append(f" | ~{_duration(snapshot['seconds_left'])} left")
    if snapshot["stop_reason"]:
        text.append(" | stop reason: ", style="bold")
        text.append(snapshot["stop_reason"])
    return text


def _count(value: int, style: str) -> Text:
    return Text(str(value), style=style if value else "")


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _duration(seconds: float) -> str:
    """``42 s``, ``12 min 5 s``, ``3 h 20 min``: rounded, never a raw float."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
