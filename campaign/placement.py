"""Where a simulation task runs: the Parsl resource specification it is submitted with.

Owns :func:`task_resource_specification` (a scale's ``Resources`` and priority, read
against the executor its tasks go to: HTEX ``priority``; in MPI mode also ``num_nodes``,
``num_ranks``, ``ranks_per_node`` and the launcher's per-rank options) and
:func:`run_placed`, the task function that carries it (Parsl passes
``parsl_resource_specification`` to the function it runs). Workers import this module:
it imports Parsl only inside functions and the engine not at all.
"""

from __future__ import annotations

from typing import Any

from campaign.resources import Resources, parsl_resource_specification


class PlacementError(ValueError):
    """A scale's resources cannot be met by the executor its tasks go to."""


def default_priority(index: int, count: int) -> int:
    """The priority of the ``index``-th of ``count`` scales (cheapest first): the finest
    scale is 1, the coarsest ``count``; lower is dispatched first."""
    return count - index


def launcher_options(resources: Resources, mpi_launcher: str, *, core_slots: bool) -> str:
    """Per-task MPI launcher options: cores (and GPUs) per rank.

    ``srun``: ``--cpus-per-task`` (always: a job's ``--cpus-per-task`` is not inherited by
    srun since Slurm 22.05) and ``--gpus-per-task``; ``mpiexec`` on a cluster (Cray PALS,
    Intel MPI): ``--depth=<cores> --cpu-bind=depth``; none on one machine's core slots.
    """
    cores = resources.cores or 1
    if mpi_launcher == "srun":
        options = [f"--cpus-per-task={cores}"]
        if resources.gpus:
            options.append(f"--gpus-per-task={max(1, resources.gpus // resources.ranks_per_node)}")
        return " ".join(options)
    if mpi_launcher == "mpiexec" and not core_slots and resources.cores:
        return f"--depth={cores} --cpu-bind=depth"
    return ""


def task_resource_specification(scale_name: str, resources: Resources, executor: Any,
                                priority: int) -> dict[str, Any]:
    """What a task of this scale is submitted with on ``executor``.

    Args:
        scale_name: named in errors.
        resources: the scale's ``Resources``.
        executor: the Parsl executor the scale's tasks go to.
        priority: the scale's priority when ``resources.priority`` is unset.

    Raises:
        PlacementError: an MPI scale on an executor not in MPI mode, or GPUs, ranks or
            nodes asked of an executor that cannot place them.
    """
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    mpi_mode = bool(getattr(executor, "enable_mpi_mode", False))
    label = getattr(executor, "label", "?")
    if not isinstance(executor, HighThroughputExecutor):
        if resources.mpi:
            raise PlacementError(f"scale '{scale_name}' asks for {resources.rank_count} MPI "
                                 f"ranks but executor '{label}' ({type(executor).__name__}) "
                                 "runs no MPI tasks; use a site with MPI mode, e.g. local")
        return {}
    if resources.mpi and not mpi_mode:
        raise PlacementError(f"scale '{scale_name}' asks for {resources.rank_count} MPI ranks "
                             f"but executor '{label}' is not in MPI mode; build the site "
                             "config with the spec's resources (get_config(..., "
                             "resources={scale: Resources}))")
    if resources.priority is not None:
        priority = resources.priority
    core_slots = isinstance(getattr(executor, "provider", None), LocalProvider)
    options = (launcher_options(resources, getattr(executor, "mpi_launcher", ""),
                                core_slots=core_slots) if mpi_mode else "")
    return parsl_resource_specification(resources, mpi_mode=mpi_mode, priority=priority,
                                        core_slots=core_slots, launcher_options=options)


def run_placed(app: Any, x: Any, seed: int, params: dict[str, Any],
               walltime: float | None = None, started_marker: str | None = None,
               parsl_resource_specification: dict[str, Any] | None = None) -> dict[str, Any]:
    """``campaign.task.run_app`` submitted with a resource specification (which Parsl
    reads and also hands to the function: it is dropped here)."""
    from campaign.task import run_app

    return run_app(app, x, seed, params, walltime, started_marker=started_marker)
