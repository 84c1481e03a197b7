"""campaign.processes: the record of a run's Parsl processes, and ending a dead driver's
orphans (never a process whose pid was reused, never while the driver lives)."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from campaign.processes import (
    RECORD_NAME,
    end_leftovers,
    leftover_processes,
    record_processes,
)

REPO = Path(__file__).resolve().parents[1]
DRIVER_START_SECONDS = 90

# Drivers load campaign/processes.py by path: importing the campaign package would load
# the engine and torch (seconds).
LOAD_PROCESSES = """
import importlib.util
spec = importlib.util.spec_from_file_location("processes", "campaign/processes.py")
processes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(processes)
"""

# A driver that starts `sleep 60` and records it as its "interchange".
FAKE_DRIVER = LOAD_PROCESSES + """
import subprocess, sys, time
from pathlib import Path
from types import SimpleNamespace

sleeper = subprocess.Popen(["sleep", "60"])
dfk = SimpleNamespace(executors={"fake": SimpleNamespace(interchange_proc=sleeper)})
processes.record_processes(Path(sys.argv[1]), dfk)
print("ready", flush=True)
time.sleep(60)
"""

# A real campaign driver: the local site's HTEX executors, one task run, pools recorded.
HTEX_DRIVER = LOAD_PROCESSES + """
import sys, time
from pathlib import Path

import parsl
from parsl import python_app

from site_configs import get_config

record_processes, wait_for_processes = processes.record_processes, processes.wait_for_processes

run_dir = Path(sys.argv[1])
dfk = parsl.load(get_config("local", scales=["a"], run_dir=str(run_dir / "parsl")))
record_processes(run_dir, dfk)

@python_app(executors=["sim-a"])
def one():
    return 1

assert one().result(timeout=60) == 1
assert wait_for_processes(dfk, timeout=30)
record_processes(run_dir, dfk)
print("ready", flush=True)
time.sleep(600)
"""


def start_driver(script: str, args: list[str], tmp_path: Path) -> subprocess.Popen:
    """Run ``script`` as a driver process and wait for its "ready" line."""
    path = tmp_path / "driver.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # PATH (interchange.py) set by conftest
    driver = subprocess.Popen([sys.executable, str(path), *args], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, text=True)
    assert driver.stdout is not None
    readable, _, _ = select.select([driver.stdout], [], [], DRIVER_START_SECONDS)
    line = driver.stdout.readline() if readable else ""
    if line.strip() != "ready":
        driver.kill()
        driver.wait()
        pytest.fail(f"driver not ready in {DRIVER_START_SECONDS} s (exit {driver.poll()}, "
                    f"said {line!r})")
    return driver


def kill_driver(driver: subprocess.Popen) -> None:
    """SIGKILL the driver, as the kernel's OOM killer or a job's end would, and reap it."""
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=10)


def running(pid: int, create_time: float) -> bool:
    """Whether that very process is alive (a zombie is not: it has exited)."""
    try:
        process = psutil.Process(pid)
        return (abs(process.create_time() - create_time) < 1.0
                and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def read_record(run_dir: Path) -> dict:
    return json.loads((run_dir / RECORD_NAME).read_text())


def kill_all(entries: list[dict]) -> None:
    """Clean-up after a test: SIGKILL those of the recorded processes still running."""
    for entry in entries:
        if running(entry["pid"], entry["create_time"]):
            os.kill(entry["pid"], signal.SIGKILL)


@pytest.fixture
def fake_driver(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    """A live fake driver whose `sleep 60` child is recorded in ``tmp_path/run``."""
    run_dir = tmp_path / "run"
    driver = start_driver(FAKE_DRIVER, [str(run_dir)], tmp_path)
    recorded = read_record(run_dir)["processes"]  # tests may change the file
    try:
        yield driver, run_dir
    finally:
        if driver.poll() is None:
            kill_driver(driver)
        kill_all(recorded)


def test_record_names_driver_and_process(fake_driver: tuple[subprocess.Popen, Path]) -> None:
    driver, run_dir = fake_driver
    record = read_record(run_dir)
    assert record["driver"]["pid"] == driver.pid
    assert record["driver"]["create_time"] == pytest.approx(
        psutil.Process(driver.pid).create_time(), abs=0.05)
    [entry] = record["processes"]
    assert entry["role"] == "interchange" and entry["executor"] == "fake"
    assert entry["cmdline"] == "sleep 60"
    assert psutil.Process(entry["pid"]).ppid() == driver.pid


def test_live_driver_has_no_leftovers(fake_driver: tuple[subprocess.Popen, Path]) -> None:
    driver, run_dir = fake_driver
    [entry] = read_record(run_dir)["processes"]
    assert leftover_processes(run_dir) == []
    assert end_leftovers(run_dir) == []
    assert running(entry["pid"], entry["create_time"])


def test_orphan_of_a_killed_driver_is_found_and_ended(
    fake_driver: tuple[subprocess.Popen, Path],
) -> None:
    driver, run_dir = fake_driver
    [entry] = read_record(run_dir)["processes"]
    kill_driver(driver)
    assert running(entry["pid"], entry["create_time"])  # the orphan lives on

    assert [leftover["pid"] for leftover in leftover_processes(run_dir)] == [entry["pid"]]
    assert end_leftovers(run_dir, grace=2.0) == [entry["pid"]]
    assert not running(entry["pid"], entry["create_time"])
    assert leftover_processes(run_dir) == []


def test_unrecorded_children_of_an_orphan_are_ended_with_it(
    fake_driver: tuple[subprocess.Popen, Path],
) -> None:
    """A pool may start workers after the last recording; they outlive their pool."""
    driver, run_dir = fake_driver
    kill_driver(driver)
    pool = subprocess.Popen(["bash", "-c", "sleep 60 & wait"])
    try:
        deadline = time.monotonic() + 10
        while not psutil.Process(pool.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        [worker] = psutil.Process(pool.pid).children()  # born after the record
        record = read_record(run_dir)
        record["processes"] = [{"pid": pool.pid, "role": "worker_pool", "executor": "fake",
                                "create_time": psutil.Process(pool.pid).create_time(),
                                "cmdline": "bash -c sleep 60 & wait"}]
        (run_dir / RECORD_NAME).write_text(json.dumps(record))
        assert end_leftovers(run_dir, grace=2.0) == sorted([pool.pid, worker.pid])
        assert not running(worker.pid, worker.create_time())
    finally:
        if pool.poll() is None:
            pool.kill()
        pool.wait()


def test_process_started_at_another_time_is_never_touched(
    fake_driver: tuple[subprocess.Popen, Path],
) -> None:
    driver, run_dir = fake_driver
    kill_driver(driver)
    record = read_record(run_dir)
    [entry] = record["processes"]
    entry["create_time"] -= 100.0  # as if the pid now belonged to another process
    (run_dir / RECORD_NAME).write_text(json.dumps(record))

    assert leftover_processes(run_dir) == []
    assert end_leftovers(run_dir, grace=0.5) == []
    assert running(entry["pid"], entry["create_time"] + 100.0)


def test_record_of_another_host_is_not_checked(
    fake_driver: tuple[subprocess.Popen, Path], caplog: pytest.LogCaptureFixture,
) -> None:
    driver, run_dir = fake_driver
    kill_driver(driver)
    record = read_record(run_dir)
    record["driver"]["hostname"] = "elsewhere.invalid"
    (run_dir / RECORD_NAME).write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING, logger="campaign.processes"):
        assert end_leftovers(run_dir) == []
    assert "elsewhere.invalid" in caplog.text
    [entry] = record["processes"]
    assert running(entry["pid"], entry["create_time"])


@pytest.mark.parametrize("content", [
    "{not json",
    "[]",
    '{"driver": {"pid": 1}, "processes": []}',
    '{"driver": {"pid": 1, "create_time": 0, "hostname": "h"}, "processes": [{"pid": "x"}]}',
])
def test_damaged_record_gives_nothing_and_a_warning(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / RECORD_NAME).write_text(content)
    with caplog.at_level(logging.WARNING, logger="campaign.processes"):
        assert leftover_processes(tmp_path) == []
        assert end_leftovers(tmp_path) == []
    assert "damaged" in caplog.text


def test_missing_record_gives_nothing(tmp_path: Path) -> None:
    assert leftover_processes(tmp_path) == []
    assert end_leftovers(tmp_path) == []


def test_record_merges_and_replaces_another_drivers(tmp_path: Path) -> None:
    first = subprocess.Popen(["sleep", "60"])
    second = subprocess.Popen(["sleep", "60"])
    try:
        record_processes(tmp_path, SimpleNamespace(executors={
            "a": SimpleNamespace(interchange_proc=first)}))
        merged = record_processes(tmp_path, SimpleNamespace(executors={
            "b": SimpleNamespace(interchange_proc=second, provider=SimpleNamespace(resources={}))}))
        assert [(entry["pid"], entry["executor"]) for entry in merged] == sorted(
            [(first.pid, "a"), (second.pid, "b")])
        assert not list(tmp_path.glob("*.tmp"))

        record = read_record(tmp_path)
        record["driver"]["pid"] = 1  # the record of some earlier driver
        (tmp_path / RECORD_NAME).write_text(json.dumps(record))
        replaced = record_processes(tmp_path, SimpleNamespace(executors={
            "b": SimpleNamespace(interchange_proc=second)}))
        assert [entry["pid"] for entry in replaced] == [second.pid]
        assert read_record(tmp_path)["driver"]["pid"] == os.getpid()
    finally:
        for sleeper in (first, second):
            sleeper.kill()
            sleeper.wait()


@pytest.mark.htex
@pytest.mark.slow
def test_orphaned_htex_processes_are_found_and_ended(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    driver = start_driver(HTEX_DRIVER, [str(run_dir)], tmp_path)
    recorded = read_record(run_dir)["processes"]
    try:
        kill_driver(driver)
        leftovers = leftover_processes(run_dir)
        roles = [entry["role"] for entry in leftovers]
        assert roles.count("interchange") == 2  # sim-a and train
        assert roles.count("worker_pool") == 2
        assert roles.count("worker") >= 3  # 2 + 1 workers, and the pools' helpers
        assert {entry["executor"] for entry in leftovers} == {"sim-a", "train"}

        ended = end_leftovers(run_dir, grace=3.0)
        assert sorted(ended) == sorted(entry["pid"] for entry in leftovers)
        deadline = time.monotonic() + 5.0
        while any(running(entry["pid"], entry["create_time"]) for entry in leftovers):
            assert time.monotonic() < deadline, "recorded processes still running"
            time.sleep(0.1)
        assert leftover_processes(run_dir) == []
    finally:
        if driver.poll() is None:
            kill_driver(driver)
        kill_all(recorded)
