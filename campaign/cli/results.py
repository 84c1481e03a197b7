"""``campaign report`` and ``campaign export``: the report of a run and the lines that
say what it found, and one scale's rows written to a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from campaign.cli.terminal import console, fail, open_run, setup_logging


def print_report(run_dir: Path, spec: Any, baseline: int) -> None:
    """Write the report of ``run_dir`` and print its headline and what it wrote."""
    from campaign.report import summarize

    summary = summarize(run_dir, spec, baseline=baseline)
    if summary.get("baseline"):
        cost = summary["baseline"]
        seeds = cost["seeds"]
        console.print(f"random baseline: {seeds} seed{'s' if seeds > 1 else ''}, "
                      f"{cost['tasks']} tasks, {cost['wall_seconds']:.0f} s "
                      f"(the same budget again per seed, on threads)", highlight=False,
                      soft_wrap=True)
    for entry in summary["promotions"].values():
        for line in entry["headline"]:
            console.print(line, highlight=False, soft_wrap=True)
    extra = "".join(f", {path}" for path in summary.get("extra_reports", []))
    console.print(f"wrote {run_dir / summary['html']} (with its PNGs), "
                  f"{run_dir / 'report.png'}, {run_dir / 'summary.json'}{extra}",
                  highlight=False, soft_wrap=True)


def report(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    baseline: Annotated[int, typer.Option(
        metavar="N", help="first run the random-selection baseline for N seeds where the "
                          "run has fewer (each the same budget again); finished baselines "
                          "are always compared")] = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Write report.html (self-contained: learning curve vs random, where the learner
    sampled, parity, calibration, timeline, counts), report.png and summary.json."""
    from campaign.ledger import Ledger
    from campaign.report import ReportError
    from campaign.script import ScriptError, load_campaign

    setup_logging(verbose)
    if not (run_dir / "ledger.sqlite").exists():
        fail(f"{run_dir} is not a campaign run directory (no ledger.sqlite)")
    ledger = Ledger(run_dir / "ledger.sqlite")
    script = ledger.fact("script")
    ledger.close()
    spec = None
    if script:  # the spec restores saved models (surrogate map, parity) and the baseline
        try:
            spec = load_campaign(script)
        except ScriptError as error:
            console.print(f"without the campaign script (no random baseline, surrogate map "
                          f"or parity): {error}", highlight=False, soft_wrap=True)
    elif baseline:
        console.print("no random baseline: the run was not started from a script")
    try:
        print_report(run_dir, spec, baseline)
    except ReportError as error:
        fail(str(error))


def export(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    scale: Annotated[str, typer.Option(help="the scale to export")],
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help="csv (multi-value columns as name_0, name_1, ...) or netcdf "
                               "(shapes kept; needs xarray)")] = "csv",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="file to write (default: <run dir name>-<scale>.csv or .nc "
                               "in the current directory)")] = None,
) -> None:
    """Write one scale's committed rows (x, outputs and meta, one row each) to a file."""
    from campaign.export import SUFFIXES, ExportError, export_scale

    if fmt not in SUFFIXES:
        fail(f"--format must be one of {', '.join(SUFFIXES)}, got '{fmt}'")
    target = output or Path(f"{run_dir.resolve().name}-{scale}{SUFFIXES[fmt]}")
    ledger, store = open_run(run_dir)
    try:
        rows = export_scale(store, scale, fmt, target,
                            attrs={"campaign": ledger.fact("name") or "",
                                   "run_dir": str(run_dir.resolve())})
    except ExportError as error:
        fail(str(error))
    finally:
        ledger.close()
    console.print(f"wrote {target} ({rows} rows of scale '{scale}')", highlight=False,
                  soft_wrap=True)
