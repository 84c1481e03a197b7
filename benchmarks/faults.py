"""Fault injection: SIGKILL the campaign driver again and again, kill HTEX workers, inject
failing and NaN simulations, resume after each kill, then audit the run directory.

A campaign whose fine scale fails on purpose (one region always returns NaN, one always
raises, and some seeds fail transiently) runs under faults in each engine mode
(``mode="async"``, the default, and ``mode="rounds"``):

* **Driver kills**, on a fixed schedule (:func:`kill_plan`): the first kills go through
  every named point of :mod:`campaign.faults` once, in order (``between-store-and-ledger``,
  ``during-fit``, ``after-plan``, ``after-commit``: the driver SIGKILLs itself on the
  n-th pass of the point, ``CAMPAIGN_FAULT_POINT=<point>:<n>``); later kills alternate a
  kill at a random moment (SIGKILL of the driver's whole process session, as a node
  failure would, once a random share of the remaining fine tasks has finished in this
  start, plus up to half a second) and the next point of the cycle. A point's pass number n
  is drawn from 1..:data:`PASSES` [point], small enough that a start with work left
  reaches it: every start plans a batch and commits, and every start that gets to the
  end fits (the final fit). Each start is resumed with ``campaign resume``. Every event
  records whether the kill happened (``fired``: return code -9 after the point, or the
  driver killed at its moment) or the run finished first; ``points_fired`` counts
  the kills per point. A driver that killed itself at a point leaves its Parsl
  processes behind (as an OOM kill of the driver alone would): the next start must end
  them (``campaign.processes``); ``leftover_processes`` counts those still alive at the
  end (then the suite ends them), and ``leftover_details`` says of each whether its
  driver had recorded it, when it was born and when its driver last recorded
  (seconds after that driver's launch), and its command line.
* **Worker kills** (site ``local`` only, ``worker_kills`` > 0): while a driver runs,
  SIGKILLs of HTEX worker processes of its simulation pools (children of
  ``process_worker_pool.py`` that hold a ``worker_<n>.log``; never the pool's manager or
  resource-tracker process, never the ``train`` pool), at random moments, in a pool with
  a worker mid-task if there is one, busy workers first; the first event, and some later
  ones, kill two workers of one pool within 2 s (which once left a task hanging inside
  Parsl 2026.10; the engine now has an engine-side deadline per task).
  ``deadline_exceeded`` counts attempts that needed that deadline. A killed worker is an
  infrastructure loss (Parsl's ``WorkerLost`` or ``ManagerLost``, or the worker named by
  the attempt's start marker is gone): the attempt is recorded with outcome ``lost`` and
  resubmitted with the same seed, using none of the task's ``retries``
  (``campaign.retry``).
* **Refused submissions** (site ``local`` only, ``refusals`` > 0): from each driver start
  :func:`refusal_starts` names until one start submits its ``sim-fine`` block, the
  local provider refuses that submission once (its ``submit`` raises Parsl's
  ``SubmitException`` with an ``sbatch: error: ...`` message, through a
  ``sitecustomize`` module put on the start's ``PYTHONPATH``), as a batch scheduler
  refusing a job would. Parsl records a failed block; it may submit the block again
  (the run goes on), or give the executor up: then the start must end with exit 1,
  the engine saying the scale cannot run on this site with the scheduler's message,
  and the next start (a resume) goes on. Either way nothing is quarantined or charged
  to the app for it. Driver and worker kills go on as planned in that start.

The audit checks the faulty run against its own ledger and store (both modes):

``lost``        done tasks whose rows are missing from the store; tasks still
                'submitted' at the end; fine tasks recorded != the budget when the run
                says 'task budget spent'; rounds mode also: (walker, parent_row, round)
                tasks the uninterrupted reference completed that the faulty run did not
``duplicated``  rows of a task committed more than once; a source row promoted twice
``torn``        arrays of a scale whose length differs from the committed count, rows
                whose task is not a done task of that scale, done tasks with fewer rows
                in the store than recorded
``quarantined`` tasks quarantined (expected > 0: faults are injected on purpose)
``quarantined_for_infrastructure``  quarantined tasks whose reason is an infrastructure
                loss or an engine-side deadline (the app never hangs: a deadline here
                means a lost attempt was charged to the app); must be 0
``infrastructure_charged_to_app``  attempts recorded 'failed' or 'quarantined' whose
                reason is an infrastructure loss or a deadline (an app retry used by
                the infrastructure); must be 0
``attempts_lost`` attempts recorded with outcome 'lost' (resubmitted, no retry used)
``trained_on_quarantined``  training inputs of any saved model that are quarantined inputs
``identical_to_uninterrupted``  rounds mode: the store equals an uninterrupted reference
                run of the same seed (what rounds mode promises). Async mode: ``None``,
                and no reference is run: async steering reacts to completion order and
                timing, so two runs of one seed differ and there is nothing to equal.

Usage::

    python -m benchmarks.faults [--quick] [--mode async|rounds|both] [--json PATH]
                                [--site local|threads] [--kills N] [--worker-kills N]
                                [--refusals N]

A mode passes when nothing is lost, duplicated, torn or unfinished, nothing quarantined
is trained on, every fault point fired, every planned refusal stopped its start as it
should, no infrastructure fault was charged to the app, no Parsl process of a killed
driver is left, the campaign's own last exit is 0, and (rounds) the store equals the
uninterrupted run's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from campaign.faults import FAULT_POINTS
from campaign.ledger import Ledger
from campaign.store import Store

MODES = ("async", "rounds")
# driver_timeout: seconds one driver start may take before the suite calls it hung
QUICK = {"site": "local", "kills": 6, "budget": 24, "worker_kills": 2, "refusals": 1,
         "driver_timeout": 300}
FULL = {"site": "local", "kills": 20, "budget": 48, "worker_kills": 8, "refusals": 2,
        "driver_timeout": 900}
# a point's pass number n is drawn from 1..PASSES[point]: commits and plans happen many
# times per start; a fit at least once in a start that gets to its end (the final fit)
PASSES = {"between-store-and-ledger": 3, "during-fit": 1, "after-plan": 3, "after-commit": 3}
WORKER_KILL_GAP = (2.0, 6.0)  # seconds between worker-kill events of one driver start
DOUBLE_KILL_WITHIN = 2.0  # a double worker kill: the second within this many seconds
LOST_WORKER = re.compile(r"WorkerLost|ManagerLost|loss of worker", re.IGNORECASE)
# reasons that are the infrastructure's (or a deadline, which this app never needs)
INFRASTRUCTURE = re.compile(r"WorkerLost|ManagerLost|loss of worker|BadStateException|"
                            r"ScalingFailed|SubmitException|InterchangeLost|ExecutorError|"
                            r"DeadlineExceeded", re.IGNORECASE)
REFUSAL = "sbatch: error: Batch job submission failed: injected refusal (benchmarks.faults)"
CANNOT_RUN = "cannot run tasks on this site"  # how the engine stops on a fatal loss
REFUSE_ONCE = textwrap.dedent('''
    """benchmarks.faults: the local provider refuses the sim-fine block's submission once
    (while the file named by CAMPAIGN_FAULTS_REFUSE exists)."""
    import os

    _marker = os.environ.get("CAMPAIGN_FAULTS_REFUSE")
    if _marker:
        from parsl.providers import LocalProvider
        from parsl.providers.errors import SubmitException

        _submit = LocalProvider.submit

        def _refusing_submit(self, command, tasks_per_node, job_name="parsl.localprovider"):
            if ".sim-fine." in job_name:
                try:
                    os.unlink(_marker)
                except FileNotFoundError:
                    pass
                else:
                    raise SubmitException(job_name, {refusal!r}, retcode=1)
            return _submit(self, command, tasks_per_node, job_name)

        LocalProvider.submit = _refusing_submit
''').format(refusal=REFUSAL)

SCRIPT = textwrap.dedent('''
    """Müller-Brown campaign whose fine scale fails on purpose (benchmarks.faults)."""
    import numpy as np

    from apps import toy
    from campaign import Budget, Campaign, Promotion, Scale
    from learners import ExactGP
    from learners.acquisition import MaxVariance


    def flaky_fine(x, *, seed, n_samples):
        if x[0] > 0.45:  # a region that always returns NaN
            return {{"x": np.atleast_2d(x), "energy": np.array([np.nan])}}
        if x[1] > 1.6:  # a region that always raises
            raise RuntimeError("injected failure")
        if seed % 5 == 0:  # transient: the retry's new seed usually passes
            raise RuntimeError("injected transient failure")
        return toy.smeared_energy(x, seed=seed, n_samples=n_samples)


    campaign = Campaign(
        name="faults",
        scales=[Scale("coarse", app=toy.langevin, params={{"n_steps": 2000, "stride": 100}},
                      walkers=toy.initial_walkers(3)),
                Scale("fine", app=flaky_fine, params={{"n_samples": 8192}}, retries=1)],
        promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
                              learner=ExactGP(restarts=1, iterations=60),
                              acquisition=MaxVariance(), batch_size=4, quantity="energy")],
        budget=Budget(fine={budget}),
        seed=3,
        mode="{mode}",
    )
''')


def campaign_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "campaign"), *args]


def launch(args: list[str], log: Path, fault_point: str | None = None,
           refuse: Path | None = None) -> subprocess.Popen:
    """Start a driver in a session of its own; ``fault_point`` kills it there;
    ``refuse``: a marker whose existence makes the sim-fine block's submission fail
    once (:data:`REFUSE_ONCE`, put in the folder that holds the marker)."""
    env = dict(os.environ, COLUMNS="200")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("CAMPAIGN_FAULT_POINT", None)
    env.pop("CAMPAIGN_FAULTS_REFUSE", None)
    if fault_point:
        env["CAMPAIGN_FAULT_POINT"] = fault_point
    if refuse is not None:
        (refuse.parent / "sitecustomize.py").write_text(REFUSE_ONCE)
        env["CAMPAIGN_FAULTS_REFUSE"] = str(refuse)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(refuse.parent), *filter(None, [env.get("PYTHONPATH")])])
    handle = open(log, "a")  # noqa: SIM115 - closed by the caller through the process
    handle.write(f"\n$ {' '.join(args)}  [{fault_point or 'no fault point'}]\n")
    handle.flush()
    return subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _has_campaign(out: Path) -> bool:
    if not (out / "ledger.sqlite").exists():
        return False
    ledger = Ledger(out / "ledger.sqlite", read_only=True)
    try:
        return ledger.fact("name") is not None
    finally:
        ledger.close()


def _finished_tasks(out: Path, scale: str) -> int | None:
    """Tasks of ``scale`` done or quarantined so far (None while there is no ledger):
    a short read-only look while the driver writes (SQLite WAL readers never block it)."""
    path = out / "ledger.sqlite"
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            return int(db.execute("SELECT COUNT(*) FROM tasks WHERE scale = ? AND status "
                                  "!= 'submitted'", (scale,)).fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:  # not created yet, or busy: look again later
        return None


def session_processes(session: int) -> list[Any]:
    import psutil

    found = []
    for other in psutil.process_iter(["pid"]):
        try:
            if other.pid != os.getpid() and os.getsid(other.pid) == session:
                found.append(other)
        except (psutil.Error, ProcessLookupError):
            continue
    return found


def kill_session(session: int) -> int:
    """SIGKILL every process of a session; returns how many were killed."""
    import psutil

    killed = 0
    for other in session_processes(session):
        try:
            other.kill()
            killed += 1
        except psutil.Error:
            continue
    return killed


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the driver and everything in its session (Parsl's interchange and worker
    pools start their own process groups, but stay in the session), as a node failure
    would."""
    kill_session(process.pid)
    process.wait()


# -- the kill schedule ------------------------------------------------------------------
def kill_plan(kills: int, rng: random.Random) -> list[dict[str, Any]]:
    """The driver kills, in order: one at each fault point first, then alternately a kill
    at a random moment and the next fault point of the cycle. Deterministic per ``rng``
    seed."""
    plan: list[dict[str, Any]] = []
    cycle = 0
    for index in range(kills):
        extra = index - len(FAULT_POINTS)
        if extra < 0 or extra % 2 == 1:
            point = FAULT_POINTS[cycle % len(FAULT_POINTS)]
            cycle += 1
            plan.append({"how": "fault point", "point": point,
                         "pass": rng.randint(1, PASSES[point])})
        else:
            # after this share of the fine tasks left has finished, plus a jitter
            plan.append({"how": "random moment", "share": rng.uniform(0.1, 0.5),
                         "jitter_s": rng.uniform(0.0, 0.5)})
    return plan


def refusal_starts(refusals: int) -> set[int]:
    """The driver starts (1-based) whose sim-fine block submission is refused: the
    2nd, 5th, 8th ...: each after a kill's resume, none the first start."""
    return {2 + 3 * index for index in range(refusals)}


def worker_kill_plan(kills: int, rng: random.Random) -> list[str]:
    """Worker-kill events totalling ``kills`` SIGKILLs: the first two workers of one pool
    within 2 s ('double'), then single or double at random."""
    events: list[str] = []
    total = 0
    while total < kills:
        kind = "double" if not events else rng.choice(("single", "single", "double"))
        if kind == "double" and total + 2 > kills:
            kind = "single"
        events.append(kind)
        total += 2 if kind == "double" else 1
    return events


# -- worker kills -----------------------------------------------------------------------
def sim_workers(session: int) -> dict[str, list[Any]]:
    """HTEX worker processes of the simulation pools (``sim-*``) in a process session,
    per pool label: children of ``process_worker_pool.py`` holding a ``worker_<n>.log``
    open (the pool's multiprocessing manager and resource tracker hold none)."""
    import psutil

    pools: dict[str, list[Any]] = {}
    for process in session_processes(session):
        try:
            command = process.cmdline()
            if not any(part.endswith("process_worker_pool.py") for part in command):
                continue
            logdir = next((part.split("=", 1)[1] for part in command
                           if part.startswith("--logdir=")), "")
            label = Path(logdir).name
            if not label.startswith("sim-"):
                continue
            workers = []
            for child in process.children():
                try:
                    if any(re.fullmatch(r"worker_\d+\.log", Path(f.path).name)
                           for f in child.open_files()):
                        workers.append(child)
                except psutil.Error:
                    continue
            pools.setdefault(label, []).extend(workers)
        except psutil.Error:
            continue
    return pools


def _busy_first(workers: list[Any], rng: random.Random) -> list[Any]:
    """Workers in random order, those that used CPU in the last 0.2 s first."""
    busy = _busy(workers)
    shuffled = list(workers)
    rng.shuffle(shuffled)
    return sorted(shuffled, key=lambda w: w.pid not in busy)


def _busy(workers: list[Any]) -> set[int]:
    """The pids of ``workers`` that used CPU in the next 0.2 s (mid-task)."""
    import psutil

    def cpu(process: Any) -> float:
        try:
            times = process.cpu_times()
            return times.user + times.system
        except psutil.Error:
            return -1.0

    before = {w.pid: cpu(w) for w in workers}
    time.sleep(0.2)
    return {w.pid for w in workers if cpu(w) > before[w.pid]}


class WorkerKiller:
    """While one driver start runs, carries out pending worker-kill events (shared by
    all starts of a suite) at random moments, and records what it killed."""

    def __init__(self, session: int, pending: list[str], rng: random.Random,
                 record: list[dict[str, Any]]) -> None:
        self.session, self.pending, self.rng, self.record = session, pending, rng, record
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)

    def _kill(self, process: Any) -> bool:
        import psutil

        try:
            process.kill()
            return True
        except psutil.Error:
            return False

    def _run(self) -> None:
        while self.pending and not self.stopped.wait(self.rng.uniform(*WORKER_KILL_GAP)):
            pools = {label: workers for label, workers in sim_workers(self.session).items()
                     if workers}
            kind = self.pending[0]
            if kind == "double":
                pools = {label: w for label, w in pools.items() if len(w) >= 2}
            if not pools:
                continue  # pools still starting (or gone): try again later
            # a pool with a worker mid-task, if any: its kill loses an attempt
            busy = _busy([w for workers in pools.values() for w in workers])
            label = self.rng.choice(sorted(
                [name for name, workers in pools.items()
                 if any(w.pid in busy for w in workers)] or pools))
            victims = _busy_first(pools[label], self.rng)[:2 if kind == "double" else 1]
            killed = []
            first = time.monotonic()
            for index, victim in enumerate(victims):
                if index:
                    time.sleep(self.rng.uniform(0.2, DOUBLE_KILL_WITHIN - 0.6))
                if self.stopped.is_set() or not self._kill(victim):
                    break
                killed.append((victim.pid, time.monotonic() - first))
            if not killed:
                continue
            self.pending.pop(0)
            self.record.append({"kind": kind, "pool": label, "pids": [p for p, _ in killed],
                                "within_s": round(killed[-1][1], 2), "killed": len(killed)})


# -- the faulty run ---------------------------------------------------------------------
def _wait(process: subprocess.Popen, timeout: float, log: Path) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        raise RuntimeError(f"a driver start took more than {timeout:.0f} s (hung?); see "
                           f"{log}") from None


def _kill_at_random_moment(process: subprocess.Popen, out: Path, step: dict[str, Any],
                           budget: int, timeout: float) -> dict[str, Any]:
    """Kill the driver's session once ``step['share']`` of the fine tasks left has
    finished in this start (plus ``step['jitter_s']``); or let it finish first."""
    before = _finished_tasks(out, "fine") or 0
    target = before + max(1, round(step["share"] * max(1, budget - before)))
    started = time.monotonic()
    while process.poll() is None:
        finished = _finished_tasks(out, "fine")
        if finished is not None and finished >= target:
            time.sleep(step["jitter_s"])
            if process.poll() is None:
                kill_group(process)
                return {"fired": True, "after_s": round(time.monotonic() - started, 2),
                        "fine_finished_before": before, "fine_finished_at_kill": finished}
            break
        if time.monotonic() - started > timeout:
            kill_group(process)
            raise RuntimeError(f"a driver start took more than {timeout:.0f} s, "
                               f"{finished} fine tasks finished (hung?)")
        time.sleep(0.1)
    process.wait()
    return {"fired": False, "fine_finished_before": before}


def run_faulty(script: Path, out: Path, site: str, plan: list[dict[str, Any]], budget: int,
               log: Path, worker_events: list[str] | None = None,
               worker_rng: random.Random | None = None,
               driver_timeout: float = 900.0, refusals: int = 0) -> dict[str, Any]:
    """Run the campaign into ``out`` through the kill ``plan`` (and, site ``local``, the
    worker-kill events and ``refusals`` refused submissions), resuming after each kill
    or refusal, until it finishes."""
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
    try:
        while True:
            starts += 1
            # a driver killed before it recorded its campaign left nothing to resume
            args = (campaign_command("resume", str(out), "--site", site, "--no-report")
                    if _has_campaign(out) else
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
                    event = {**step, **_kill_at_random_moment(process, out, step, budget,
                                                                 driver_timeout)}
                    code = process.returncode
                else:
                    code = _wait(process, driver_timeout, log)
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
    finally:
        # processes of earlier drivers still alive now were not ended by a later start
        leftover_details = _leftovers(out, sessions[:-1])
        for session in sessions:
            kill_session(session)
    fired = [e for e in events if e.get("fired")]
    points_fired = {point: sum(1 for e in fired if e.get("point") == point)
                    for point in FAULT_POINTS}
    return {"events": events, "driver_kills": len(fired), "driver_starts": starts,
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


# -- the audit --------------------------------------------------------------------------
def audit(run_dir: Path, budget: int, reference_dir: Path | None = None) -> dict[str, Any]:
    """Check a run directory against its own ledger and store, and (rounds mode,
    ``reference_dir``) against an uninterrupted reference run."""
    ledger = Ledger(run_dir / "ledger.sqlite", read_only=True)
    store = Store(run_dir, ledger, read_only=True)
    problems: list[str] = []
    torn = duplicated = lost = committed = 0
    for scale in ("coarse", "fine"):
        done = {t["task_id"]: t for t in ledger.tasks(scale, status="done")}
        committed += len(done)
        rows = store.rows(scale)
        if scale in store.group:
            group = store.group[scale]
            lengths = [group["x"].shape[0]] + [a.shape[0] for _, a in group["y"].arrays()] + [
                a.shape[0] for _, a in group["meta"].arrays()]
            if any(length != rows for length in lengths):
                problems.append(f"{scale}: array lengths {sorted(set(lengths))}, {rows} "
                                "committed")
            torn += sum(abs(length - rows) for length in lengths)
            task_ids = store.read(scale).meta["task_id"]
        else:
            task_ids = np.zeros(0, np.int64)
        unique, counts = np.unique(task_ids, return_counts=True)
        in_store = dict(zip(unique.tolist(), counts.tolist(), strict=True))
        for task_id, count in in_store.items():
            if task_id not in done:
                torn += count
                problems.append(f"{scale}: {count} rows of task {task_id}, not a done task")
            elif count > done[task_id]["rows"]:
                duplicated += count - done[task_id]["rows"]
                problems.append(f"{scale}: task {task_id} has {count} rows, recorded "
                                f"{done[task_id]['rows']}")
            elif count < done[task_id]["rows"]:
                torn += done[task_id]["rows"] - count
                problems.append(f"{scale}: task {task_id} has {count} rows, recorded "
                                f"{done[task_id]['rows']}")
        missing = [task_id for task_id, task in done.items()
                   if task["rows"] and task_id not in in_store]
        lost += len(missing)
        if missing:
            problems.append(f"{scale}: done tasks without rows: {missing[:10]}")
        if reference_dir is not None:  # what the uninterrupted run completed must be here
            reference_ledger = Ledger(reference_dir / "ledger.sqlite", read_only=True)
            key = ("walker", "parent_row", "round")
            ours = {tuple(t[k] for k in key) for t in done.values()}
            theirs = {tuple(t[k] for k in key)
                      for t in reference_ledger.tasks(scale, "done")}
            reference_ledger.close()
            lost += len(theirs - ours)
            if theirs - ours:
                problems.append(f"{scale}: {len(theirs - ours)} tasks done in the reference "
                                "and not here")
    unfinished = ledger.tasks(status="submitted")
    lost += len(unfinished)
    fine = ledger.tasks("fine")
    stop_reason = ledger.fact("stop_reason")
    if stop_reason and "task budget spent" in stop_reason and len(fine) != budget:
        lost += abs(budget - len(fine))
        problems.append(f"'{stop_reason}' with {len(fine)} fine tasks recorded")
    parents, times = np.unique([t["parent_row"] for t in fine], return_counts=True)
    if np.any(times > 1):
        duplicated += int(np.sum(times[times > 1] - 1))
        problems.append(f"source rows promoted more than once: {parents[times > 1].tolist()}")
    quarantined = ledger.tasks(status="quarantined")
    source_x = store.read("coarse").x
    bad_inputs = {tuple(np.round(source_x[t["parent_row"]], 12)) for t in quarantined
                  if t["scale"] == "fine"}
    trained_on_quarantined = 0
    models = "models/coarse-to-fine" in store.group
    for name in (store.group["models/coarse-to-fine"].group_keys() if models else []):
        state = store.load_model("coarse-to-fine", int(name))
        if "x_train" in state:
            trained_on_quarantined += sum(tuple(np.round(row, 12)) in bad_inputs
                                          for row in state["x_train"])
    same = None
    if reference_dir is not None:
        reference_ledger = Ledger(reference_dir / "ledger.sqlite", read_only=True)
        reference = Store(reference_dir, reference_ledger, read_only=True)
        same = all(
            np.array_equal(store.read(scale).x, reference.read(scale).x)
            and all(np.array_equal(store.read(scale).y[k], reference.read(scale).y[k])
                    for k in reference.read(scale).y)
            for scale in ("coarse", "fine"))
        reference_ledger.close()
    attempts = ledger.attempts()
    charged = [a for a in attempts if a["outcome"] in ("failed", "quarantined")
               and INFRASTRUCTURE.search(a["reason"] or "")]
    for attempt in charged[:10]:
        problems.append(f"task {attempt['task_id']} attempt {attempt['attempt']} charged to "
                        f"the app: {(attempt['reason'] or '')[:200]}")
    for_infrastructure = [t for t in quarantined if INFRASTRUCTURE.search(t["reason"] or "")]
    for task in for_infrastructure[:10]:
        problems.append(f"task {task['task_id']} quarantined for the infrastructure: "
                        f"{(task['reason'] or '')[:200]}")
    reasons = {(a["task_id"], a["attempt"]): a["reason"] or "" for a in attempts}
    for task in ledger.tasks():  # a done task keeps the reason of its last failed attempt
        reasons.setdefault((task["task_id"], task["attempts"] - 1), task["reason"] or "")
    result = {"mode": ledger.fact("mode"), "stop_reason": stop_reason,
              "committed": committed, "lost": lost, "duplicated": duplicated, "torn": torn,
              "quarantined": len(quarantined),
              "quarantined_for_infrastructure": len(for_infrastructure),
              "infrastructure_charged_to_app": len(charged),
              "attempts_lost": sum(1 for a in attempts if a["outcome"] == "lost"),
              "trained_on_quarantined": trained_on_quarantined,
              "unfinished": len(unfinished),
              "identical_to_uninterrupted": same,
              "retried": sum(1 for t in ledger.tasks() if t["attempts"] > 1),
              "app_retries": sum(1 for a in attempts if a["outcome"] == "failed"),
              "attempts_worker_lost": sum(1 for r in reasons.values() if LOST_WORKER.search(r)),
              "deadline_exceeded": sum(1 for r in reasons.values() if "DeadlineExceeded" in r),
              "problems": problems[:30]}
    result["needed_deadline"] = result["deadline_exceeded"] > 0
    ledger.close()
    return result


# -- the suite --------------------------------------------------------------------------
def run_mode(mode: str, folder: Path, kills: int, site: str, budget: int, seed: int,
             worker_kills: int, driver_timeout: float = 900.0,
             refusals: int = 0) -> dict[str, Any]:
    """One mode: (rounds) an uninterrupted reference, then the faulty run, then the audit."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "fault_campaign.py"
    script.write_text(SCRIPT.format(budget=budget, mode=mode))
    log = folder / "campaign.log"
    started = time.time()
    reference_seconds = None
    if mode == "rounds":
        reference = launch(campaign_command("run", str(script), "--site", site, "--out",
                                            str(folder / "reference"), "--no-report"), log)
        try:
            code = _wait(reference, driver_timeout, log)
        finally:
            kill_session(reference.pid)
        if code != 0:
            raise RuntimeError(f"reference run failed; see {log}")
        reference_seconds = time.time() - started
    rng = random.Random(seed)
    faulty = run_faulty(script, folder / "faulty", site, kill_plan(kills, rng), budget, log,
                        worker_kill_plan(worker_kills, rng) if site == "local" else [],
                        random.Random(seed + 1), driver_timeout, refusals)
    result = {"mode": mode, "site": site, "budget": budget, "seed": seed,
              "planned_kills": kills, "kills": faulty.pop("driver_kills"),
              "planned_refusals": len(refusal_starts(refusals)) if site == "local" else 0,
              "reference_seconds": reference_seconds, **faulty}
    result.update(audit(folder / "faulty", budget,
                        folder / "reference" if mode == "rounds" else None))
    result["wall_seconds"] = time.time() - started
    return result


def run_suite(kills: int, site: str = "threads", budget: int = 24, seed: int = 0,
              workdir: Path | None = None, mode: str = "both",
              worker_kills: int = 0, driver_timeout: float = 900.0,
              refusals: int = 0) -> dict[str, Any]:
    """The suite in ``workdir`` (a temporary folder by default). One mode returns its
    result; ``mode="both"`` returns ``{"async": ..., "rounds": ...}``."""
    modes = MODES if mode == "both" else (mode,)
    if any(m not in MODES for m in modes):
        raise ValueError(f"mode must be one of {MODES} or 'both', got {mode!r}")
    with tempfile.TemporaryDirectory(prefix="faults-") as scratch:
        folder = Path(workdir or scratch)
        results = {m: run_mode(m, folder / m, kills, site, budget, seed, worker_kills,
                               driver_timeout, refusals) for m in modes}
    return results if mode == "both" else results[mode]


def failures(result: dict[str, Any]) -> list[str]:
    """What a mode's result breaks of the suite's promises (empty: it passed)."""
    broken = [key for key in ("lost", "duplicated", "torn", "unfinished",
                              "trained_on_quarantined", "quarantined_for_infrastructure",
                              "infrastructure_charged_to_app", "leftover_processes",
                              "final_exit_code") if result[key] != 0]
    broken += [f"fired at {point}: 0" for point, count in result["points_fired"].items()
               if count == 0]
    if not result["refusals_handled"] == result["refusals"] == result["planned_refusals"]:
        broken.append(f"refusals made {result['refusals']}, handled "
                      f"{result['refusals_handled']}, of {result['planned_refusals']}")
    if result["mode"] == "rounds" and not result["identical_to_uninterrupted"]:
        broken.append("not identical to the uninterrupted run")
    return broken


def passed(result: dict[str, Any]) -> bool:
    """Nothing lost, duplicated, torn or left unfinished, nothing quarantined trained on,
    every fault point fired, every refusal stopped its start, no infrastructure fault
    charged to the app, no process left, the last exit 0, and (rounds) the same store
    as the uninterrupted run."""
    return not failures(result)


def _print(results: dict[str, dict[str, Any]], site: str) -> None:
    rows: list[tuple[str, list[Any]]] = [
        ("kills", [r["kills"] for r in results.values()]),
        ("random_kills", [r["random_kills"] for r in results.values()])]
    rows += [(f"fired at {point}", [r["points_fired"][point] for r in results.values()])
             for point in FAULT_POINTS]
    rows += [(key, [r[key] for r in results.values()]) for key in (
        "worker_kills", "double_worker_kills", "attempts_worker_lost", "attempts_lost",
        "refusals", "refusals_stopped_run", "refusals_handled", "deadline_exceeded",
        "leftover_processes", "committed", "lost", "duplicated", "torn", "unfinished",
        "quarantined", "quarantined_for_infrastructure", "infrastructure_charged_to_app",
        "trained_on_quarantined", "retried", "app_retries", "identical_to_uninterrupted",
        "final_exit_code", "wall_seconds")]
    width = max(len(name) for name, _ in rows)
    print(f"fault suite on site '{site}':")
    print(f"  {'':<{width}}" + "".join(f"  {m:>8}" for m in results))
    for name, values in rows:
        cells = ("n/a" if v is None else f"{v:.0f}" if isinstance(v, float) else str(v)
                 for v in values)
        print(f"  {name:<{width}}" + "".join(f"  {c:>8}" for c in cells))
    for mode, result in results.items():
        if result.get("could_not_progress"):
            print(f"{mode}: the run ended with exit 1: {result['could_not_progress']}")
        print(f"{mode}: PASS" if passed(result) else
              f"{mode}: FAIL ({', '.join(failures(result))}) {result['problems']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK['kills']} driver kills, {QUICK['worker_kills']} worker "
                        f"kills, {QUICK['refusals']} refusal on {QUICK['site']}, budget "
                        f"{QUICK['budget']}")
    parser.add_argument("--mode", choices=(*MODES, "both"), default="both")
    parser.add_argument("--site", choices=("local", "threads"), default=None)
    parser.add_argument("--kills", type=int, default=None)
    parser.add_argument("--worker-kills", type=int, default=None,
                        help="HTEX worker SIGKILLs (site local only)")
    parser.add_argument("--refusals", type=int, default=None,
                        help="refused sim-fine block submissions (site local only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    settings = dict(QUICK if args.quick else FULL)
    for key in ("site", "kills", "worker_kills", "refusals"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    started = time.time()
    result = run_suite(kills=settings["kills"], site=settings["site"],
                       budget=settings["budget"], seed=args.seed, mode=args.mode,
                       worker_kills=settings["worker_kills"],
                       driver_timeout=settings["driver_timeout"],
                       refusals=settings["refusals"])
    results = result if args.mode == "both" else {args.mode: result}
    _print(results, settings["site"])
    print(f"total wall time {time.time() - started:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": settings, "modes": results,
                                         "wall_seconds": time.time() - started},
                                        indent=2) + "\n")
    raise SystemExit(0 if all(passed(r) for r in results.values()) else 1)


if __name__ == "__main__":
    main()
