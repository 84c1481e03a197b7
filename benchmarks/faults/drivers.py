"""Driver starts of the fault suite: the campaign script it runs, starting a driver
(with a fault point, or a refused submission), finding and killing a driver's process
session, and reading how far a run got while its driver writes.

Owns: :data:`SCRIPT` (a campaign whose fine scale fails on purpose),
:data:`REFUSE_ONCE` (the ``sitecustomize`` that makes the local provider refuse the
``sim-fine`` block's submission once), :func:`launch`, :func:`kill_session`,
:func:`wait_for` and :func:`kill_at_random_moment`.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from campaign.ledger import Ledger

CHECKOUT = Path(__file__).resolve().parents[2]  # holds campaign/, apps/, benchmarks/
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
    once (:data:`REFUSE_ONCE`, put in the folder that holds the marker). The driver,
    and the worker pools it starts, import this checkout's packages (:data:`CHECKOUT`
    first on ``PYTHONPATH``), not whichever copy is installed: the suite tests the code
    it ships with."""
    env = dict(os.environ, COLUMNS="200")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(CHECKOUT), *filter(None, [env.get("PYTHONPATH")])])
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


def has_campaign(out: Path) -> bool:
    if not (out / "ledger.sqlite").exists():
        return False
    ledger = Ledger(out / "ledger.sqlite", read_only=True)
    try:
        return ledger.fact("name") is not None
    finally:
        ledger.close()


def finished_tasks(out: Path, scale: str) -> int | None:
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



def wait_for(process: subprocess.Popen, timeout: float, log: Path) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        raise RuntimeError(f"a driver start took more than {timeout:.0f} s (hung?); see "
                           f"{log}") from None


def kill_at_random_moment(process: subprocess.Popen, out: Path, step: dict[str, Any],
                           budget: int, timeout: float) -> dict[str, Any]:
    """Kill the driver's session once ``step['share']`` of the fine tasks left has
    finished in this start (plus ``step['jitter_s']``); or let it finish first."""
    before = finished_tasks(out, "fine") or 0
    target = before + max(1, round(step["share"] * max(1, budget - before)))
    started = time.monotonic()
    while process.poll() is None:
        finished = finished_tasks(out, "fine")
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

