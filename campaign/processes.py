"""The processes a run started for Parsl, recorded in ``<run>/processes.json``, and the
ending of those left alive after their driver died.

Why: Parsl's HTEX interchange has no check that its driver is alive, so after a SIGKILLed
driver it runs on, and its worker pools, which exit only when they lose the interchange
(``heartbeat_threshold``), run on with it, for ever. Nothing in Parsl ends them; this module
does, on the next start in the same run directory.

What is recorded (by :func:`record_processes`, from the driver, after ``parsl.load``):
every executor's interchange (``executor.interchange_proc``), every block a
``LocalProvider`` started (``provider.resources[job]["remote_pid"]``: a shell that the
provider detaches at once, so it is *not* a descendant of the driver) and all their
descendants (launcher shells, ``process_worker_pool.py``, its workers), and any other
descendant of the driver whose command line names Parsl (``parsl: ...`` process titles).
Pools on other hosts (batch jobs) are not recorded: their scheduler ends them.

The file::

    {"driver": {"pid": 123, "create_time": 1796165150.11, "hostname": "login1"},
     "processes": [{"pid": 130, "create_time": 1796165151.2, "role": "interchange",
                    "executor": "sim-a", "cmdline": "parsl: HTEX interchange"}, ...]}

``role`` is ``"interchange"``, ``"worker_pool"`` (``process_worker_pool.py``), ``"worker"``
(a process a worker pool started: its workers and its multiprocessing helpers) or
``"other"`` (the provider's and launcher's shells, other Parsl processes).

A process is "the same process" only if its pid is alive, not a zombie, and its
``create_time`` equals the recorded one (within :data:`SAME_START_SECONDS`), so a pid the
system has since given to another process is never touched.

How the engine uses it::

    end_leftovers(run_dir)                 # before parsl.load: a killed driver's orphans
    dfk = parsl.load(config)
    record_processes(run_dir, dfk)         # interchanges now
    wait_for_processes(dfk, timeout=30)    # local pools start at the first strategy poll
    record_processes(run_dir, dfk)         # pools and their workers
    ...                                    # and again now and then (e.g. once a round),
                                           # to catch blocks or workers Parsl restarted
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)

RECORD_NAME = "processes.json"
ROLES = ("interchange", "worker_pool", "worker", "other")
SAME_START_SECONDS = 1.0
"""Largest difference between a live process's create_time and the recorded one for it to
count as the same process. psutil derives create_time from the boot time, which Linux may
report a second apart over time; a pid reused within a second of the recorded start is
not a practical risk."""
CMDLINE_CHARS = 200
POLL_SECONDS = 0.05
KILL_WAIT_SECONDS = 2.0
SETTLE_SECONDS = 0.5


def record_processes(run_dir: Path, dfk: Any) -> list[dict]:
    """Record the processes this driver started for Parsl in ``<run_dir>/processes.json``.

    Call it from the driver after ``parsl.load(config)`` returned ``dfk``, and again
    whenever more may have started (see :func:`wait_for_processes`): each call merges what
    it finds into the record of this driver (entries whose process has exited are
    dropped). A record left by another driver is replaced, so call :func:`end_leftovers`
    first. The file is written atomically (a temporary file, then ``os.replace``).

    Args:
        run_dir: the campaign's run directory (created if missing).
        dfk: the DataFlowKernel; only its ``executors`` mapping is read.

    Returns:
        The recorded processes (dicts as in the file), sorted by pid.

    Raises:
        OSError: the record cannot be written.
    """
    run_dir = Path(run_dir)
    driver = _driver_identity()
    recorded: dict[int, dict] = {}
    previous = _read_record(run_dir, missing_ok=True)
    if previous is not None:
        if _same_driver(previous["driver"], driver):
            recorded = {
                entry["pid"]: entry
                for entry in previous["processes"]
                if _live_process(entry) is not None
            }
        else:
            logger.info("replacing %s of driver pid %s", run_dir / RECORD_NAME,
                        previous["driver"]["pid"])
    for process, role, executor_label in _discover(dfk):
        entry = _describe(process, role, executor_label)
        if entry is not None:
            recorded[entry["pid"]] = entry
    processes = [recorded[pid] for pid in sorted(recorded)]
    _write_record(run_dir, {"driver": driver, "processes": processes})
    return processes


def wait_for_processes(dfk: Any, timeout: float = 30.0) -> bool:
    """Wait until the worker pools of this machine's blocks have started their workers.

    ``LocalProvider`` blocks start at the DataFlowKernel's first strategy poll, after
    ``parsl.load`` returns, and a pool starts its workers a moment later; call
    :func:`record_processes` again once this returns. Waited for: every executor whose
    provider is a ``LocalProvider`` has at least ``max(init_blocks, min_blocks)`` blocks,
    each with a ``process_worker_pool.py`` that has started ``workers_per_node`` processes,
    and the set of processes has then not changed for :data:`SETTLE_SECONDS`. Executors on
    batch providers are not waited for. Only processes are inspected; nothing is asked of
    Parsl's interchange.

    Args:
        dfk: the DataFlowKernel.
        timeout: seconds to wait at most.

    Returns:
        True if the pools are up; False (and a warning logged) after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    last_pids: set[int] | None = None
    unchanged_since = time.monotonic()
    while True:
        found = _discover(dfk)
        pids = {process.pid for process, _, _ in found}
        now = time.monotonic()
        if pids != last_pids:
            last_pids = pids
            unchanged_since = now
        if _local_pools_started(dfk, found) and now - unchanged_since >= SETTLE_SECONDS:
            return True
        if now >= deadline:
            logger.warning("worker pools not all started after %.0f s; recording what runs",
                           timeout)
            return False
        time.sleep(min(0.1, max(deadline - now, 0.0)))


def leftover_processes(run_dir: Path) -> list[dict]:
    """The recorded processes still alive although their driver is not: orphans.

    Returns [] when the recorded driver is alive (same pid and create_time): a running
    campaign's processes are not leftovers. Returns [] (with a log line) when the record
    is missing, damaged or was written on another host: only this host's processes can be
    checked.

    Args:
        run_dir: the campaign's run directory.

    Returns:
        The entries of ``processes.json`` whose process is alive with the same pid and
        create_time, sorted by pid.
    """
    record = _read_record(Path(run_dir), missing_ok=False)
    if record is None:
        return []
    driver = record["driver"]
    here = socket.gethostname()
    if driver["hostname"] != here:
        logger.warning("%s was written on host %s, this is %s: not checked",
                       Path(run_dir) / RECORD_NAME, driver["hostname"], here)
        return []
    if _live_process(driver) is not None:
        return []
    return [entry for entry in record["processes"] if _live_process(entry) is not None]


def end_leftovers(run_dir: Path, grace: float = 3.0) -> list[int]:
    """End the processes :func:`leftover_processes` finds: SIGTERM, then SIGKILL.

    Each is signalled only after its pid and create_time are checked again, together
    with its descendants alive now: a pool may have started workers after the last
    :func:`record_processes` (a block Parsl submitted again, a worker it restarted), and
    those do not exit when their pool dies (seen in ``benchmarks.faults``: a spawned
    worker and its ``resource_tracker`` lived on). All get SIGTERM together; those
    still alive after ``grace`` seconds get SIGKILL. No other unrecorded process is
    touched.

    Args:
        run_dir: the campaign's run directory.
        grace: seconds between SIGTERM and SIGKILL.

    Returns:
        The pids ended (gone or a zombie now), sorted. A process that could not be
        signalled (no permission) or did not die is logged, not returned.
    """
    targets: dict[int, psutil.Process] = {}
    for entry in leftover_processes(run_dir):
        process = _live_process(entry)
        if process is not None:
            targets[process.pid] = process
    for process in list(targets.values()):  # descendants of a checked process: its own
        try:
            targets.update((child.pid, child) for child in process.children(recursive=True))
        except psutil.Error:
            continue
    targets = list(targets.values())
    if not targets:
        return []
    logger.warning("ending %d processes left by a dead campaign driver: %s", len(targets),
                   ", ".join(str(process.pid) for process in targets))
    signalled = _signal_all(targets, signal.SIGTERM)
    remaining = _wait_until_gone(signalled, grace)
    if remaining:
        _signal_all(remaining, signal.SIGKILL)
        remaining = _wait_until_gone(remaining, KILL_WAIT_SECONDS)
    for process in remaining:
        logger.warning("process %d did not end after SIGKILL", process.pid)
    return sorted(process.pid for process in signalled if process not in remaining)


def _driver_identity() -> dict:
    me = psutil.Process()
    return {"pid": me.pid, "create_time": me.create_time(), "hostname": socket.gethostname()}


def _same_driver(recorded: dict, driver: dict) -> bool:
    return (recorded["pid"] == driver["pid"] and recorded["hostname"] == driver["hostname"]
            and abs(recorded["create_time"] - driver["create_time"]) <= SAME_START_SECONDS)


def _live_process(entry: dict) -> psutil.Process | None:
    """The process ``entry`` records, if it is alive, not a zombie, and started when the
    entry says; else None."""
    try:
        process = psutil.Process(entry["pid"])
        if abs(process.create_time() - entry["create_time"]) > SAME_START_SECONDS:
            return None
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return process


def _discover(dfk: Any) -> list[tuple[psutil.Process, str, str]]:
    """(process, role, executor label) of every live Parsl process of this driver."""
    roots: list[tuple[int, str, str]] = []
    for label, executor in dict(getattr(dfk, "executors", {})).items():
        interchange = getattr(executor, "interchange_proc", None)
        if interchange is not None and interchange.pid is not None:
            roots.append((interchange.pid, "interchange", label))
        for job in _provider_jobs(executor):
            remote_pid = job.get("remote_pid")
            if isinstance(remote_pid, int):
                roots.append((remote_pid, "other", label))
    try:
        for child in psutil.Process().children(recursive=True):
            if "parsl" in _cmdline(child).lower():
                roots.append((child.pid, "other", ""))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass

    found: dict[int, tuple[psutil.Process, str, str]] = {}
    for pid, role, label in roots:
        try:
            root = psutil.Process(pid)
            _add_tree(root, role, label, found)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return list(found.values())


def _provider_jobs(executor: Any) -> list[dict]:
    """The job dicts of a provider that keeps them in ``resources`` (LocalProvider does)."""
    resources = getattr(getattr(executor, "provider", None), "resources", None)
    if not isinstance(resources, dict):
        return []
    return [job for job in resources.copy().values() if isinstance(job, dict)]


def _add_tree(
    root: psutil.Process, role: str, label: str, found: dict[int, tuple[psutil.Process, str, str]]
) -> None:
    """Add ``root`` and its descendants to ``found``, with their roles. A role already
    given (``interchange``) is kept; a descendant of a worker pool is a worker."""
    stack = [(root, role, False)]
    while stack:
        process, given_role, under_pool = stack.pop()
        if process.pid == os.getpid():
            continue
        if "process_worker_pool" in _cmdline(process):
            process_role = "worker_pool"
        elif under_pool:
            process_role = "worker"
        else:
            process_role = given_role
        known = found.get(process.pid)
        if known is None or known[1] == "other":
            found[process.pid] = (process, process_role, label or (known[2] if known else ""))
        try:
            children = process.children()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for child in children:
            stack.append((child, "other", under_pool or process_role == "worker_pool"))


def _local_pools_started(dfk: Any, found: list[tuple[psutil.Process, str, str]]) -> bool:
    """Whether every LocalProvider executor has its blocks, each with a pool whose
    workers have started."""
    from parsl.providers import LocalProvider

    pools_by_label: dict[str, list[psutil.Process]] = {}
    for process, role, label in found:
        if role == "worker_pool":
            pools_by_label.setdefault(label, []).append(process)
    for label, executor in dict(getattr(dfk, "executors", {})).items():
        provider = getattr(executor, "provider", None)
        if not isinstance(provider, LocalProvider):
            continue
        wanted_blocks = min(max(provider.init_blocks, provider.min_blocks), provider.max_blocks)
        pools = pools_by_label.get(label, [])
        if len(pools) < wanted_blocks:
            return False
        workers_wanted = getattr(executor, "workers_per_node", 1)
        if not isinstance(workers_wanted, int):
            workers_wanted = 1
        for pool in pools:
            try:
                started = [child for child in pool.children()
                           if "resource_tracker" not in _cmdline(child)]
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                return False
            if len(started) < workers_wanted:
                return False
    return True


def _describe(process: psutil.Process, role: str, label: str) -> dict | None:
    try:
        with process.oneshot():
            return {
                "pid": process.pid,
                "create_time": process.create_time(),
                "role": role,
                "executor": label,
                "cmdline": _cmdline(process) or process.name(),
            }
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _cmdline(process: psutil.Process) -> str:
    try:
        text = " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""
    return text if len(text) <= CMDLINE_CHARS else text[: CMDLINE_CHARS - 3] + "..."


def _signal_all(processes: list[psutil.Process], number: signal.Signals) -> list[psutil.Process]:
    """Send ``number`` to each; the ones it reached (psutil refuses a reused pid)."""
    reached = []
    for process in processes:
        try:
            process.send_signal(number)
            reached.append(process)
        except psutil.NoSuchProcess:
            reached.append(process)  # ended in the meantime: counts as ended
        except psutil.AccessDenied:
            logger.warning("no permission to signal process %d (%s)", process.pid,
                           _cmdline(process))
    return reached


def _wait_until_gone(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """Wait up to ``seconds`` for the processes to exit; those still alive. A zombie counts
    as gone (an init that does not reap orphans leaves them so)."""
    deadline = time.monotonic() + seconds
    remaining = list(processes)
    while True:
        remaining = [process for process in remaining if _still_running(process)]
        if not remaining or time.monotonic() >= deadline:
            return remaining
        time.sleep(POLL_SECONDS)


def _still_running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _read_record(run_dir: Path, *, missing_ok: bool) -> dict | None:
    """The record, checked; None (logged) if missing or damaged."""
    path = run_dir / RECORD_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        if not missing_ok:
            logger.info("no %s: no processes recorded, none to end", path)
        return None
    except OSError as error:
        logger.warning("cannot read %s (%s): ignored", path, error.strerror or error)
        return None
    try:
        record = json.loads(text)
        _check_record(record)
    except (json.JSONDecodeError, TypeError, KeyError, ValueError) as error:
        logger.warning("damaged %s (%s): ignored", path, error)
        return None
    return record


def _check_record(record: Any) -> None:
    """Raise ValueError/KeyError/TypeError unless ``record`` has the documented shape."""
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    driver = record["driver"]
    if not (_is_pid(driver["pid"]) and _is_number(driver["create_time"])
            and isinstance(driver["hostname"], str)):
        raise ValueError("bad 'driver'")
    processes = record["processes"]
    if not isinstance(processes, list):
        raise ValueError("'processes' is not a list")
    for entry in processes:
        if not (isinstance(entry, dict) and _is_pid(entry.get("pid"))
                and _is_number(entry.get("create_time"))):
            raise ValueError(f"bad process entry {entry!r}")


def _is_pid(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _write_record(run_dir: Path, record: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RECORD_NAME
    handle, temporary = tempfile.mkstemp(dir=run_dir, prefix=f".{RECORD_NAME}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(record, file, indent=1)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
