"""The ``campaign`` command: run, demo, status and report. The CLI owns the terminal:
library code logs, this module prints. Every error is one line and a non-zero exit."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Active-learning multiscale simulation campaigns.")
console = Console()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEMO_SCRIPT = EXAMPLES / "muller_brown.py"


QUIET_LIBRARIES = ("parsl", "zarr", "numcodecs", "asyncio", "matplotlib", "site_configs")


def _setup_logging(verbose: bool) -> None:
    handler = RichHandler(console=console, show_path=False)
    if not verbose:  # Parsl re-levels its own loggers on load: filter at the handler
        handler.addFilter(lambda record: record.levelno >= logging.WARNING
                          or not record.name.startswith(QUIET_LIBRARIES))
    logging.basicConfig(level=logging.INFO, format="%(message)s", datefmt="%H:%M:%S",
                        handlers=[handler], force=True)


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _parse_site_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(f"--site-param must be KEY=VALUE, got '{pair}'")
        for convert in (int, float):
            try:
                params[key] = convert(value)
                break
            except ValueError:
                continue
        else:
            params[key] = value
    return params


def _run_script(script: Path, site: str, out: Path, overwrite: bool, report: bool,
                site_params: dict[str, Any], verbose: bool) -> None:
    from campaign.engine import RunDirError
    from campaign.lock import RunLockedError
    from campaign.script import ScriptError, load_campaign
    from campaign.spec import SpecError
    from site_configs import UnknownSiteError

    _setup_logging(verbose)
    started = time.time()
    try:
        spec = load_campaign(script)
        from campaign.engine import Engine

        summary = Engine(spec, out, site=site, site_params=site_params, script=str(
            script.resolve()), overwrite=overwrite).run()
    except (ScriptError, SpecError, UnknownSiteError, RunDirError, RunLockedError) as error:
        _fail(str(error))
        return
    except TypeError as error:  # a site parameter the factory does not take
        if "config()" in str(error):
            _fail(f"site '{site}': {error}")
        raise
    console.print(f"[bold]{summary.name}[/]: {summary.rounds} rounds, stopped: "
                  f"{summary.stop_reason} ({summary.wall_seconds:.1f} s campaign, "
                  f"{time.time() - started:.1f} s with start-up)")
    if report:
        _report(out, spec, baseline=True)


def _report(run_dir: Path, spec: Any, baseline: bool) -> None:
    from campaign.report import summarize

    summary = summarize(run_dir, spec, baseline=baseline)
    for name, entry in summary["promotions"].items():
        line = f"{name}: final reference RMSE {entry['final_reference_rmse']}"
        if entry.get("sims_to_target"):
            reached = entry["sims_to_target"]
            line += (f"; to reach random's final RMSE {entry['target_rmse']:.3g}: "
                     f"{reached['campaign']} sims vs random {reached['random']}")
        console.print(line)
    console.print(f"wrote {run_dir / 'report.png'} and {run_dir / 'summary.json'}")


@app.command()
def run(
    script: Annotated[Path, typer.Argument(help="Python file defining `campaign = Campaign(...)`")],
    site: Annotated[str, typer.Option(help="site config name (see site_configs)")] = "local",
    out: Annotated[Path | None, typer.Option(help="run directory (default runs/<name>)")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="replace a previous run of this campaign")] = False,
    report: Annotated[bool, typer.Option(help="write report.png and summary.json")] = True,
    site_param: Annotated[list[str] | None, typer.Option(help="KEY=VALUE for the site")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the campaign a script defines."""
    run_dir = out or Path("runs") / script.stem
    _run_script(script, site, run_dir, overwrite, report, _parse_site_params(site_param or []),
                verbose)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="run directory")] = Path("runs/demo"),
    site: Annotated[str, typer.Option(help="site config name")] = "local",
    overwrite: Annotated[bool, typer.Option(help="replace a previous demo run")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the built-in two-scale Müller-Brown campaign and write its report."""
    if not DEMO_SCRIPT.is_file():
        _fail(f"demo script {DEMO_SCRIPT} not found (install the project with pip install -e .)")
    _run_script(DEMO_SCRIPT, site, out, overwrite, True, {}, verbose)


@app.command()
def status(run_dir: Annotated[Path, typer.Argument(help="run directory")]) -> None:
    """Counts per scale, rounds and the current surrogate error of a run."""
    from campaign.ledger import LedgerError
    from campaign.report import ReportError, open_run

    try:
        ledger, store = open_run(run_dir)
    except (ReportError, LedgerError) as error:
        _fail(str(error))
        return
    try:
        table = Table(title=f"campaign '{ledger.fact('name')}' in {run_dir}")
        for column in ("scale", "rows", "done", "submitted", "failed", "quarantined"):
            table.add_column(column, justify="right" if column != "scale" else "left")
        counts = ledger.task_counts()
        for scale in sorted(set(counts) | set(store.scales())):
            by_status = counts.get(scale, {})
            table.add_row(scale, str(store.rows(scale)),
                          *(str(by_status.get(s, 0)) for s in
                            ("done", "submitted", "failed", "quarantined")))
        console.print(table)
        rounds = ledger.rounds()
        console.print(f"rounds: {1 + max((r['round'] for r in rounds), default=-1)}; "
                      f"stopped: {ledger.fact('stop_reason') or 'not yet (running or killed)'}")
        for promotion in sorted({r["promotion"] for r in rounds}):
            scored = [r for r in ledger.rounds(promotion) if r.get("n_train")]
            if not scored:
                continue
            last = scored[-1]
            parts = [f"{promotion}: {last['n_train']} training points"]
            for key, label in (("reference_rmse", "reference RMSE"),
                               ("prospective_rmse", "prospective RMSE")):
                values = [r[key] for r in scored if r.get(key) is not None]
                if values:
                    parts.append(f"{label} {values[-1]:.4g}")
            console.print(", ".join(parts))
        for task in ledger.tasks(status="quarantined") + ledger.tasks(status="failed"):
            console.print(f"  task {task['task_id']} ({task['scale']}, {task['status']}): "
                          f"{task['reason']}", highlight=False)
    finally:
        ledger.close()


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    baseline: Annotated[bool, typer.Option(
        help="run/compare the random-selection baseline")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Write report.png (learning curve vs random, pool, timeline) and summary.json."""
    from campaign.ledger import Ledger
    from campaign.report import ReportError
    from campaign.script import ScriptError, load_campaign

    _setup_logging(verbose)
    if not (run_dir / "ledger.sqlite").exists():
        _fail(f"{run_dir} is not a campaign run directory (no ledger.sqlite)")
    ledger = Ledger(run_dir / "ledger.sqlite")
    script = ledger.fact("script")
    ledger.close()
    spec = None
    if baseline and script:
        try:
            spec = load_campaign(script)
        except ScriptError as error:
            console.print(f"no random baseline: {error}")
    try:
        _report(run_dir, spec, baseline)
    except ReportError as error:
        _fail(str(error))


if __name__ == "__main__":
    app()
