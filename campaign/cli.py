"""The ``campaign`` command: run, demo, status and report. The CLI owns the terminal:
library code logs, this module prints. Every error is one line and a non-zero exit."""

from __future__ import annotations

import logging
import os
import sys
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
    if not verbose:  # Parsl re-levels its own loggers on load: filter at the handler.
        # The engine reports every task failure in one line; Parsl's own account (with
        # tracebacks) stays in <run>/parsl/ and on the terminal with --verbose.
        handler.addFilter(lambda record: not record.name.startswith(QUIET_LIBRARIES)
                          or record.levelno >= (logging.CRITICAL if record.name.startswith(
                              "parsl") else logging.WARNING))
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


def _run_script(script: Path, site: str, out: Path, *, overwrite: bool = False,
                resume: bool = False, report: bool = True, grace: float = 25.0,
                site_params: dict[str, Any] | None = None, verbose: bool = False,
                mode: str | None = None) -> None:
    from campaign.engine import Engine, RunDirError
    from campaign.ledger import LedgerError
    from campaign.lock import RunLockedError
    from campaign.script import ScriptError, load_campaign
    from campaign.spec import SpecError
    from campaign.store import StoreError
    from site_configs import UnknownSiteError

    _setup_logging(verbose)
    started = time.time()
    try:
        spec = load_campaign(script)
        engine = Engine(spec, out, site=site, site_params=site_params or {},
                        script=str(script.resolve()), overwrite=overwrite, resume=resume,
                        grace_period=grace, mode=mode)
        summary = engine.run()
    except (ScriptError, SpecError, UnknownSiteError, RunDirError, RunLockedError, LedgerError,
            StoreError, ValueError) as error:
        _fail(str(error))
        return
    except TypeError as error:  # a site parameter the factory does not take
        if "config()" in str(error):
            _fail(f"site '{site}': {error}")
        raise
    if summary.interrupted:
        console.print(f"{summary.name}: {summary.stop_reason}; everything completed is "
                      f"committed, {summary.unfinished} tasks unfinished. Resume with: "
                      f"campaign resume {out}", highlight=False, soft_wrap=True)
        _exit_if_parsl_hangs(engine)
        return
    steps = "rounds" if summary.mode == "rounds" else "models fitted"
    console.print(f"[bold]{summary.name}[/] ({summary.mode}): {summary.rounds} {steps}, "
                  f"stopped: {summary.stop_reason} ({summary.wall_seconds:.1f} s campaign, "
                  f"{time.time() - started:.1f} s with start-up)", soft_wrap=True)
    if report:
        _report(out, spec, baseline=True)
    _exit_if_parsl_hangs(engine)
    if summary.failed:  # it could not progress: say so with the exit code too
        console.print(f"[bold red]campaign could not progress:[/] {summary.stop_reason}",
                      soft_wrap=True)
        raise typer.Exit(code=1)


def _exit_if_parsl_hangs(engine: Any) -> None:
    """Parsl's threads can keep a process alive whose interchange was killed by the same
    signal; everything is committed, so leave without waiting for them."""
    if engine.shutdown_incomplete:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


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
    extra = "".join(f", {path}" for path in summary.get("extra_reports", []))
    console.print(f"wrote {run_dir / 'report.png'}, {run_dir / 'summary.json'}{extra}")


@app.command()
def run(
    script: Annotated[Path, typer.Argument(help="Python file defining `campaign = Campaign(...)`")],
    site: Annotated[str, typer.Option(help="site config name (see site_configs)")] = "local",
    out: Annotated[Path | None, typer.Option(help="run directory (default runs/<name>)")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="replace a previous run of this campaign")] = False,
    resume: Annotated[bool, typer.Option(help="continue a previous run in --out")] = False,
    report: Annotated[bool, typer.Option(help="write report.png and summary.json")] = True,
    grace: Annotated[float, typer.Option(
        help="seconds to wait for running tasks after SIGTERM/SIGINT (Slurm sends SIGKILL "
             "30 s after SIGTERM by default)")] = 25.0,
    site_param: Annotated[list[str] | None, typer.Option(help="KEY=VALUE for the site")] = None,
    mode: Annotated[str | None, typer.Option(
        help="async (event-driven, the default) or rounds (round-locked, exactly "
             "reproducible); default: the script's")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the campaign a script defines."""
    if overwrite and resume:
        _fail("choose one of --overwrite and --resume")
    if mode not in (None, "async", "rounds"):
        _fail(f"--mode must be async or rounds, got '{mode}'")
    run_dir = out or Path("runs") / script.stem
    _run_script(script, site, run_dir, overwrite=overwrite, resume=resume, report=report,
                grace=grace, site_params=_parse_site_params(site_param or []), verbose=verbose,
                mode=mode)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="run directory of a stopped or killed run")],
    site: Annotated[str | None, typer.Option(help="site (default: the run's own)")] = None,
    report: Annotated[bool, typer.Option(help="write report.png and summary.json")] = True,
    grace: Annotated[float, typer.Option(
        help="seconds to wait for running tasks after SIGTERM/SIGINT (Slurm sends SIGKILL "
             "30 s after SIGTERM by default)")] = 25.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Continue a run: committed results kept, unfinished tasks run again."""
    from campaign.ledger import Ledger, LedgerError

    try:
        ledger = Ledger(run_dir / "ledger.sqlite", read_only=True)
    except LedgerError as error:
        _fail(f"{run_dir} holds no campaign to resume ({error})")
        return
    script, recorded_site = ledger.fact("script"), ledger.fact("site")
    recorded_mode = ledger.fact("mode") or "rounds"  # runs before async mode were rounds
    ledger.close()
    if not script:
        _fail(f"{run_dir} was not started from a script; resume it from Python with "
              "Campaign.run(..., resume=True)")
    _run_script(Path(script), site or recorded_site, run_dir, resume=True, report=report,
                grace=grace, verbose=verbose, mode=recorded_mode)


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
    _run_script(DEMO_SCRIPT, site, out, overwrite=overwrite, verbose=verbose)


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
        for column in ("scale", "rows", "done", "submitted", "quarantined", "retried"):
            table.add_column(column, justify="right" if column != "scale" else "left")
        counts = ledger.task_counts()
        for scale in sorted(set(counts) | set(store.scales())):
            by_status = counts.get(scale, {})
            retried = sum(1 for t in ledger.tasks(scale) if t["attempts"] > 1)
            table.add_row(scale, str(store.rows(scale)),
                          *(str(by_status.get(s, 0)) for s in
                            ("done", "submitted", "quarantined")), str(retried))
        console.print(table)
        rounds = ledger.rounds()
        stopped = (ledger.fact("stop_reason") or ledger.fact("interrupted")
                   or "not yet (running, or killed: `campaign resume` continues it)")
        mode = ledger.fact("mode") or "rounds"
        steps = "rounds" if mode == "rounds" else "models fitted"
        console.print(f"mode: {mode}; {steps}: "
                      f"{max((r['round'] for r in rounds), default=-1) + (mode == 'rounds')}; "
                      f"stopped: {stopped}", soft_wrap=True)
        from campaign.processes import leftover_processes

        leftovers = leftover_processes(run_dir)
        if leftovers:
            console.print(f"{len(leftovers)} Parsl processes of a killed driver are still "
                          f"running (pids {', '.join(str(p['pid']) for p in leftovers[:8])}); "
                          f"`campaign resume {run_dir}` ends them", soft_wrap=True)
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
            calibrated = [r for r in scored if r.get("calibration")]
            if calibrated:
                c = calibrated[-1]["calibration"]
                console.print(f"  calibration on round {calibrated[-1]['round']}'s new results "
                              f"(n={c['n']:.0f}, before training on them): coverage 50% "
                              f"{c['coverage_50']:.2f}, 90% {c['coverage_90']:.2f}, z-score sd "
                              f"{c['z_std']:.2f}, NLL {c['nll']:.3g}", highlight=False)
        for task in ledger.tasks(status="quarantined"):
            console.print(f"  quarantined task {task['task_id']} ({task['scale']}, parent row "
                          f"{task['parent_row']}): {task['reason']}", highlight=False)
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


@app.command()
def sites() -> None:
    """List the known site configs and their parameters (defaults in brackets)."""
    from site_configs import describe_sites

    table = Table(title="sites (campaign run --site NAME --site-param KEY=VALUE, "
                        "or --site FILE.toml)")
    table.add_column("site", style="bold")
    table.add_column("description")
    table.add_column("parameters")
    for site in describe_sites():
        table.add_row(site["name"], site["description"], ", ".join(
            f"{p['name']} [{p['default']!r}]" for p in site["parameters"]))
    console.print(table)


if __name__ == "__main__":
    app()
