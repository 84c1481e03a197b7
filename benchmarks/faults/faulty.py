"""The faulty run: start the campaign, kill it as planned, resume it, until it ends.

Owns: :func:`run_faulty` (driver kills at fault points and random moments, worker
kills, refused submissions, a resume after each) and what it records of each start:
the processes each driver recorded (to tell, at the end, which leftover processes a
later start should have ended) and what each refused submission did.
"""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path
from typing import Any

from benchmarks.faults.drivers import (
    CANNOT_RUN,
    REFUSAL,
    campaign_command,
    has_campaign,
    kill_at_random_moment,
    kill_session,
    launch,
    session_processes,
    wait_for,
)
from benchmarks.faults.schedule import DOUBLE_KILL_WITHIN, refusal_starts
from benchmarks.faults.workers import WorkerKiller
from campaign.faults import FAULT_POINTS
from campaign.ledger import Ledger


def run_faulty(script: Path, out: Path, site: str, plan: list[dict[str, Any]], budget: int,
               log: Path, worker_events: list[str] | None = None,
               worker_rng: random.Random | None = None,
               driver_timeout: float = 900.0, refusals: int = 0) -> dict[str, Any]:
    """Run the campaign into ``out`` through the kill ``plan`` (and, site ``local``, the
    worker-kill events and ``refusals`` refused submissions), resuming after each kill
    or refusal, until it finishes. A start that hangs past ``driver_timeout`` (killed),
    or exits as the campaign never should, ends the run: ``aborted`` says why."""
    schedule = list(plan)
    due = sorted(refusal_starts(refusals)) if site == "local" else []
    marker = out.parent / "refuse" / "marker"  # exists while a refusal is pending
    refused: list[dict[str, Any]] = []
    started_at: dict[int, float] = {}  # per driver pid: when it was launched
    pending_workers = list(worker_events or []) if site == "local" else []
    worker_rng = worker_rng or random.Random(0)
    events: list[dict[str, Any]] = []
    worker_kills: list[dict[str, Any]] = []
    sessions: list[int] = []
    starts = 0
    code: int | None = None
    could_not_progress = aborted = None
    try:
        while True:
            starts += 1
            # a driver killed before it recorded its campaign left nothing to resume
            args = (campaign_command("resume", str(out), "--site", site, "--no-report")
                    if has_campaign(out) else
                    campaign_command("run", str(script), "--site", site, "--out", str(out),
                                     "--no-report"))
            # a refusal is pending from its start until a start's block submission
            # consumed it (a driver killed before it submitted leaves it to the next)
            if due and starts >= due[0] and not marker.exists():
                due.pop(0)
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text("")
            refuse = marker if marker.exists() else None
            step = schedule[0] if schedule else None
            point = (f"{step['point']}:{step['pass']}"
                     if step is not None and step["how"] == "fault point" else None)
            process = launch(args, log, point, refuse)
            sessions.append(process.pid)
            started_at[process.pid] = time.time()
            killer = (WorkerKiller(process.pid, pending_workers, worker_rng, worker_kills)
                      if pending_workers else None)
            try:
                if step is not None and step["how"] == "random moment":
                    event = {**step, **kill_at_random_moment(process, out, step, budget,
                                                                 driver_timeout)}
                    code = process.returncode
                else:
                    code = wait_for(process, driver_timeout, log)
                    event = {**step, "fired": code == -signal.SIGKILL} if step else {}
            finally:
                if killer is not None:
                    killer.stop()
                _keep_record(out, process.pid, started_at[process.pid])
            if refuse is not None and not refuse.exists():  # refused in this start
                refused.append(_refusal_event(out, starts, code))
                if refused[-1]["stopped_run"] and not event.get("fired"):
                    continue  # resume (the kill planned for this start comes next)
            if step is not None:
                schedule.pop(0)
                events.append({"start": starts, **event, "returncode": code})
                if event["fired"]:
                    if step["how"] == "random moment":
                        continue
                    if code == -signal.SIGKILL:
                        continue  # its Parsl processes are left for the next start to end
            ledger = Ledger(out / "ledger.sqlite", read_only=True)
            finished = ledger.fact("stop_reason") is not None
            could_not_progress = ledger.fact("failed")
            ledger.close()
            # exit 1 with a recorded reason: the run ended and said it could not progress
            # (e.g. most fine tasks quarantined in the injected failing regions); the
            # audit below still checks what it committed
            if code != 0 and not (code == 1 and finished and could_not_progress):
                raise RuntimeError(f"campaign exited {code}; see {log}")
            if not finished:
                raise RuntimeError(f"campaign exited 0 without a stop reason; see {log}")
            if schedule:
                events.append({"start": starts, "how": "run finished first",
                               "kills_not_made": len(schedule)})
            break
    except RuntimeError as error:  # a hung start, or an exit the suite cannot go on from:
        aborted = str(error)  # the mode fails, and the audit looks at what is on disk
    finally:
        # processes of earlier drivers still alive now were not ended by a later start
        leftover_details = _leftovers(out, sessions[:-1])
        for session in sessions:
            kill_session(session)
    fired = [e for e in events if e.get("fired")]
    points_fired = {point: sum(1 for e in fired if e.get("point") == point)
                    for point in FAULT_POINTS}
    return {"events": events, "driver_kills": len(fired), "driver_starts": starts,
            "aborted": aborted,
            "final_exit_code": code, "could_not_progress": could_not_progress or None,
            "points_fired": points_fired,
            "random_kills": sum(1 for e in fired if e["how"] == "random moment"),
            "worker_kill_events": worker_kills,
            "worker_kills": sum(e["killed"] for e in worker_kills),
            "double_worker_kills": sum(1 for e in worker_kills
                                       if e["killed"] == 2
                                       and e["within_s"] <= DOUBLE_KILL_WITHIN),
            "leftover_processes": len(leftover_details),
            "leftover_details": leftover_details[:40], "refusal_events": refused,
            "refusals": len(refused),
            "refusals_stopped_run": sum(1 for e in refused if e["stopped_run"]),
            "refusals_handled": sum(1 for e in refused if e["handled"])}


def _keep_record(out: Path, driver: int, started: float) -> None:
    """Keep what the driver ``driver`` recorded of its Parsl processes
    (``processes.json``, ``campaign.processes``), if it recorded anything: the next
    start overwrites it. Also when it ran for: to tell a driver killed before it
    recorded from one whose processes were recorded and still not ended."""
    record = out / "processes.json"
    kept = {"driver": driver, "started": started, "ran_s": round(time.time() - started, 2),
            "recorded": [], "recorded_at_s": None}
    try:
        data = json.loads(record.read_text())
        if data.get("driver", {}).get("pid") == driver:
            kept["recorded"] = [entry["pid"] for entry in data.get("processes", [])]
            kept["recorded_at_s"] = round(record.stat().st_mtime - started, 2)
    except (OSError, ValueError):
        pass
    folder = out.parent / "process-records"
    folder.mkdir(exist_ok=True)
    (folder / f"{driver}.json").write_text(json.dumps(kept))


def _leftovers(out: Path, sessions: list[int]) -> list[dict[str, Any]]:
    """Processes of earlier drivers' sessions still alive, each with whether its driver
    had recorded it, how long that driver ran, and its command line."""
    import psutil

    found = []
    for session in sessions:
        try:
            kept = json.loads((out.parent / "process-records" / f"{session}.json").read_text())
        except (OSError, ValueError):
            kept = {"recorded": [], "ran_s": None, "started": None, "recorded_at_s": None}
        for process in session_processes(session):
            try:
                command = " ".join(process.cmdline())[:160]
                born, parent = process.create_time(), process.ppid()
            except psutil.Error:
                command, born, parent = "?", None, None
            found.append({"driver": session, "pid": process.pid, "ppid": parent,
                          "recorded": process.pid in kept["recorded"],
                          "driver_recorded_any": bool(kept["recorded"]),
                          "driver_ran_s": kept["ran_s"],
                          # seconds after its driver's launch: it was born, last recorded
                          "born_s": None if born is None or kept["started"] is None
                          else round(born - kept["started"], 2),
                          "last_record_s": kept["recorded_at_s"], "cmdline": command})
    return found


def _refusal_event(out: Path, start: int, code: int) -> dict[str, Any]:
    """What a start whose block submission was refused did. Parsl may submit the block
    again and the run goes on, or give the executor up: then the start must end with
    exit 1, the engine saying the scale cannot run on this site with the scheduler's
    message. Either way nothing may be quarantined or charged to the app for it (the
    audit checks that)."""
    ledger = Ledger(out / "ledger.sqlite", read_only=True)
    failed = ledger.fact("failed") or ""
    ledger.close()
    stopped = code == 1 and CANNOT_RUN in failed
    return {"start": start, "how": "refused submission", "returncode": code,
            "failed": failed[:400], "stopped_run": stopped,
            "handled": REFUSAL in failed if stopped else code in (0, -signal.SIGKILL)}

