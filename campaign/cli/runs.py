"""``campaign run``, ``resume`` and ``demo``: turning the options into a spec and a site,
running the engine with its live panel, and the lines printed when it ends."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from campaign.cli import planning
from campaign.cli.options import parse_site_params
from campaign.cli.results import print_report
from campaign.cli.terminal import console, fail, setup_logging

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEMO_SCRIPT = EXAMPLES / "muller_brown.py"

BUDGET_LIMITS = {"rounds": int, "wall_time": float, "core_seconds": float}


def parse_budget(pairs: list[str]) -> dict[str, int | float | None]:
    """``SCALE=N``, ``rounds=N``, ``wall_time=SECONDS``, ``core_seconds=N``; ``none``
    removes that limit."""
    changes: dict[str, int | float | None] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            fail(f"--budget must be SCALE=N, rounds=N, wall_time=SECONDS or "
                  f"core_seconds=N, got '{pair}'")
        if value.lower() == "none":
            changes[key] = None
            continue
        convert = BUDGET_LIMITS.get(key, int)
        try:
            changes[key] = convert(value)
        except ValueError:
            kind = "a number of seconds" if convert is float else "an integer"
            fail(f"--budget {key}={value}: must be {kind} (or none)")
    return changes


def with_budget(spec: Any, changes: dict[str, int | float | None]) -> Any:
    """``spec`` with its budget changed, validated again as a whole (SpecError)."""
    from campaign.spec import Budget

    budget = spec.budget
    limits = {key: getattr(budget, key) for key in BUDGET_LIMITS}
    tasks = dict(budget.tasks)
    for key, value in changes.items():
        if key in BUDGET_LIMITS:
            limits[key] = value
        elif value is None:
            tasks.pop(key, None)
        else:
            tasks[key] = value
    fields = {name: getattr(spec, name) for name in type(spec).model_fields}
    return type(spec)(**{**fields, "budget": Budget(**limits, **tasks)})


def run_script(script: Path, site: str, out: Path, *, overwrite: bool = False,
                resume: bool = False, report: bool = True, grace: float = 25.0,
                site_params: dict[str, Any] | None = None, verbose: bool = False,
                mode: str | None = None,
                budget: dict[str, int | float | None] | None = None,
                baseline: int = 0, live: bool | None = None,
                simulate: Any = None) -> None:
    """Run ``script`` into ``out`` and print its summary. On a terminal, unless ``live``
    is False, a live progress panel (``campaign.live``) shows the run, with the log
    lines above it; off a terminal only the plain log lines. ``simulate(spec) ->
    campaign.simulated.Simulation``, if given, runs it on that simulated site."""
    from contextlib import nullcontext

    from campaign.engine import Engine, RunDirError
    from campaign.ledger import LedgerError
    from campaign.live import LiveProgress
    from campaign.lock import RunLockedError
    from campaign.script import ScriptError, load_campaign
    from campaign.spec import SpecError
    from campaign.store import StoreError
    from site_configs import UnknownSiteError, UnknownSiteParameterError

    setup_logging(verbose)
    started = time.time()
    try:
        spec = load_campaign(script)
        if budget:
            spec = with_budget(spec, budget)
        panel = LiveProgress(console) if live is not False and console.is_terminal else None
        simulation = None if simulate is None else simulate(spec)
        engine = Engine(spec, out, site=site, site_params=site_params or {},
                        script=str(script.resolve()), overwrite=overwrite, resume=resume,
                        grace_period=grace, mode=mode,
                        on_progress=None if panel is None else panel.update,
                        simulation=simulation)
        with panel or nullcontext():
            summary = engine.run()
        if simulation is not None:
            from campaign.simulated import record_simulation

            record_simulation(out, simulation)
            if simulation.dry_run:
                console.print(f"a dry run on a simulated site (stand-in outputs for "
                              f"{', '.join(sorted(simulation.outputs))}): nothing it learned "
                              "is science", highlight=False, soft_wrap=True)
    except (ScriptError, SpecError, UnknownSiteError, UnknownSiteParameterError, RunDirError,
            RunLockedError, LedgerError, StoreError, ValueError) as error:
        fail(str(error))
        return
    except TypeError as error:  # a site parameter the factory does not take
        if "config()" in str(error):
            fail(f"site '{site}': {error}")
        raise
    if summary.interrupted:
        console.print(f"{summary.name}: {summary.stop_reason}; everything completed is "
                      f"committed, {summary.unfinished} tasks unfinished. Resume with: "
                      f"campaign resume {out}", highlight=False, soft_wrap=True)
        exit_if_parsl_hangs(engine)
        return
    steps = "rounds" if summary.mode == "rounds" else "models fitted"
    console.print(f"[bold]{summary.name}[/] ({summary.mode}): {max(0, summary.rounds)} {steps}, "
                  f"stopped: {summary.stop_reason} ("
                  f"{wall_time(summary.wall_seconds, engine, time.time() - started)})",
                  soft_wrap=True)
    quarantined = {name: counts["quarantined"] for name, counts in summary.task_counts.items()
                   if counts.get("quarantined")}
    if quarantined:
        console.print("quarantined tasks: " + ", ".join(
            f"{name} {count}" for name, count in quarantined.items())
            + f" (reasons: campaign status {out})", highlight=False, soft_wrap=True)
    if report:
        print_report(out, spec, baseline=baseline)
    exit_if_parsl_hangs(engine)
    if summary.failed:  # it could not progress: say so with the exit code too
        console.print(f"[bold red]campaign could not progress:[/] {summary.stop_reason}",
                      soft_wrap=True)
        raise typer.Exit(code=1)


def wall_time(campaign_seconds: float, engine: Any, session_seconds: float) -> str:
    """"12.0 s campaign, 15.1 s with start-up"; after a resume the campaign's total
    (``wall_seconds`` counts every session) and this session's part, told apart."""
    earlier = float(getattr(engine, "earlier_wall", 0.0) or 0.0)
    if earlier <= 0.0:
        return f"{campaign_seconds:.1f} s campaign, {session_seconds:.1f} s with start-up"
    return (f"{campaign_seconds:.1f} s campaign in total; this session "
            f"{campaign_seconds - earlier:.1f} s, {session_seconds:.1f} s with start-up")


def exit_if_parsl_hangs(engine: Any) -> None:
    """Parsl's threads can keep a process alive whose interchange was killed by the same
    signal; everything is committed, so leave without waiting for them."""
    if engine.shutdown_incomplete:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


BaselineOption = Annotated[int, typer.Option(
    metavar="N", help="also run the campaign N more times with random selection (seeds "
                      "seed ... seed+N-1) and compare: each costs the same budget again")]


LiveOption = Annotated[bool, typer.Option(
    help="a live progress panel on a terminal (log lines only when off or not a terminal)")]

ReportOption = Annotated[bool, typer.Option(help="write report.png and summary.json")]

GraceOption = Annotated[float, typer.Option(
    help="seconds to wait for running tasks after SIGTERM/SIGINT (Slurm sends SIGKILL "
         "30 s after SIGTERM by default)")]

SiteParamOption = Annotated[list[str] | None, typer.Option(help="KEY=VALUE for the site")]


def run(
    script: Annotated[Path, typer.Argument(help="Python file defining `campaign = Campaign(...)`")],
    site: Annotated[str, typer.Option(help="site config name (see site_configs)")] = "local",
    out: Annotated[Path | None, typer.Option(help="run directory (default runs/<name>)")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="replace a previous run of this campaign")] = False,
    resume: Annotated[bool, typer.Option(help="continue a previous run in --out")] = False,
    report: ReportOption = True,
    baseline: BaselineOption = 0,
    live: LiveOption = True,
    grace: GraceOption = 25.0,
    site_param: SiteParamOption = None,
    mode: Annotated[str | None, typer.Option(
        help="async (event-driven, the default) or rounds (round-locked, exactly "
             "reproducible); default: the script's")] = None,
    simulate: Annotated[bool, typer.Option(
        help="run on a simulated site (a virtual clock) with --site's layout; "
             "--site simulated is the local layout")] = False,
    nodes: planning.NodesOption = None,
    durations: planning.DurationsOption = None,
    stand_in: planning.StandInOption = None,
    cheap_seconds: planning.CheapOption = 0.1,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the campaign a script defines."""
    if overwrite and resume:
        fail("choose one of --overwrite and --resume")
    if mode not in (None, "async", "rounds"):
        fail(f"--mode must be async or rounds, got '{mode}'")
    if site == "simulated":
        site, simulate = "local", True
    if not simulate and (nodes or durations or stand_in):
        fail("--nodes, --durations and --stand-in are for a simulated site (--simulate)")
    run_dir = out or Path("runs") / script.stem
    site_params = parse_site_params(site_param or [])
    simulated = None
    if simulate:
        simulated = planning.simulation_maker(site, site_params, nodes or [], durations or [],
                                              stand_in or [], cheap_seconds)
        site = f"simulated:{site}"
    run_script(script, site, run_dir, overwrite=overwrite, resume=resume, report=report,
                grace=grace, site_params=site_params, verbose=verbose,
                mode=mode, baseline=baseline, live=live, simulate=simulated)


def resume(
    run_dir: Annotated[Path, typer.Argument(help="run directory of a stopped or killed run")],
    site: Annotated[str | None, typer.Option(help="site (default: the run's own)")] = None,
    site_param: SiteParamOption = None,
    report: ReportOption = True,
    baseline: BaselineOption = 0,
    live: LiveOption = True,
    grace: GraceOption = 25.0,
    budget: Annotated[list[str] | None, typer.Option(
        help="change the budget before continuing: SCALE=N tasks, rounds=N, "
             "wall_time=SECONDS, core_seconds=N, or KEY=none to lift a limit "
             "(repeatable)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Continue a run: committed results kept, unfinished tasks run again."""
    from campaign.ledger import Ledger, LedgerError

    changes = parse_budget(budget or [])
    if run_dir.exists() and not run_dir.is_dir():
        fail(f"{run_dir} is a file, not a run directory")
    try:
        ledger = Ledger(run_dir / "ledger.sqlite", read_only=True)
    except LedgerError as error:
        fail(f"{run_dir} holds no campaign to resume ({error})")
        return
    script, recorded_site = ledger.fact("script"), ledger.fact("site")
    recorded_mode = ledger.fact("mode") or "rounds"  # runs before async mode were rounds
    simulate_options = ledger.fact("simulate_options")
    ledger.close()
    if not script:
        fail(f"{run_dir} was not started from a script; resume it from Python with "
              "Campaign.run(..., resume=True)")
    simulated = None
    if site is None and str(recorded_site or "").startswith("simulated:"):
        if not simulate_options:  # a simulated run started from Python
            fail(f"{run_dir} ran on a simulated site made in Python; resume it from Python "
                 "with campaign.engine.Engine(..., resume=True, simulation=...), or give "
                 "--site to go on on a real site")
        site = recorded_site  # its simulation as `campaign run --simulate` made it
        simulated = planning.simulation_maker(**simulate_options)
    run_script(Path(script), site or recorded_site, run_dir, resume=True, report=report,
                grace=grace, site_params=parse_site_params(site_param or []),
                verbose=verbose, mode=recorded_mode, budget=changes, baseline=baseline,
                live=live, simulate=simulated)


def demo(
    out: Annotated[Path, typer.Option(help="run directory")] = Path("runs/demo"),
    site: Annotated[str, typer.Option(help="site config name")] = "local",
    overwrite: Annotated[bool, typer.Option(help="replace a previous demo run")] = True,
    baseline: Annotated[int, typer.Option(
        metavar="N", help="seeds of the random-selection baseline to compare with")] = 3,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the built-in two-scale Müller-Brown campaign and write its report, with the
    random-selection baseline (3 seeds by default) run after it for comparison."""
    if not DEMO_SCRIPT.is_file():
        fail(f"demo script {DEMO_SCRIPT} not found (install the project with pip install -e .)")
    run_script(DEMO_SCRIPT, site, out, overwrite=overwrite, verbose=verbose,
                baseline=baseline)
