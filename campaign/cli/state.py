"""``campaign status``: what state a run is in (running, stopped, failed, killed,
crashed) and why, its counts per scale and its newest model, as a table or JSON."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from campaign.cli.terminal import console, fail, open_run


def run_state(run_dir: Path, ledger: Any) -> dict[str, Any]:
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
    host = (holder or {}).get("host") or "an unknown host"
    started = (holder or {}).get("started") or "an unknown time"
    if holder and alive:
        return {"state": "running", "resumable": False, "driver": holder,
                "reason": f"driver pid {holder['pid']} on {host} since "
                          f"{started}"}
    if holder and alive is None:
        return {"state": "unknown", "resumable": False, "driver": holder,
                "reason": f"driver pid {holder['pid']} ran on host {host}; "
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
                "reason": f"driver pid {holder['pid']} (started {started}) is "
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


def last_recorded_event(ledger: Any) -> float | None:
    """The newest time the ledger recorded: an attempt submitted, started or ended, or a
    model fit ended (seconds since the epoch); None before any."""
    times = [a[key] for a in ledger.attempts() for key in ("submitted", "started", "ended")
             if a.get(key) is not None]
    times += [r["fit_ended"] for r in ledger.rounds() if r.get("fit_ended") is not None]
    return max(times) if times else None


def attempt_outcomes(ledger: Any) -> dict[str, dict[str, int]]:
    """Per scale, how many recorded attempts ended with each outcome (``done``,
    ``failed``, ``quarantined``, and any other the ledger records, such as attempts lost
    to the infrastructure)."""
    found: dict[str, dict[str, int]] = {}
    for attempt in ledger.attempts():
        by_outcome = found.setdefault(attempt["scale"], {})
        by_outcome[attempt["outcome"]] = by_outcome.get(attempt["outcome"], 0) + 1
    return found


def run_elapsed(ledger: Any, state: dict[str, Any]) -> tuple[float, str]:
    """(seconds, how they were measured) of a run's wall time over all its sessions.

    Every session that ended recorded its total in ``wall_seconds``. A running driver
    adds the time since it started; a driver that ended without recording (killed,
    crashed) adds the time from its start (the ledger's ``sessions``) to the last event it
    recorded, a lower bound on how long it ran."""
    recorded = float(ledger.fact("wall_seconds", 0.0) or 0.0)
    driver = state["driver"] or {}
    if state["state"] == "running" and driver.get("started_at"):
        return recorded + max(0.0, time.time() - float(driver["started_at"])), ""
    if state["state"] in ("killed", "crashed", "unknown"):
        sessions = ledger.fact("sessions") or []
        last = last_recorded_event(ledger)
        if sessions and last is not None and last > float(sessions[-1]):
            return (recorded + last - float(sessions[-1]),
                    " (until the last event the driver recorded)")
    return recorded, ""


def status_record(run_dir: Path, ledger: Any, store: Any) -> dict[str, Any]:
    """Everything ``campaign status`` shows, as plain data (``--json``)."""
    state = run_state(run_dir, ledger)
    counts = ledger.task_counts()
    scales = sorted(set(counts) | set(store.scales()))
    rounds = ledger.rounds()
    mode = ledger.fact("mode") or "rounds"
    elapsed, elapsed_note = run_elapsed(ledger, state)
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
        "elapsed_note": elapsed_note,
        "steps": (max((r["round"] + 1 for r in rounds), default=0) if mode == "rounds"
                  else sum(1 for r in rounds if r.get("n_train"))),
        "counts": counts, "rows": {scale: store.rows(scale) for scale in scales},
        "waiting": waiting_to_start(run_dir, ledger) if state["state"] == "running" else {},
        "attempt_outcomes": attempt_outcomes(ledger),
        "retried": {scale: sum(1 for t in ledger.tasks(scale) if t["attempts"] > 1)
                    for scale in scales},
        "models": models,
        "simulated": ledger.fact("simulated"), "dry_run": bool(ledger.fact("dry_run")),
    })


def waiting_to_start(run_dir: Path, ledger: Any) -> dict[str, int]:
    """Per scale, the unfinished tasks of a running driver that no worker has started
    (no start marker, ``campaign.retry``): queued at the executor, or their block not
    started yet at the scheduler. Only scales with such tasks."""
    from campaign.retry import started_task_ids

    started = started_task_ids(run_dir)
    waiting: dict[str, int] = {}
    for task in ledger.tasks(status="submitted"):
        if task["task_id"] not in started:
            waiting[task["scale"]] = waiting.get(task["scale"], 0) + 1
    return waiting


def print_status(run_dir: Path, ledger: Any, record: dict[str, Any]) -> None:
    """The status table and lines of :func:`status_record` for a person."""
    table = Table(title=f"campaign '{record['name']}' in {run_dir}")
    # "submitted (total)" counts every task recorded, as the live panel's column does;
    # "unfinished" those without an outcome yet (in flight, or lost with a killed driver)
    for column in ("scale", "rows", "submitted (total)", "unfinished", "done",
                   "quarantined", "retried"):
        table.add_column(column, justify="right" if column != "scale" else "left")
    for scale, rows in record["rows"].items():
        by_status = record["counts"].get(scale, {})
        table.add_row(scale, str(rows), str(sum(by_status.values())),
                      *(str(by_status.get(s, 0)) for s in ("submitted", "done", "quarantined")),
                      str(record["retried"][scale]))
    if record.get("simulated"):
        from campaign.report.summary import simulated_note

        console.print(f"[bold]{escape(simulated_note(record['simulated'], record['dry_run']))}[/]",
                      highlight=False, soft_wrap=True)
    console.print(table)
    not_done = {scale: {o: n for o, n in outcomes.items() if o != "done"}
                for scale, outcomes in record["attempt_outcomes"].items()}
    if any(not_done.values()):
        console.print("attempts that did not end done: " + "; ".join(
            f"{scale} " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(found.items()))
            for scale, found in not_done.items() if found), highlight=False, soft_wrap=True)
    if record["waiting"]:
        console.print("waiting to start (submitted, not started by a worker: queued, or "
                      "their block has not started): " + ", ".join(
                          f"{scale} {n} task{'s' if n != 1 else ''}"
                          for scale, n in sorted(record["waiting"].items())),
                      highlight=False, soft_wrap=True)
    steps = "rounds" if record["mode"] == "rounds" else "models fitted"
    console.print(f"mode: {record['mode']}; {steps}: {record['steps']}; elapsed "
                  f"{record['elapsed']:.1f} s{record['elapsed_note']}"
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
        origin = (f"parent row {task['parent_row']}" if task["parent_row"] >= 0
                  else "a walker segment")
        attempts = task.get("attempts") or 0
        tried = f", {attempts} attempt{'s' if attempts != 1 else ''}" if attempts else ""
        console.print(f"  quarantined task {task['task_id']} ({task['scale']}, {origin}"
                      f"{tried}): {escape(task['reason'] or 'no reason recorded')}",
                      highlight=False, soft_wrap=True)


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
        fail(f"--interval must be a positive number of seconds, got {interval}")
    while True:
        ledger, store = open_run(run_dir)
        try:
            record = status_record(run_dir, ledger, store)
            if as_json:
                typer.echo(json.dumps(record))
            else:
                if watch and console.is_terminal:
                    console.clear()
                print_status(run_dir, ledger, record)
        finally:
            ledger.close()
        if not watch or record["state"] != "running":
            return
        time.sleep(interval)
