"""The run's lifecycle around the steering loop: the run directory and Parsl.

Owns: deciding what to do with a run directory without writing anything
(:func:`inspect_run_dir`), clearing a previous run, the facts recorded at start, and the
Parsl session (:class:`ParslSession`: load a site config, wrap the task functions as
apps on each scale's executor submitted with the scale's resource specification (see
:mod:`campaign.placement`), know how many workers each executor has, shut down in
bounded time). The lock is :mod:`campaign.lock`; what happens in between is the engine's.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

from campaign.ledger import Ledger
from campaign.placement import default_priority, task_resource_specification
from campaign.spec import CampaignSpec, Scale
from campaign.store import Store

logger = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 15.0


class RunDirError(RuntimeError):
    """The output directory cannot hold this campaign (it holds another one)."""


def versions() -> dict[str, str]:
    """Versions of the interpreter and the libraries a run depends on."""
    found = {"python": platform.python_version()}
    for module in ("numpy", "zarr", "parsl", "torch", "gpytorch", "pydantic"):
        try:
            found[module] = __import__(module).__version__
        except ImportError:  # optional at read time, e.g. `campaign status` elsewhere
            continue
    return found


def _structure(description: dict[str, Any]) -> dict[str, Any]:
    """The parts of a spec description that a resumed run must share (not the budget)."""
    return {key: value for key, value in description.items() if key != "budget"}


def inspect_run_dir(run_dir: Path, spec: CampaignSpec, *, overwrite: bool,
                    resume: bool) -> str:
    """Decide what to do with ``run_dir`` without writing anything.

    Returns ``"new"``, ``"resume"`` or ``"overwrite"``; raises :class:`RunDirError`,
    ``LedgerError`` or ``StoreError`` with one line naming the problem.
    """
    ledger_path = run_dir / "ledger.sqlite"
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is a file, not a directory; choose a new --out")
    # the lock's mkdir would fail with a traceback: say which ancestor is in the way
    for folder in run_dir.absolute().parents:
        if folder.exists():
            if not folder.is_dir():
                raise RunDirError(f"cannot create {run_dir}: {folder} is a file, not a "
                                  "directory; choose a new --out")
            if not run_dir.exists() and not os.access(folder, os.W_OK | os.X_OK):
                raise RunDirError(f"cannot create {run_dir}: {folder} is not writable; "
                                  "choose a new --out")
            break
    if not ledger_path.exists():
        if run_dir.exists() and any(p.name not in ("campaign.lock", "processes.json")
                                    for p in run_dir.iterdir()):
            raise RunDirError(f"{run_dir} exists and is not a campaign run directory; "
                              "choose a new --out")
        if resume:
            raise RunDirError(f"{run_dir} holds no campaign to resume")
        return "new"
    ledger = Ledger(ledger_path, read_only=True)
    try:
        ledger.check_integrity()
        holder = ledger.fact("name")
        if holder is None and not ledger.task_counts():  # a driver killed while starting
            if resume:
                raise RunDirError(f"{run_dir} holds no campaign to resume (its driver was "
                                  "stopped while starting); run it again")
            return "overwrite"
        if holder != spec.name:
            raise RunDirError(f"{run_dir} holds campaign '{holder}', not '{spec.name}'; "
                              "choose a new --out")
        if resume:
            recorded = _structure(ledger.fact("spec", {}))
            wanted = _structure(spec.describe())
            if recorded != wanted:
                changed = sorted(k for k in wanted if recorded.get(k) != wanted[k])
                raise RunDirError(f"{run_dir} was run with a different spec (changed: "
                                  f"{', '.join(changed)}); only the budget may change on "
                                  "resume")
            if (run_dir / "store.zarr").exists():
                Store(run_dir, ledger, read_only=True).verify()
            return "resume"
        if overwrite:
            return "overwrite"
        tasks = sum(sum(c.values()) for c in ledger.task_counts().values())
        raise RunDirError(f"{run_dir} already holds a run of '{spec.name}' ({tasks} tasks); "
                          f"`campaign resume {run_dir}` continues it, --overwrite replaces it")
    finally:
        ledger.close()


def clear_run(run_dir: Path) -> None:
    """Delete what a previous run of a campaign wrote (and nothing else)."""
    baselines = [path.name for path in run_dir.glob("baseline-random*") if path.is_dir()]
    for entry in ("store.zarr", "parsl", *baselines):
        shutil.rmtree(run_dir / entry, ignore_errors=True)
    reports = [path.name for path in run_dir.glob("report-*.png")]
    for entry in ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm", "report.png",
                  "report.html", "summary.json", "processes.json", *reports):
        (run_dir / entry).unlink(missing_ok=True)


def put_interpreter_on_path() -> None:
    """Parsl starts ``interchange.py`` and workers through PATH: make it this venv's."""
    bin_dir = os.path.dirname(sys.executable)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def executor_workers(executor: Any, task_cores: int = 1) -> int:
    """How many tasks ``executor`` runs at once, read from its Parsl configuration.

    HighThroughputExecutor: workers per node x nodes per block x max blocks; in MPI mode
    tasks per block x max blocks (on one machine's core slots: slots // ``task_cores``, the
    cores x ranks of one task); thread pools: their thread count; anything else: 1."""
    threads = getattr(executor, "max_threads", None)
    if isinstance(threads, int):
        return max(1, threads)
    per_node = getattr(executor, "workers_per_node", None)
    provider = getattr(executor, "provider", None)
    if getattr(executor, "enable_mpi_mode", False) and provider is not None:
        per_block = int(getattr(executor, "max_workers_per_block", 1) or 1)
        if type(provider).__name__ == "LocalProvider":
            per_block = max(1, per_block // max(1, task_cores))
        return max(1, per_block * max(1, getattr(provider, "max_blocks", 1) or 1))
    if per_node is not None and provider is not None:
        if not math.isfinite(per_node):
            per_node = 1
        nodes = getattr(provider, "nodes_per_block", 1) or 1
        blocks = max(1, getattr(provider, "max_blocks", 1) or 1)
        return max(1, int(per_node) * int(nodes) * int(blocks))
    return 1


def _with_spec(app: Any, resource_spec: dict[str, Any]) -> Any:
    """``app`` called with a fresh copy of ``resource_spec`` each time (Parsl's MPI mode
    fills in keys of the dict it is given)."""

    def submit(*args: Any, **kwargs: Any) -> Any:
        return app(*args, parsl_resource_specification=dict(resource_spec), **kwargs)

    return submit


class ParslSession:
    """A loaded Parsl config: the apps of each scale and of ``train``, worker counts,
    and a shutdown that returns in bounded time.

    ``sim_apps[scale](app, x, seed, params, walltime=...)`` submits a task of that scale
    with :meth:`resource_spec` (priority; ranks and nodes in MPI mode).

    Raises:
        campaign.placement.PlacementError: a scale's resources that its executor cannot
            place (e.g. MPI ranks on an executor not in MPI mode); nothing is left loaded.
    """

    def __init__(self, config: Any, spec: CampaignSpec) -> None:
        import parsl
        from parsl.app.app import python_app

        from campaign.placement import run_placed
        from campaign.task import fit_features_and_learner, fit_learner, warm_learner

        put_interpreter_on_path()
        self.specs = self._resource_specs(config, spec)
        self.dfk = parsl.load(config)
        self.shutdown_incomplete = False
        self.sim_apps = {
            scale.name: _with_spec(python_app(run_placed, executors=[scale.executor_label],
                                              data_flow_kernel=self.dfk),
                                   self.specs[scale.name])
            for scale in spec.scales}
        self.train_app = python_app(fit_learner, executors=["train"], data_flow_kernel=self.dfk)
        self.refit_app = python_app(fit_features_and_learner, executors=["train"],
                                    data_flow_kernel=self.dfk)
        self.warm_app = python_app(warm_learner, executors=["train"], data_flow_kernel=self.dfk)
        self.workers = {scale.name: executor_workers(self.dfk.executors[scale.executor_label],
                                                     scale.resources.total_cores)
                        for scale in spec.scales}

    @staticmethod
    def _resource_specs(config: Any, spec: CampaignSpec) -> dict[str, dict[str, Any]]:
        """Each scale's resource specification, checked before anything starts."""
        executors = {executor.label: executor for executor in config.executors}
        specs = {}
        for index, scale in enumerate(spec.scales):
            executor = executors.get(scale.executor_label)
            if executor is None:
                raise ValueError(f"scale '{scale.name}': the site config has no executor "
                                 f"'{scale.executor_label}'")
            specs[scale.name] = task_resource_specification(
                scale.name, scale.resources, executor,
                default_priority(index, len(spec.scales)))
        return specs

    def resource_spec(self, scale: Scale | str) -> dict[str, Any]:
        """The ``parsl_resource_specification`` the tasks of ``scale`` are submitted with
        (a copy)."""
        return dict(self.specs[scale if isinstance(scale, str) else scale.name])

    def close(self) -> None:
        """Parsl's cleanup, bounded in time. A SIGTERM sent to a whole job (Slurm at
        walltime, ``timeout``) or a Ctrl-C to the terminal's process group also kills
        Parsl's interchange, and Parsl's cleanup then blocks forever talking to it.
        Everything is committed by now, so after ``SHUTDOWN_SECONDS`` we go on."""
        import parsl

        cleanup = threading.Thread(target=self.dfk.cleanup, name="parsl-cleanup", daemon=True)
        cleanup.start()
        cleanup.join(SHUTDOWN_SECONDS)
        if cleanup.is_alive():
            self.shutdown_incomplete = True
            logger.warning("Parsl did not shut down within %g s (its interchange was probably "
                           "stopped by the same signal); everything is committed, leaving it",
                           SHUTDOWN_SECONDS)
        parsl.clear()
