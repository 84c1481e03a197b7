"""HTEX worker kills: find the workers of a driver's simulation pools and SIGKILL them
at random moments while the driver runs (:class:`WorkerKiller`).

Owns: which processes are workers (:func:`sim_workers`: children of
``process_worker_pool.py`` holding a ``worker_<n>.log``, never a pool's manager or
resource tracker, never the ``train`` pool), and how a victim is chosen (a pool with a
worker mid-task if there is one, busy workers first; a double kill within
:data:`~benchmarks.faults.schedule.DOUBLE_KILL_WITHIN` seconds).
"""

from __future__ import annotations

import random
import re
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.faults.drivers import session_processes
from benchmarks.faults.schedule import DOUBLE_KILL_WITHIN, WORKER_KILL_GAP


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

