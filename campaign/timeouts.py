"""Stopping an app attempt that ran past its ``Scale(timeout=...)``, with what it started.

Owns: :func:`call_with_timeout`, which ``campaign.task.run_app`` runs an app through when
its scale has a timeout, and :class:`AppTimeout`, the one-line failure it raises.

Parsl's ``walltime`` raises ``AppTimeout`` in the thread that runs the app, and only
while Python code runs there: a wrapper blocked in ``subprocess.run`` waits for its
program, which Parsl never ends. So at the deadline (plus :data:`AFTER_PARSL` seconds,
so Parsl's exception is raised into the thread first) a timer thread ends the processes
the attempt started and everything they started, with the process groups they lead
(SIGTERM, then SIGKILL after :data:`STOP_GRACE` seconds). The wrapper's wait then
returns, and the attempt fails with :class:`AppTimeout` saying how long it had and how
many processes were ended.

Which processes are the attempt's:

* **In an HTEX worker** (``PARSL_WORKER_RANK`` is set; a worker runs one task at a
  time): every descendant of the worker process that was not there when the attempt
  began (identified by pid and creation time, so a reused pid is not taken for one).
* **Where tasks share a process** (the ``threads`` site runs tasks on threads of the
  driver, beside Parsl's and the engine's own processes): only the programs the attempt's
  own thread started through :mod:`subprocess` (``run``, ``Popen``, ``check_output``;
  ``apps.external`` too), seen by wrapping ``subprocess.Popen.__init__`` once, and their
  descendants. A program started there some other way (``os.system``,
  ``multiprocessing``, a C library, another thread of the app) is not ended.

Limits, everywhere: a process that left the attempt's process tree before the deadline
(a daemon that double-forked) is found only if it stayed in a process group led by one of
the attempt's processes; and an app blocked in C *without* a child process (a long NumPy
call, ``time.sleep``) cannot be interrupted in its thread: it ends when the call returns,
or the engine's own deadline for the attempt (``campaign.retry``) fails it.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psutil

__all__ = ["AFTER_PARSL", "STOP_GRACE", "AppTimeout", "AttemptTimer", "call_with_timeout"]

AFTER_PARSL = 0.1  # seconds after the deadline: Parsl's own AppTimeout is raised first
STOP_GRACE = 1.0  # seconds between SIGTERM and SIGKILL of the attempt's processes
POLL_SECONDS = 0.02
Result = TypeVar("Result")


class AppTimeout(Exception):  # noqa: N818 - Parsl's name, the one users know
    """An attempt ran past its scale's timeout; its processes were ended. The message
    says how long it had and what was ended (Parsl's own ``AppTimeout`` says nothing)."""


class AttemptTimer:
    """Ends the processes of one attempt at ``seconds`` (+ :data:`AFTER_PARSL`) after it
    began. Use as a context manager around the app call, in the thread that calls it."""

    _active = 0  # attempts under a timer in this process
    _count_lock = threading.Lock()

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False  # the timer fired (or end_now ran): the attempt is over
        self.ended = 0  # processes that were ended
        self._lock = threading.Lock()
        self._started_here: list[psutil.Process] = []  # programs this thread started
        self._before: set[psutil.Process] = set()
        self._dedicated = False
        self._timer = threading.Timer(seconds + AFTER_PARSL, self.end_now)
        self._timer.daemon = True

    def __enter__(self) -> AttemptTimer:
        _install_popen_hook()
        with AttemptTimer._count_lock:
            AttemptTimer._active += 1
            self._dedicated = ("PARSL_WORKER_RANK" in os.environ
                               and AttemptTimer._active == 1)
        if self._dedicated:
            self._before = _descendants()
        _tracking.timer = self
        self._timer.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._timer.cancel()
        _tracking.timer = None
        with AttemptTimer._count_lock:
            AttemptTimer._active -= 1

    def started(self, pid: int) -> None:
        """A program this attempt's thread started (from the ``Popen`` hook)."""
        process = _started(pid)
        if process is not None:
            with self._lock:
                self._started_here.append(process)

    def end_now(self) -> int:
        """End the attempt's processes (once); returns how many were ended, once they
        are (a second call waits for the first)."""
        with self._lock:
            if self.expired:
                return self.ended
            self.expired = True
            self.ended = _end(self._processes(), self._leaders())
            return self.ended

    def _processes(self) -> list[psutil.Process]:
        """The attempt's processes still running: see the module's docstring."""
        found: set[psutil.Process] = set()
        if self._dedicated:
            found.update(_descendants() - self._before)
        for process in self._started_here:
            if process.is_running():  # and not another process that took its pid
                found.add(process)
                found.update(_children(process))
        return list(found)

    def _leaders(self) -> set[int]:
        """pids whose process groups belong to the attempt (if they lead one)."""
        return {process.pid for process in self._started_here}


def call_with_timeout(fn: Callable[..., Result], seconds: float, *args: Any,
                      **kwargs: Any) -> Result:
    """``fn(*args, **kwargs)``, ended with its processes past ``seconds``.

    Raises:
        AppTimeout: ``fn`` ran past ``seconds`` (Parsl raised its ``AppTimeout`` into
            this thread, or the timer ended the processes ``fn`` waited for), whatever
            ``fn`` then raised or returned.
    """
    with AttemptTimer(seconds) as timer:
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:
            if not (timer.expired or type(error).__name__ == "AppTimeout"):
                raise
            raise AppTimeout(timeout_message(seconds, timer.end_now())) from None
        if timer.expired:  # the app returned once its program was ended
            raise AppTimeout(timeout_message(seconds, timer.end_now()))
    return result


def timeout_message(seconds: float, ended: int) -> str:
    """``app ran past its timeout of 3 s; its 1 process was ended`` (the engine adds
    the scale's name)."""
    if ended == 0:
        what = "it had no process left to end"
    else:
        what = f"its {ended} process{'es were' if ended > 1 else ' was'} ended"
    return f"app ran past its timeout of {seconds:g} s; {what}"


# -- processes ---------------------------------------------------------------------------
def _started(pid: int) -> psutil.Process | None:
    """The process ``pid``; psutil tells it from a later one that reuses its pid (by
    pid and creation time, counted from boot where it can: clock changes do not move
    it)."""
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None  # gone already


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def _descendants() -> set[psutil.Process]:
    """Every descendant of this process (a psutil process is equal to another of the
    same pid only if it is the same process)."""
    return set(_children(psutil.Process()))


def _end(processes: list[psutil.Process], leaders: set[int]) -> int:
    """SIGTERM ``processes`` and the members of the process groups they lead (or that a
    pid of ``leaders`` led), SIGKILL what is left after :data:`STOP_GRACE`; returns how
    many processes that was. The caller's own process group is never signalled."""
    own_group = os.getpgrp()
    leaders = leaders | {process.pid for process in processes}
    groups = set()
    for process in processes:
        try:
            group = os.getpgid(process.pid)
        except OSError:
            continue
        if group in leaders and group != own_group:
            groups.add(group)
    members = {process for process in processes if _alive(process)}
    for group in groups:
        members.update(_group_members(group))
    if not members:
        return 0
    targets = list(members)
    _signal(targets, groups, signal.SIGTERM)
    alive = _wait_gone(targets, STOP_GRACE)
    if alive:
        _signal(alive, groups, signal.SIGKILL)
        _wait_gone(alive, STOP_GRACE)
    return len(targets)


def _wait_gone(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """Wait up to ``seconds`` for ``processes`` to end; returns those still running.
    Polls rather than waits: waiting would reap a child whose exit status is its
    parent's (``subprocess.run`` in the app's thread) to collect."""
    deadline = time.monotonic() + seconds
    alive = [p for p in processes if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        alive = [p for p in alive if _alive(p)]
    return alive


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group_members(group: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == group and _alive(process):
                members.append(process)
        except (OSError, psutil.Error):
            continue
    return members


def _signal(processes: list[psutil.Process], groups: set[int], signum: int) -> None:
    for group in groups:
        try:
            os.killpg(group, signum)
        except OSError:
            pass  # gone already
    for process in processes:
        try:
            process.send_signal(signum)  # psutil checks the pid is still this process
        except psutil.Error:
            pass


# -- which programs a thread started -----------------------------------------------------
_tracking = threading.local()  # .timer: the AttemptTimer of the attempt on this thread
_hook_lock = threading.Lock()
_hooked = False


def _install_popen_hook() -> None:
    """Wrap ``subprocess.Popen.__init__`` (once per process) to tell the calling
    thread's :class:`AttemptTimer` the pid of each program it starts."""
    global _hooked
    with _hook_lock:
        if _hooked:
            return
        original = subprocess.Popen.__init__

        @functools.wraps(original)
        def init(self: subprocess.Popen, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            timer = getattr(_tracking, "timer", None)
            if timer is not None:
                timer.started(self.pid)

        subprocess.Popen.__init__ = init  # type: ignore[method-assign]
        _hooked = True
