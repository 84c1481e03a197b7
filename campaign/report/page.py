"""``report.html``: one self-contained page (PNGs as base64, inline CSS) of the
figures, their notes and the tables."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from campaign.ledger import Ledger
from campaign.report.plotting import Figure
from campaign.report.records import attempt_spans
from campaign.report.tables import (
    counts_table,
    picks_table,
    quarantine_table,
    rounds_table,
)
from campaign.report.timeline import utilization_by_scale
from campaign.store import Store

HTML_NAME = "report.html"


def _table(table_id: str, rows: list[dict[str, Any]], empty: str) -> str:
    if not rows:
        return f'<p class="note" id="{table_id}">{html.escape(empty)}</p>'
    header = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{'' if v is None else html.escape(str(v))}</td>"
                         for v in row.values()) + "</tr>" for row in rows)
    return (f'<table id="{table_id}"><thead><tr>{header}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def _figure_html(figure: Figure) -> str:
    data = base64.b64encode(Path(figure.file).read_bytes()).decode("ascii")
    return (f'<figure id="{html.escape(figure.id)}"><img src="data:image/png;base64,{data}" '
            f'alt="{html.escape(figure.id)}"><figcaption>{html.escape(figure.caption)}'
            f" ({html.escape(Path(figure.file).name)})</figcaption></figure>")


STYLE_SHEET = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; max-width: 75em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
.note { color: #8a5a00; }
"""


def _headline(summary: dict[str, Any]) -> str:
    """The page's opening: each promotion's headline sentences (what the run found)."""
    promotions = summary["promotions"]
    note = (f'<p class="note"><b>{html.escape(summary["simulated_note"])}</b></p>'
            if summary.get("simulated_note") else "")
    if not promotions:
        return (f'<section id="headline">{note}<p>This campaign has no promotion.</p>'
                '</section>')
    return ('<section id="headline">' + note + "".join(
        "<p>" + " ".join(html.escape(line) for line in entry["headline"]) + "</p>"
        for entry in promotions.values()) + "</section>")


def _picks(store: Store, promotions: list[str]) -> str:
    """The picks table where the store records each pick's model generation or
    staleness; nothing where it does not."""
    rows = picks_table(store, promotions)
    if not rows:
        return ""
    return ("<h3>Picks per model generation</h3>"
            '<p id="picks-note">Rows chosen by each model generation, and the staleness '
            "the engine recorded with each pick (the store's meta), where it did.</p>"
            + _table("picks", rows, ""))


def render_html(run_dir: Path, ledger: Ledger, store: Store, figures: list[Figure],
                notes: dict[str, str], summary: dict[str, Any]) -> str:
    """The page: one self-contained HTML document (PNGs as base64, inline CSS only)."""
    by_id = {figure.id: figure for figure in figures}
    promotions = list(summary["promotions"])
    name = html.escape(str(summary.get("name")))
    wall = summary.get("wall_seconds")
    facts = [{"fact": "campaign", "value": summary.get("name")},
             {"fact": "site", "value": summary.get("site")},
             {"fact": "mode", "value": ledger.fact("mode")},
             {"fact": "stop reason", "value": summary.get("stop_reason") or "running"},
             {"fact": "wall seconds", "value": None if wall is None else round(wall, 1)},
             {"fact": "resumed", "value": int(ledger.fact("resumed", 0) or 0)},
             {"fact": "run directory", "value": str(run_dir)}]
    if summary.get("baseline"):
        seeds = summary["baseline"]["seeds"]
        facts.append({"fact": f"random baseline ({seeds} seed{'s' if seeds > 1 else ''})",
                      "value": f"{summary['baseline']['tasks']} tasks, "
                               f"{summary['baseline']['wall_seconds']:.0f} s"})

    def section(title: str, ids: list[str], extra: str = "") -> str:
        parts = [f"<h2>{html.escape(title)}</h2>"]
        for figure_id in ids:
            if figure_id in by_id:
                parts.append(_figure_html(by_id[figure_id]))
            if figure_id in notes:
                parts.append(f'<p class="note" id="{figure_id}-note">'
                             f"{html.escape(notes[figure_id])}</p>")
        return "<section>" + "".join(parts) + extra + "</section>"

    extras = [figure.id for figure in figures if figure.id.startswith("extra-")]
    body = [
        f"<h1>Campaign report: {name}</h1>",
        _headline(summary),
        _table("facts", facts, ""),
        section("Learning curve", ["learning-curve"]),
        section("Where the learner sampled", ["sampling", "surrogate"]),
        section("Parity and calibration", ["parity", "calibration"],
                _table("rounds", rounds_table(ledger, promotions), "No model was fitted.")
                + (f'<p id="rounds-note">{html.escape(notes["rounds"])}</p>'
                   if "rounds" in notes else "")
                + _picks(store, promotions)),
        section("Tasks over time", ["timeline", "utilization"],
                "<h3>Utilization per scale</h3>"
                + _table("utilization-table", utilization_by_scale(attempt_spans(ledger)),
                         "No attempt ran.")),
        section("Counts and costs", [],
                _table("counts", counts_table(ledger, store), "No tasks.")
                + "<h3>Quarantine reasons</h3>"
                + _table("quarantine", quarantine_table(ledger), "No task was quarantined.")),
    ]
    if extras:
        body.append(section("The campaign's own figures", extras))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Campaign report: {name}</title><style>{STYLE_SHEET}</style></head>"
            "<body>" + "\n".join(body) + "</body></html>\n")
