"""`campaign status` tells a running run from a stopped, failed, killed or crashed one
(the lock's live holder, then the ledger's facts), `--json` counts what the ledger counts,
`--watch` follows a live run to its end, and `campaign run` writes plain log lines (no
wrapping, timestamps) when its output is not a terminal."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_campaign
from typer.testing import CliRunner

from campaign import Budget
from campaign.cli import app
from campaign.cli.runs import wall_time
from campaign.ledger import Ledger
from campaign.lock import RunLock, holder_alive, read_holder
from campaign.store import Store

CAMPAIGN_BIN = str(Path(sys.executable).parent / "campaign")
runner = CliRunner()

SLOW_SCRIPT = '''
"""A campaign slow enough to be watched: each fine task sleeps."""
import time

from apps import toy
from campaign import Budget, Campaign, Promotion, Scale


def slow_fine(x, *, seed):
    time.sleep({sleep})
    return toy.smeared_energy(x, seed=seed, n_samples=4096)


campaign = Campaign(
    name="watched",
    scales=[Scale("coarse", app=toy.langevin, params={{"n_steps": 2000, "stride": 100}},
                  walkers=toy.initial_walkers(2)),
            Scale("fine", app=slow_fine)],
    promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
                          learner="exact_gp", acquisition="max_variance", batch_size=2,
                          quantity="energy")],
    budget=Budget(fine={budget}),
)
'''


def status(*args: str):
    return runner.invoke(app, ["status", *map(str, args)], env={"COLUMNS": "300"})


def status_json(run_dir: Path) -> dict:
    result = status(run_dir, "--json")
    assert result.exit_code == 0, result.stdout
    return json.loads(result.stdout)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_lock(run_dir: Path, **record) -> None:
    record = {"host": socket.gethostname(), "started": "2026-01-01 00:00:00", **record}
    (run_dir / "campaign.lock").write_text(json.dumps(record))


def clear_stop(run_dir: Path, **facts) -> None:
    ledger = Ledger(run_dir / "ledger.sqlite")
    ledger.set_facts({"stop_reason": None, "interrupted": None, "failed": None, **facts})
    ledger.close()


def driver_env() -> dict:
    return dict(os.environ, COLUMNS="80",
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("status") / "run"
    tiny_campaign(mode="async", budget=Budget(fine=8)).run(site="threads", out=out)
    return out


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(finished, target)
    return target


# -- the lock record ----------------------------------------------------------------------
def test_lock_records_the_holder_and_empties_on_release(tmp_path):
    with RunLock(tmp_path):
        holder = read_holder(tmp_path)
        assert holder["pid"] == os.getpid() and holder_alive(holder) is True
        assert abs(holder["started_at"] - time.time()) < 60
        assert holder["create_time"] is not None
    assert read_holder(tmp_path) is None
    assert (tmp_path / "campaign.lock").read_text() == ""


def test_a_live_pid_with_another_start_time_is_not_the_holder(tmp_path):
    write_lock(tmp_path, pid=os.getpid(), create_time=12345.0)  # a reused pid
    assert holder_alive(read_holder(tmp_path)) is False
    write_lock(tmp_path, pid=os.getpid())  # an older record: no create_time, pid only
    assert holder_alive(read_holder(tmp_path)) is True
    write_lock(tmp_path, pid=dead_pid())
    assert holder_alive(read_holder(tmp_path)) is False
    write_lock(tmp_path, pid=os.getpid(), host="another-host.invalid")
    assert holder_alive(read_holder(tmp_path)) is None


# -- states, from a finished run and edited copies of it -----------------------------------
def test_finished_run_is_stopped_and_json_counts_are_the_ledgers(finished):
    text = status(finished)
    assert text.exit_code == 0, text.stdout
    assert "state: stopped: task budget spent (fine=8)" in text.stdout
    record = status_json(finished)
    ledger = Ledger(finished / "ledger.sqlite", read_only=True)
    try:
        store = Store(finished, ledger, read_only=True)
        assert record["counts"] == ledger.task_counts()
        assert record["counts"]["fine"] == {"done": 8}
        assert record["rows"] == {scale: store.rows(scale) for scale in ("coarse", "fine")}
        assert record["elapsed"] == pytest.approx(ledger.fact("wall_seconds"))
    finally:
        ledger.close()
    assert record["state"] == "stopped" and record["resumable"] is True
    assert record["name"] == "tiny" and record["mode"] == "async" and record["steps"] >= 1
    assert record["models"]["coarse-to-fine"]["n_train"] == 8
    assert record["models"]["coarse-to-fine"]["reference_rmse"] > 0


def test_dead_driver_without_a_stop_is_killed(copy):
    clear_stop(copy)
    write_lock(copy, pid=dead_pid(), create_time=time.time() - 10)
    record = status_json(copy)
    assert record["state"] == "killed" and record["resumable"]
    assert f"campaign resume {copy}" in record["reason"]
    text = status(copy)
    assert "state: killed: driver pid" in text.stdout


def test_killed_run_elapsed_runs_to_its_last_recorded_event(copy):
    """A killed driver records no wall time: status counts from the session's start to
    the last event it recorded, not 0.0 s."""
    clear_stop(copy, wall_seconds=0.0)  # as a driver killed in its first session left it
    write_lock(copy, pid=dead_pid(), create_time=time.time() - 10)
    ledger = Ledger(copy / "ledger.sqlite", read_only=True)
    session = ledger.fact("sessions")[-1]
    last = max([a[k] for a in ledger.attempts() for k in ("submitted", "started", "ended")
                if a[k] is not None]
               + [r["fit_ended"] for r in ledger.rounds() if r.get("fit_ended")])
    ledger.close()
    record = status_json(copy)
    assert record["elapsed"] == pytest.approx(last - session) and record["elapsed"] > 0
    text = status(copy).stdout
    assert f"elapsed {last - session:.1f} s (until the last event the driver recorded)" in text


def test_status_text_prints_no_none_and_no_minus_one(copy):
    clear_stop(copy)
    ledger = Ledger(copy / "ledger.sqlite")
    task = ledger.tasks("coarse")[0]  # a walker task: parent row -1 in the ledger
    ledger._db.execute("UPDATE tasks SET status = 'quarantined', reason = NULL "
                       "WHERE task_id = ?", (task["task_id"],))
    ledger._db.commit()
    ledger.close()
    text = status(copy).stdout
    # -1 as a number; the run's own path may hold "-1" inside a word (pytest-123)
    assert "None" not in text and not re.search(r"(?<![\w/.-])-1(?![\w.])", text), text
    assert "a walker segment" in text and "no reason recorded" in text
    assert re.search(r"models fitted: [1-9]", text), text
    assert "submitted (total)" in text and "unfinished" in text


def test_status_counts_attempt_outcomes_apart(copy):
    ledger = Ledger(copy / "ledger.sqlite")
    task = ledger.tasks("fine")[0]["task_id"]
    ledger._db.execute("UPDATE attempts SET outcome = 'lost' WHERE task_id = ?", (task,))
    ledger._db.commit()
    expected = {}
    for attempt in ledger.attempts():
        scale = expected.setdefault(attempt["scale"], {})
        scale[attempt["outcome"]] = scale.get(attempt["outcome"], 0) + 1
    ledger.close()
    record = status_json(copy)
    assert record["attempt_outcomes"] == expected and expected["fine"]["lost"] >= 1
    assert f"fine {expected['fine']['lost']} lost" in status(copy).stdout


def test_status_of_a_run_with_no_model_says_zero_models(copy):
    ledger = Ledger(copy / "ledger.sqlite")
    ledger._db.execute("DELETE FROM rounds")  # as an async run before its first fit
    ledger._db.commit()
    ledger.close()
    record = status_json(copy)
    assert record["steps"] == 0 and record["models"] == {}
    assert "models fitted: 0" in status(copy).stdout


def test_released_lock_without_a_stop_is_crashed(copy):
    clear_stop(copy)
    assert (copy / "campaign.lock").read_text() == ""  # released by the finished driver
    record = status_json(copy)
    assert record["state"] == "crashed" and "without recording a stop" in record["reason"]


def test_no_lock_and_no_stop_is_killed_or_crashed(copy):
    clear_stop(copy)
    (copy / "campaign.lock").unlink()
    record = status_json(copy)
    assert record["state"] == "unknown" and "killed or crashed" in record["reason"]


def test_interrupted_is_stopped_and_resumable(copy):
    clear_stop(copy, interrupted="interrupted by SIGTERM")
    record = status_json(copy)
    assert record["state"] == "stopped" and record["resumable"]
    assert record["reason"].startswith("interrupted by SIGTERM; ")
    assert f"campaign resume {copy}" in record["reason"]


def test_a_run_that_could_not_progress_is_failed(copy):
    clear_stop(copy, stop_reason="every walker of 'coarse' was quarantined",
               failed="every walker of 'coarse' was quarantined")
    record = status_json(copy)
    assert record["state"] == "failed" and "could not progress" in record["reason"]


def test_live_lock_holder_is_running_whatever_the_facts_say(copy):
    """A resumed driver holds the lock before it clears the old stop facts."""
    with RunLock(copy):
        record = status_json(copy)
        assert record["state"] == "running" and str(os.getpid()) in record["reason"]
        assert record["elapsed"] >= status_json(copy)["elapsed"] - 1.0
    assert status_json(copy)["state"] == "stopped"


def test_a_running_driver_s_tasks_no_worker_started_are_waiting(copy):
    """Unfinished tasks of a running driver without a start marker are waiting to start
    (queued, or their block not started); one with a marker runs."""
    db = sqlite3.connect(copy / "ledger.sqlite")
    with db:
        ids = [row[0] for row in db.execute(
            "SELECT task_id FROM tasks WHERE scale = 'fine' ORDER BY task_id LIMIT 3")]
        db.execute(f"UPDATE tasks SET status = 'submitted' WHERE task_id IN "
                   f"({', '.join(map(str, ids))})")
    db.close()
    (copy / "started").mkdir(exist_ok=True)
    (copy / "started" / f"{ids[0]}-1").write_text(f"{time.time()} host 1\n")
    assert status_json(copy)["waiting"] == {}  # no driver runs: unfinished, not waiting
    with RunLock(copy):
        assert status_json(copy)["waiting"] == {"fine": 2}
        text = status(copy).stdout
    assert "waiting to start" in text and "fine 2 tasks" in text, text


def test_driver_on_another_host_is_unknown(copy):
    write_lock(copy, pid=1, host="another-host.invalid")
    record = status_json(copy)
    assert record["state"] == "unknown" and "another-host.invalid" in record["reason"]


def test_watch_of_a_run_that_is_not_running_prints_once(finished):
    result = status(finished, "--watch", "--interval", "0.1", "--json")
    assert result.exit_code == 0
    assert len(result.stdout.strip().splitlines()) == 1
    assert status(finished, "--watch", "--interval", "0").exit_code == 2


def test_resumed_run_summary_tells_total_from_this_session():
    class Fresh:
        earlier_wall = 0.0

    class Resumed:
        earlier_wall = 30.0

    assert wall_time(12.0, Fresh(), 15.1) == "12.0 s campaign, 15.1 s with start-up"
    assert wall_time(45.3, Resumed(), 24.4) == (
        "45.3 s campaign in total; this session 15.3 s, 24.4 s with start-up")


# -- a live driver, watched to its end; its log, piped -------------------------------------
@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """`campaign run` of a slow campaign in a subprocess, stdout to a pipe; `status`
    polled until it says running, then `status --watch --json` until the run ends."""
    folder = tmp_path_factory.mktemp("watched")
    script = folder / "watched.py"
    script.write_text(SLOW_SCRIPT.format(sleep=1.0, budget=4))
    out = folder / "run"
    driver = subprocess.Popen([CAMPAIGN_BIN, "run", str(script), "--site", "threads", "--out",
                               str(out), "--no-report"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=driver_env())
    try:
        first = None
        deadline = time.time() + 240
        while time.time() < deadline and driver.poll() is None:
            if (out / "ledger.sqlite").is_file() and read_holder(out):
                first = status_json(out)
                if first["state"] == "running":
                    break
            time.sleep(0.2)
        watch = status(out, "--watch", "--interval", "0.5", "--json")
        output, _ = driver.communicate(timeout=240)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, output
    return {"first": first, "watch": watch, "output": output, "out": out}


@pytest.mark.slow
def test_live_run_is_running_then_stopped(watched):
    assert watched["first"] is not None and watched["first"]["state"] == "running"
    assert watched["watch"].exit_code == 0, watched["watch"].stdout
    records = [json.loads(line) for line in watched["watch"].stdout.splitlines()]
    assert len(records) >= 2, "the run ended before --watch saw it running"
    assert records[0]["state"] == "running" and records[-1]["state"] == "stopped"
    assert all(r["state"] == "running" for r in records[:-1])
    assert records[-1]["reason"] == "task budget spent (fine=4)"
    assert records[-1]["counts"]["fine"] == {"done": 4}
    assert status_json(watched["out"])["state"] == "stopped"


@pytest.mark.slow
def test_piped_run_logs_plain_unwrapped_timestamped_lines(watched):
    lines = [line for line in watched["output"].splitlines() if line.strip()]
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(,\d+)? (INFO|WARNING|ERROR) [\w.]+: "
    logged = [line for line in lines if re.match(stamp, line)]
    assert len(logged) >= 3, watched["output"]
    assert not [line for line in lines if line[:1].isspace()], watched["output"]
    stopped = [line for line in logged if "campaign watched stopped: " in line]
    assert len(stopped) == 1 and stopped[0].endswith("task budget spent (fine=4)")
    assert any(len(line) > 80 for line in logged)  # long lines stay whole, not wrapped
    progress = [line for line in logged if " | " in line]
    assert progress and not re.search(r"\d\.\d{5,}", " ".join(progress))  # rounded floats
    assert not [line for line in lines if "│" in line or "╭" in line]  # no Rich boxes


@pytest.mark.slow
def test_sigkilled_driver_is_killed(tmp_path):
    script = tmp_path / "watched.py"
    script.write_text(SLOW_SCRIPT.format(sleep=2.0, budget=4))
    out = tmp_path / "run"
    driver = subprocess.Popen([CAMPAIGN_BIN, "run", str(script), "--site", "threads", "--out",
                               str(out), "--no-report"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=driver_env())
    try:
        deadline = time.time() + 240
        while time.time() < deadline and driver.poll() is None:
            if (out / "ledger.sqlite").is_file() and read_holder(out):
                ledger = Ledger(out / "ledger.sqlite", read_only=True)
                running = ledger.tasks("fine", status="submitted")
                ledger.close()
                if running:
                    break
            time.sleep(0.2)
        assert status_json(out)["state"] == "running"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    record = status_json(out)
    assert record["state"] == "killed", record
    assert record["counts"]["fine"].get("submitted", 0) >= 1
    assert record["elapsed"] > 0  # from the ledger's recorded times, not the 0.0 s recorded
