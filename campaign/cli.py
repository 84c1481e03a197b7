"""The ``campaign`` command: run, resume, demo, status, report, export, and the lists of
sites, learners and policies. The CLI owns the terminal: library code logs, this module
prints. Every error is one line and a non-zero exit.

Heavy libraries (torch through ``learners``, Parsl, matplotlib) are imported inside the
commands that need them, so ``--help``, ``--version`` and ``status`` start quickly."""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import re
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Active-learning multiscale simulation campaigns.")
console = Console()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEMO_SCRIPT = EXAMPLES / "muller_brown.py"
DISTRIBUTION = "multiscale-campaign"
BUDGET_LIMITS = {"rounds": int, "wall_time": float, "core_seconds": float}


def _version(value: bool) -> None:
    if value:
        try:
            found = metadata.version(DISTRIBUTION)
        except metadata.PackageNotFoundError:
            found = "unknown (not installed: pip install -e .)"
        console.print(f"{DISTRIBUTION} {found}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="print the installed version and exit")] = False,
) -> None:
    """Active-learning multiscale simulation campaigns."""


QUIET_LIBRARIES = ("parsl", "zarr", "numcodecs", "asyncio", "matplotlib", "site_configs")


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _setup_logging(verbose: bool) -> None:
    """Rich log lines on a terminal; plain, unwrapped, timestamped lines otherwise (a
    Slurm job log, a pipe, a file), where Rich would hard-wrap at its width."""
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(console=console, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s", datefmt="%H:%M:%S"))
    else:
        handler = logging.StreamHandler(console.file)
        handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    if not verbose:  # Parsl re-levels its own loggers on load: filter at the handler.
        # The engine reports every task failure in one line; Parsl's own account (with
        # tracebacks) stays in <run>/parsl/ and on the terminal with --verbose.
        handler.addFilter(lambda record: not record.name.startswith(QUIET_LIBRARIES)
                          or record.levelno >= (logging.CRITICAL if record.name.startswith(
                              "parsl") else logging.WARNING))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def _fail(message: str) -> NoReturn:
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


def _parse_budget(pairs: list[str]) -> dict[str, int | float | None]:
    """``SCALE=N``, ``rounds=N``, ``wall_time=SECONDS``, ``core_seconds=N``; ``none``
    removes that limit."""
    changes: dict[str, int | float | None] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            _fail(f"--budget must be SCALE=N, rounds=N, wall_time=SECONDS or "
                  f"core_seconds=N, got '{pair}'")
        if value.lower() == "none":
            changes[key] = None
            continue
        convert = BUDGET_LIMITS.get(key, int)
        try:
            changes[key] = convert(value)
        except ValueError:
            kind = "a number of seconds" if convert is float else "an integer"
            _fail(f"--budget {key}={value}: must be {kind} (or none)")
    return changes


def _with_budget(spec: Any, changes: dict[str, int | float | None]) -> Any:
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


def _run_script(script: Path, site: str, out: Path, *, overwrite: bool = False,
                resume: bool = False, report: bool = True, grace: float = 25.0,
                site_params: dict[str, Any] | None = None, verbose: bool = False,
                mode: str | None = None,
                budget: dict[str, int | float | None] | None = None,
                baseline: int = 0, live: bool | None = None) -> None:
    """Run ``script`` into ``out`` and print its summary. On a terminal, unless ``live``
    is False, a live progress panel (``campaign.live``) shows the run, with the log
    lines above it; off a terminal only the plain log lines."""
    from contextlib import nullcontext

    from campaign.engine import Engine, RunDirError
    from campaign.ledger import LedgerError
    from campaign.live import LiveProgress
    from campaign.lock import RunLockedError
    from campaign.script import ScriptError, load_campaign
    from campaign.spec import SpecError
    from campaign.store import StoreError
    from site_configs import UnknownSiteError

    _setup_logging(verbose)
    started = time.time()
    try:
        spec = load_campaign(script)
        if budget:
            spec = _with_budget(spec, budget)
        panel = LiveProgress(console) if live is not False and console.is_terminal else None
        engine = Engine(spec, out, site=site, site_params=site_params or {},
                        script=str(script.resolve()), overwrite=overwrite, resume=resume,
                        grace_period=grace, mode=mode,
                        on_progress=None if panel is None else panel.update)
        with panel or nullcontext():
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
                  f"stopped: {summary.stop_reason} ("
                  f"{_wall_time(summary.wall_seconds, engine, time.time() - started)})",
                  soft_wrap=True)
    quarantined = {name: counts["quarantined"] for name, counts in summary.task_counts.items()
                   if counts.get("quarantined")}
    if quarantined:
        console.print("quarantined tasks: " + ", ".join(
            f"{name} {count}" for name, count in quarantined.items())
            + f" (reasons: campaign status {out})", highlight=False, soft_wrap=True)
    if report:
        _report(out, spec, baseline=baseline)
    _exit_if_parsl_hangs(engine)
    if summary.failed:  # it could not progress: say so with the exit code too
        console.print(f"[bold red]campaign could not progress:[/] {summary.stop_reason}",
                      soft_wrap=True)
        raise typer.Exit(code=1)


def _wall_time(campaign_seconds: float, engine: Any, session_seconds: float) -> str:
    """"12.0 s campaign, 15.1 s with start-up"; after a resume the campaign's total
    (``wall_seconds`` counts every session) and this session's part, told apart."""
    earlier = float(getattr(engine, "earlier_wall", 0.0) or 0.0)
    if earlier <= 0.0:
        return f"{campaign_seconds:.1f} s campaign, {session_seconds:.1f} s with start-up"
    return (f"{campaign_seconds:.1f} s campaign in total; this session "
            f"{campaign_seconds - earlier:.1f} s, {session_seconds:.1f} s with start-up")


def _exit_if_parsl_hangs(engine: Any) -> None:
    """Parsl's threads can keep a process alive whose interchange was killed by the same
    signal; everything is committed, so leave without waiting for them."""
    if engine.shutdown_incomplete:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _report(run_dir: Path, spec: Any, baseline: int) -> None:
    from campaign.report import summarize

    summary = summarize(run_dir, spec, baseline=baseline)
    if summary.get("baseline"):
        cost = summary["baseline"]
        seeds = cost["seeds"]
        console.print(f"random baseline: {seeds} seed{'s' if seeds > 1 else ''}, "
                      f"{cost['tasks']} tasks, {cost['wall_seconds']:.0f} s "
                      f"(the same budget again per seed, on threads)", highlight=False,
                      soft_wrap=True)
    for name, entry in summary["promotions"].items():
        final = entry["final_reference_rmse"]
        shown = f"{final:.3g}" if isinstance(final, float) else str(final)
        line = f"{name}: final reference RMSE {shown}"
        if entry.get("sims_to_target"):
            reached = entry["sims_to_target"]
            median = " (median of seeds)" if len(reached["random_per_seed"]) > 1 else ""
            random_sims = reached["random"]
            random_text = "never" if random_sims is None else f"{random_sims:g}"
            line += (f"; to reach random's final RMSE {entry['target_rmse']:.3g}{median}: "
                     f"{reached['campaign']} sims vs random {random_text}")
        console.print(line, highlight=False, soft_wrap=True)
    extra = "".join(f", {path}" for path in summary.get("extra_reports", []))
    console.print(f"wrote {run_dir / summary['html']} (with its PNGs), "
                  f"{run_dir / 'report.png'}, {run_dir / 'summary.json'}{extra}",
                  highlight=False, soft_wrap=True)


BaselineOption = Annotated[int, typer.Option(
    metavar="N", help="also run the campaign N more times with random selection (seeds "
                      "seed ... seed+N-1) and compare: each costs the same budget again")]
LiveOption = Annotated[bool, typer.Option(
    help="a live progress panel on a terminal (log lines only when off or not a terminal)")]


@app.command()
def run(
    script: Annotated[Path, typer.Argument(help="Python file defining `campaign = Campaign(...)`")],
    site: Annotated[str, typer.Option(help="site config name (see site_configs)")] = "local",
    out: Annotated[Path | None, typer.Option(help="run directory (default runs/<name>)")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="replace a previous run of this campaign")] = False,
    resume: Annotated[bool, typer.Option(help="continue a previous run in --out")] = False,
    report: Annotated[bool, typer.Option(help="write report.png and summary.json")] = True,
    baseline: BaselineOption = 0,
    live: LiveOption = True,
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
                mode=mode, baseline=baseline, live=live)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="run directory of a stopped or killed run")],
    site: Annotated[str | None, typer.Option(help="site (default: the run's own)")] = None,
    report: Annotated[bool, typer.Option(help="write report.png and summary.json")] = True,
    baseline: BaselineOption = 0,
    live: LiveOption = True,
    grace: Annotated[float, typer.Option(
        help="seconds to wait for running tasks after SIGTERM/SIGINT (Slurm sends SIGKILL "
             "30 s after SIGTERM by default)")] = 25.0,
    budget: Annotated[list[str] | None, typer.Option(
        help="change the budget before continuing: SCALE=N tasks, rounds=N, "
             "wall_time=SECONDS, core_seconds=N, or KEY=none to lift a limit "
             "(repeatable)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Continue a run: committed results kept, unfinished tasks run again."""
    from campaign.ledger import Ledger, LedgerError

    changes = _parse_budget(budget or [])
    if run_dir.exists() and not run_dir.is_dir():
        _fail(f"{run_dir} is a file, not a run directory")
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
                grace=grace, verbose=verbose, mode=recorded_mode, budget=changes,
                baseline=baseline, live=live)


@app.command()
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
        _fail(f"demo script {DEMO_SCRIPT} not found (install the project with pip install -e .)")
    _run_script(DEMO_SCRIPT, site, out, overwrite=overwrite, verbose=verbose,
                baseline=baseline)


def _open_run(run_dir: Path) -> tuple[Any, Any]:
    """The run's ledger and store, read-only (no cut-back, no lock), or a one-line exit.

    Like ``campaign.report.open_run``, without importing ``campaign.report``: it imports
    ``campaign.spec`` and with it ``learners`` and torch (2 s of ``campaign status``)."""
    from campaign.ledger import Ledger, LedgerError
    from campaign.store import Store, StoreError

    if not (run_dir / "ledger.sqlite").is_file():
        _fail(f"{run_dir} is not a campaign run directory (no ledger.sqlite)")
    try:
        ledger = Ledger(run_dir / "ledger.sqlite", read_only=True)
    except LedgerError as error:
        _fail(str(error))
    try:
        return ledger, Store(run_dir, ledger, read_only=True)
    except StoreError as error:
        ledger.close()
        _fail(str(error))


def _run_state(run_dir: Path, ledger: Any) -> dict[str, Any]:
    """``{"state", "reason", "resumable", "driver"}`` of a run: ``running`` while the
    process named in ``campaign.lock`` lives (same pid and start time); otherwise what the
    ledger's facts recorded (``failed``, ``stop_reason``, ``interrupted``); with none of
    them, ``killed`` if the lock still names the dead driver (it never released it) or
    ``crashed`` if the lock was released without a stop (an exception ended the driver;
    the engine records no traceback: it is in the driver's output)."""
    from campaign.lock import holder_alive, read_holder

    holder = read_holder(run_dir)
    alive = holder_alive(holder) if holder else False
    resume_hint = f"`campaign resume {run_dir}` continues it"
    if holder and alive:
        return {"state": "running", "resumable": False, "driver": holder,
                "reason": f"driver pid {holder['pid']} on {holder.get('host')} since "
                          f"{holder.get('started')}"}
    if holder and alive is None:
        return {"state": "unknown", "resumable": False, "driver": holder,
                "reason": f"driver pid {holder['pid']} ran on host {holder.get('host')}; "
                          f"whether it still runs can be checked only there"}
    stop_reason, interrupted = ledger.fact("stop_reason"), ledger.fact("interrupted")
    if ledger.fact("failed"):
        return {"state": "failed", "resumable": True, "driver": holder,
                "reason": f"{stop_reason or ledger.fact('failed')} (it could not progress)"}
    if stop_reason:
        return {"state": "stopped", "resumable": True, "driver": holder,
                "reason": stop_reason}
    if interrupted:
        return {"state": "stopped", "resumable": True, "driver": holder,
                "reason": f"{interrupted}; {resume_hint}"}
    if holder:
        return {"state": "killed", "resumable": True, "driver": holder,
                "reason": f"driver pid {holder['pid']} (started {holder.get('started')}) is "
                          f"gone and recorded no stop: killed (SIGKILL, out of memory, or its "
                          f"node went down); {resume_hint}"}
    if (run_dir / "campaign.lock").is_file():
        return {"state": "crashed", "resumable": True, "driver": None,
                "reason": f"the driver released its lock without recording a stop: an "
                          f"error ended it (its traceback is in the driver's output, not in "
                          f"the run directory); {resume_hint}"}
    return {"state": "unknown", "resumable": True, "driver": None,
            "reason": f"no stop recorded and no lock record: killed or crashed; {resume_hint}"}


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None, for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _status_record(run_dir: Path, ledger: Any, store: Any) -> dict[str, Any]:
    """Everything ``campaign status`` shows, as plain data (``--json``)."""
    state = _run_state(run_dir, ledger)
    counts = ledger.task_counts()
    scales = sorted(set(counts) | set(store.scales()))
    rounds = ledger.rounds()
    mode = ledger.fact("mode") or "rounds"
    recorded = float(ledger.fact("wall_seconds", 0.0) or 0.0)
    driver = state["driver"] or {}
    elapsed = recorded  # every finished segment (a killed one's is not recorded)
    if state["state"] == "running" and driver.get("started_at"):
        elapsed += max(0.0, time.time() - float(driver["started_at"]))
    models = {}
    for promotion in sorted({r["promotion"] for r in rounds}):
        scored = [r for r in ledger.rounds(promotion) if r.get("n_train")]
        if scored:
            models[promotion] = {"round": scored[-1]["round"],
                                 "n_train": scored[-1]["n_train"]}
            for key in ("reference_rmse", "prospective_rmse", "calibration"):
                values = [r[key] for r in scored if r.get(key) is not None]  # the newest
                models[promotion][key] = values[-1] if values else None
    return _finite({
        "run_dir": str(run_dir), "name": ledger.fact("name"), "mode": mode,
        "state": state["state"], "reason": state["reason"], "resumable": state["resumable"],
        "driver": state["driver"], "elapsed": elapsed, "resumed": ledger.fact("resumed", 0),
        "steps": max((r["round"] for r in rounds), default=-1) + (mode == "rounds"),
        "counts": counts, "rows": {scale: store.rows(scale) for scale in scales},
        "retried": {scale: sum(1 for t in ledger.tasks(scale) if t["attempts"] > 1)
                    for scale in scales},
        "models": models,
    })


def _print_status(run_dir: Path, ledger: Any, record: dict[str, Any]) -> None:
    table = Table(title=f"campaign '{record['name']}' in {run_dir}")
    for column in ("scale", "rows", "done", "submitted", "quarantined", "retried"):
        table.add_column(column, justify="right" if column != "scale" else "left")
    for scale, rows in record["rows"].items():
        by_status = record["counts"].get(scale, {})
        table.add_row(scale, str(rows), *(str(by_status.get(s, 0)) for s in
                                          ("done", "submitted", "quarantined")),
                      str(record["retried"][scale]))
    console.print(table)
    steps = "rounds" if record["mode"] == "rounds" else "models fitted"
    console.print(f"mode: {record['mode']}; {steps}: {record['steps']}; elapsed "
                  f"{record['elapsed']:.1f} s"
                  + {0: "", 1: "; resumed once"}.get(record["resumed"],
                                                      f"; resumed {record['resumed']} times"),
                  highlight=False, soft_wrap=True)
    console.print(f"state: [bold]{record['state']}[/]: {escape(record['reason'])}",
                  highlight=False, soft_wrap=True)
    from campaign.processes import leftover_processes

    leftovers = leftover_processes(run_dir)
    if leftovers:
        console.print(f"{len(leftovers)} Parsl processes of a killed driver are still "
                      f"running (pids {', '.join(str(p['pid']) for p in leftovers[:8])}); "
                      f"`campaign resume {run_dir}` ends them", soft_wrap=True)
    for promotion, model in record["models"].items():
        parts = [f"{promotion}: {model['n_train']} training points"]
        for key, label in (("reference_rmse", "reference RMSE"),
                           ("prospective_rmse", "prospective RMSE")):
            if model.get(key) is not None:
                parts.append(f"{label} {model[key]:.4g}")
        console.print(", ".join(parts))
        scored = [r for r in ledger.rounds(promotion) if r.get("n_train")]
        calibrated = [r for r in scored if r.get("calibration")]
        if calibrated:
            c = calibrated[-1]["calibration"]
            console.print(f"  calibration on round {calibrated[-1]['round']}'s new results "
                          f"(n={c['n']:.0f}, before training on them): coverage 50% "
                          f"{c['coverage_50']:.2f}, 90% {c['coverage_90']:.2f}, z-score sd "
                          f"{c['z_std']:.2f}, NLL {c['nll']:.3g}", highlight=False,
                          soft_wrap=True)
    for task in ledger.tasks(status="quarantined"):
        console.print(f"  quarantined task {task['task_id']} ({task['scale']}, parent row "
                      f"{task['parent_row']}): {escape(str(task['reason']))}",
                      highlight=False, soft_wrap=True)


@app.command()
def status(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    as_json: Annotated[bool, typer.Option(
        "--json", help="print one JSON object (state, reason, counts per scale and status, "
                       "rows, elapsed, models) instead of the table")] = False,
    watch: Annotated[bool, typer.Option(
        help="print again every --interval seconds until the run is no longer running "
             "(with --json: one object per line)")] = False,
    interval: Annotated[float, typer.Option(
        help="seconds between prints with --watch")] = 5.0,
) -> None:
    """State (running, stopped, failed, killed, crashed), counts per scale, rounds and the
    current surrogate error of a run."""
    if interval <= 0:
        _fail(f"--interval must be a positive number of seconds, got {interval}")
    while True:
        ledger, store = _open_run(run_dir)
        try:
            record = _status_record(run_dir, ledger, store)
            if as_json:
                typer.echo(json.dumps(record))
            else:
                if watch and console.is_terminal:
                    console.clear()
                _print_status(run_dir, ledger, record)
        finally:
            ledger.close()
        if not watch or record["state"] != "running":
            return
        time.sleep(interval)


@app.command()
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

    _setup_logging(verbose)
    if not (run_dir / "ledger.sqlite").exists():
        _fail(f"{run_dir} is not a campaign run directory (no ledger.sqlite)")
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
        _report(run_dir, spec, baseline)
    except ReportError as error:
        _fail(str(error))


@app.command()
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
        _fail(f"--format must be one of {', '.join(SUFFIXES)}, got '{fmt}'")
    target = output or Path(f"{run_dir.resolve().name}-{scale}{SUFFIXES[fmt]}")
    ledger, store = _open_run(run_dir)
    try:
        rows = export_scale(store, scale, fmt, target,
                            attrs={"campaign": ledger.fact("name") or "",
                                   "run_dir": str(run_dir.resolve())})
    except ExportError as error:
        _fail(str(error))
    finally:
        ledger.close()
    console.print(f"wrote {target} ({rows} rows of scale '{scale}')", highlight=False,
                  soft_wrap=True)


def _summary(obj: Any) -> str:
    """The first sentence of the docstring's first paragraph, reST roles and literals
    shown as plain text."""
    paragraph = " ".join((inspect.getdoc(obj) or "").split("\n\n", 1)[0].split())
    text = re.sub(r":\w+:`~?([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], paragraph)
    text = text.replace("``", "")
    sentence = re.match(r"(.+?[.!?])(?=\s+[A-Z]|$)", text)
    return sentence.group(1) if sentence else text


def _parameters(cls: type) -> str:
    """``name=default`` for each constructor parameter (``name`` if it has none)."""
    shown = []
    for parameter in inspect.signature(cls).parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            shown.append(f"*{parameter.name}")
        elif parameter.kind is parameter.VAR_KEYWORD:
            shown.append(f"**{parameter.name}")
        elif parameter.default is parameter.empty:
            shown.append(parameter.name)
        else:
            default = repr(parameter.default)
            shown.append(f"{parameter.name}={default if len(default) <= 40 else '...'}")
    return ", ".join(shown)


def _registry_table(title: str, registry: dict[str, type]) -> None:
    table = Table(title=title)
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("class", no_wrap=True)
    table.add_column("parameters (name=default)")
    table.add_column("description")
    for name, cls in registry.items():
        table.add_row(name, cls.__name__, _parameters(cls), _summary(cls))
    console.print(table)


@app.command()
def learners() -> None:
    """List the learners a spec can name (learner="NAME") and their parameters."""
    from learners import LEARNERS

    _registry_table('learners (Promotion(learner="NAME") or learners.learner_by_name(NAME, '
                    '**params))', LEARNERS)


@app.command()
def policies() -> None:
    """List the acquisition policies a spec can name (acquisition="NAME")."""
    from learners.acquisition import ACQUISITIONS

    _registry_table('acquisition policies (Promotion(acquisition="NAME") or '
                    'learners.acquisition.acquisition_by_name(NAME, **params))', ACQUISITIONS)


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


@app.command()
def validate(
    script: Annotated[Path, typer.Argument(help="Python file defining `campaign = Campaign(...)`")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the campaign at its smallest size on threads (one walker segment, one task per
    promoted scale) and say what would fail, before the real run spends anything."""
    from campaign.script import ScriptError, load_campaign
    from campaign.spec import SpecError
    from campaign.validate import validate as validate_spec

    _setup_logging(verbose)
    try:
        spec = load_campaign(script)
    except (ScriptError, SpecError) as error:
        _fail(str(error))
    report = validate_spec(spec)
    counts = ", ".join(f"{name} {report.rows.get(name, 0)} rows" for name in report.task_counts)
    if report.ok:
        console.print(f"{spec.name}: valid ({counts}; {report.wall_seconds:.1f} s)",
                      highlight=False, soft_wrap=True)
        return
    for problem in report.problems:
        console.print(f"[bold red]problem:[/] {problem}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


if __name__ == "__main__":
    app()
