"""``Scale(timeout=...)`` holds for any app: past it, the attempt's processes are ended.

A wrapper blocked in ``subprocess.run`` is not interrupted by Parsl's walltime; the
timer of ``campaign.timeouts`` ends the program (and what it started), so the attempt
fails at its timeout with a one-line ``AppTimeout`` and no program is left running. On
a process that tasks share (the ``threads`` site), only the attempt's own programs are
ended."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest

from campaign.ingest import SubmittedTask, check_completion
from campaign.task import run_app
from campaign.timeouts import AFTER_PARSL, STOP_GRACE, AppTimeout

# an attempt past its timeout T is over by T + AFTER_PARSL + STOP_GRACE (SIGTERM is
# enough for sleep) plus scheduling on a loaded machine: far below the programs' 30 s
OVER_BY = AFTER_PARSL + STOP_GRACE + 5.0


def unique_sleep() -> str:
    """A ``sleep`` argument no other process on the machine uses (30.xxxxxxxxx s)."""
    return f"30.{uuid.uuid4().int % 10**9:09d}"


def sleeps(seconds: str) -> list[psutil.Process]:
    """Running ``sleep <seconds>`` processes (zombies do not count)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if (process.info["cmdline"] == ["sleep", seconds]
                and process.info["status"] != psutil.STATUS_ZOMBIE):
            found.append(process)
    return found


def wrapper_running_sleep(x, *, seed, sleep):
    """A user's own wrapper: runs a program and waits for it (blocked in C)."""
    subprocess.run(["sleep", sleep], check=True)
    return {"x": np.atleast_2d(x), "e": [1.0]}


def wrapper_running_a_shell(x, *, seed, sleep):
    """A program in its own session that starts two more (a child and a grandchild)."""
    subprocess.run(["sh", "-c", f"sleep {sleep} & sh -c 'sleep {sleep}; true'; wait"],
                   start_new_session=True)
    return {"x": np.atleast_2d(x), "e": [1.0]}


def test_a_wrapper_waiting_for_its_program_fails_at_the_timeout_and_the_program_ends():
    sleep = unique_sleep()
    began = time.monotonic()
    with pytest.raises(AppTimeout) as raised:
        run_app(wrapper_running_sleep, np.zeros(2), 0, {"sleep": sleep}, walltime=1.0)
    assert time.monotonic() - began < 1.0 + OVER_BY
    assert str(raised.value) == "app ran past its timeout of 1 s; its 1 process was ended"
    assert sleeps(sleep) == []


def test_everything_the_program_started_ends_with_it():
    sleep = unique_sleep()
    with pytest.raises(AppTimeout, match="its 4 processes were ended"):
        run_app(wrapper_running_a_shell, np.zeros(2), 0, {"sleep": sleep}, walltime=1.0)
    assert sleeps(sleep) == []


def test_parsls_own_walltime_exception_arrives_first_and_reads_the_same():
    """Under Parsl, its walltime raises into the app's thread as the timer ends the
    program: the attempt still fails with the one-line message."""
    from parsl.app.python import timeout as parsl_walltime

    sleep = unique_sleep()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        attempt = pool.submit(parsl_walltime(run_app, 1.0), wrapper_running_sleep,
                              np.zeros(2), 0, {"sleep": sleep}, walltime=1.0)
        with pytest.raises(AppTimeout, match="timeout of 1 s; its 1 process was ended"):
            attempt.result(timeout=1.0 + OVER_BY)
    assert sleeps(sleep) == []


def test_an_app_that_finishes_in_time_is_untouched():
    result = run_app(wrapper_running_sleep, np.zeros(2), 0, {"sleep": "0.1"}, walltime=20.0)
    assert result["outputs"]["e"] == [1.0]


def test_on_a_shared_process_only_the_attempts_own_programs_are_ended():
    """The threads site: two attempts on threads of one process, and a program the
    process started meanwhile outside any attempt. Only the one past its timeout is
    ended."""
    hung, neighbour, outsider = unique_sleep(), unique_sleep(), unique_sleep()
    ready = threading.Event()

    def neighbour_app(x, *, seed, sleep):
        process = subprocess.Popen(["sleep", sleep])
        ready.set()
        process.wait()
        return {"x": np.atleast_2d(x), "e": [float(process.returncode)]}

    others: list[subprocess.Popen] = []
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            timed = pool.submit(run_app, wrapper_running_sleep, np.zeros(2), 0,
                                {"sleep": hung}, walltime=1.0)
            time.sleep(0.2)  # the neighbour and its program begin during the timed attempt
            running = pool.submit(run_app, neighbour_app, np.zeros(2), 0,
                                  {"sleep": neighbour}, walltime=60.0)
            assert ready.wait(10)
            others.append(subprocess.Popen(["sleep", outsider]))
            with pytest.raises(AppTimeout, match="its 1 process was ended"):
                timed.result(timeout=1.0 + OVER_BY)
            assert sleeps(hung) == []
            assert len(sleeps(neighbour)) == 1 and len(sleeps(outsider)) == 1
            for process in sleeps(neighbour):
                process.kill()
            assert running.result(timeout=10)["outputs"]["e"] == [-9.0]
    finally:
        for process in others:
            process.kill()
            process.wait()


def test_in_a_worker_process_every_new_descendant_is_ended(monkeypatch):
    """An HTEX worker runs one task at a time: programs started any way (here
    ``os.system``, which the ``subprocess`` hook does not see) are ended."""
    monkeypatch.setenv("PARSL_WORKER_RANK", "0")
    sleep = unique_sleep()

    def system_app(x, *, seed):
        os.system(f"sleep {sleep}; true")  # "; true": no shell execs sleep in its place
        return {"x": np.atleast_2d(x), "e": [1.0]}

    began = time.monotonic()
    with pytest.raises(AppTimeout, match="timeout of 1 s; its 2 processes were ended"):
        run_app(system_app, np.zeros(2), 0, {}, walltime=1.0)  # sh and its sleep
    assert time.monotonic() - began < 1.0 + OVER_BY
    assert sleeps(sleep) == []


def test_the_engine_names_the_scale_and_adds_no_frames():
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_exception(AppTimeout("app ran past its timeout of 3 s; its 1 process was "
                                    "ended"))
    task = SubmittedTask(4, "fine", 0, 0, time.time(), np.zeros(2))
    completion = check_completion(future, task)
    assert completion.problem == ("AppTimeout: scale 'fine' app ran past its timeout of "
                                  "3 s; its 1 process was ended")
    assert completion.kind == "app" and not completion.deterministic


# -- a campaign on real HTEX workers -----------------------------------------------------
def hangs_once(x, *, seed, marker, sleep):
    """The fine app of the campaign test: the first call (the one that removes
    ``marker``) runs ``sleep 30.x`` through ``subprocess.run``; every other computes."""
    from apps import toy

    try:
        os.unlink(marker)
    except FileNotFoundError:
        return toy.smeared_energy(x, seed=seed, n_samples=1024)
    subprocess.run(["sleep", sleep], check=True)
    return toy.smeared_energy(x, seed=seed, n_samples=1024)


@pytest.mark.htex
@pytest.mark.slow
def test_a_hung_program_on_local_htex_fails_at_its_timeout(tmp_path, monkeypatch):
    from conftest import TINY_COARSE, tiny_campaign

    from apps import toy
    from campaign import Budget, Scale
    from campaign.ledger import Ledger

    # HTEX workers import the app from this module by name
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(Path(__file__).parent), str(Path(__file__).parents[1])]))
    marker, sleep = tmp_path / "hang-next", unique_sleep()
    marker.write_text("")
    params = {"marker": str(marker), "sleep": sleep}
    spec = tiny_campaign(mode="async", budget=Budget(fine=6), scales=[
        Scale("coarse", app=toy.langevin, params=TINY_COARSE,
              walkers=toy.initial_walkers(2)),
        Scale("fine", app=hangs_once, params=params, timeout=2, retries=0)])
    began = time.monotonic()
    summary = spec.run(site="local", out=tmp_path / "run")
    took = time.monotonic() - began
    assert not marker.exists()  # the hang happened
    assert sleeps(sleep) == []
    ledger = Ledger(tmp_path / "run" / "ledger.sqlite", read_only=True)
    tasks = ledger.tasks("fine")
    quarantined = [t for t in tasks if t["status"] == "quarantined"]
    assert len(quarantined) == 1
    assert quarantined[0]["reason"] == (
        "after 1 attempt: AppTimeout: scale 'fine' app ran past its timeout of 2 s; "
        "its 1 process was ended")
    assert summary.task_counts["fine"].get("done", 0) >= 1  # the other rows succeed
    ledger.close()
    assert took < 30.0, took  # the hung attempt did not hold the campaign for 30 s
