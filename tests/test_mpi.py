"""MPI tasks for real: a C program compiled here with ``mpicc`` runs with 2 ranks as the
fine scale of a small campaign on the ``local`` site in Parsl's MPI mode, launched
through ``$PARSL_MPI_PREFIX``; both ranks must have run and every result be committed.

Needs MPICH or Open MPI (``mpicc``, ``mpiexec``); ``make test`` installs MPICH from Debian
when it is missing. Without them these tests skip and say why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from apps import toy
from apps.external import ExternalError, external_app
from campaign.resources import Resources

SOURCE = Path(__file__).resolve().parents[1] / "apps" / "data" / "mpi_energy.c"
TEMPLATE = "x = $x\n"

needs_mpi = pytest.mark.skipif(
    not (shutil.which("mpicc") and shutil.which("mpiexec")),
    reason="no MPI here (mpicc and mpiexec not on PATH); `make test` installs MPICH with "
           "apt-get as root, or: apt-get install mpich libmpich-dev")


@pytest.fixture(scope="module")
def mpi_energy(tmp_path_factory) -> Path:
    """The test program, compiled with this machine's mpicc."""
    program = tmp_path_factory.mktemp("mpi") / "mpi_energy"
    subprocess.run(["mpicc", "-O2", "-o", str(program), str(SOURCE)], check=True, timeout=120)
    return program


def energy(row) -> float:
    return float(sum((value - 1.0) ** 2 for value in row))


def test_mpi_app_needs_the_executor_prefix(tmp_path, monkeypatch):
    monkeypatch.delenv("PARSL_MPI_PREFIX", raising=False)
    app = external_app(["/bin/true"], template=TEMPLATE, outputs=["energy"], mpi=True,
                       workdir_root=tmp_path)
    with pytest.raises(ExternalError, match=r"mpi=True but \$PARSL_MPI_PREFIX is not set"):
        app(np.array([0.5, 2.0]), seed=1)
    monkeypatch.setenv("PARSL_MPI_PREFIX", "mpiexec -n 2 -ppn 1 -hosts a,b ")
    assert app.launch_command() == ["mpiexec", "-n", "2", "-ppn", "1", "-hosts", "a,b",
                                    "/bin/true"]
    assert "mpi=True" in repr(app)


@needs_mpi
def test_the_program_runs_under_the_prefix_parsl_composes(mpi_energy, tmp_path, monkeypatch):
    from parsl.executors.high_throughput.mpi_prefix_composer import compose_all

    prefixes = compose_all("mpiexec", {"num_ranks": 2, "ranks_per_node": 1},
                           ["localhost", "localhost"])
    monkeypatch.setenv("PARSL_MPI_PREFIX", prefixes["PARSL_MPI_PREFIX"])
    app = external_app([mpi_energy, "input.txt", "output.txt"], template=TEMPLATE,
                       outputs=["energy", "ranks"], mpi=True, workdir_root=tmp_path, timeout=60)
    result = app(np.array([0.5, 2.0, 3.0]), seed=3)
    assert result["ranks"].tolist() == [2.0]
    assert result["energy"].tolist() == [energy([0.5, 2.0, 3.0])]
    [workdir] = tmp_path.glob("task-3-*")
    assert sorted(p.name for p in workdir.glob("rank-*.txt")) == ["rank-0.txt", "rank-1.txt"]
    assert (workdir / "launch.txt").read_text().startswith("mpiexec -n 2 -ppn 1 -hosts ")


@needs_mpi
@pytest.mark.htex
@pytest.mark.slow
def test_two_rank_fine_scale_runs_end_to_end_on_local_mpi_mode(mpi_energy, tmp_path,
                                                               monkeypatch):
    import zarr

    from campaign import Budget, Campaign, Promotion, Scale
    from campaign.ledger import Ledger
    from learners import ExactGP
    from learners.acquisition import MaxVariance

    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep
                       + os.environ["PATH"])
    artifacts = tmp_path / "artifacts"
    fine = external_app([mpi_energy, "input.txt", "output.txt"], name="mpi_energy",
                        template=TEMPLATE, outputs=["energy", "ranks"], mpi=True,
                        workdir_root=artifacts, timeout=60)
    ranks = Resources(ranks=2)
    campaign = Campaign(
        name="mpi",
        scales=[Scale("coarse", app=toy.langevin, params={"n_steps": 500, "stride": 100},
                      walkers=toy.initial_walkers(2)),
                Scale("fine", app=fine, resources=ranks, timeout=120)],
        promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
                              learner=ExactGP(restarts=1, iterations=20),
                              acquisition=MaxVariance(), batch_size=2, quantity="energy")],
        budget=Budget(fine=4, coarse=4),
    )
    # the engine gives the site each scale's resources: the fine executor is in MPI mode
    summary = campaign.run(site="local", out=tmp_path / "run", mpi_slots=2)
    assert summary.rows["fine"] == 4 and not summary.failed, summary
    assert not any(counts.get("quarantined") for counts in summary.task_counts.values())

    workdirs = sorted(artifacts.glob("task-*"))
    assert len(workdirs) == 4
    for workdir in workdirs:
        lines = sorted((workdir / f"rank-{r}.txt").read_text() for r in (0, 1))
        assert [line.split()[:4] for line in lines] == [["rank", "0", "of", "2"],
                                                       ["rank", "1", "of", "2"]]
        pids = {int(re.search(r"pid (\d+)", line).group(1)) for line in lines}
        assert len(pids) == 2  # two processes, not one rank twice
        launch = (workdir / "launch.txt").read_text()
        assert launch.startswith("mpiexec -n 2 -ppn 1 -hosts localhost,localhost ")

    store = zarr.open_group(str(tmp_path / "run" / "store.zarr"), mode="r")
    x, energies = store["fine/x"][:], store["fine/y/energy"][:]
    assert store["fine/y/ranks"][:].tolist() == [2.0] * 4
    assert [float(e) for e in energies] == [energy(row) for row in x.tolist()]
    ledger = Ledger(tmp_path / "run" / "ledger.sqlite", read_only=True)
    try:
        assert ledger.task_counts()["fine"] == {"done": 4}  # committed, none failed
    finally:
        ledger.close()


def test_the_pool_fix_leaves_a_task_that_does_not_fit_in_the_backlog(tmp_path, monkeypatch):
    # Parsl's own loop recurses until RecursionError here (Parsl PR #3800)
    import multiprocessing
    import pickle
    import queue

    from parsl.executors.high_throughput.mpi_resource_management import MPITaskScheduler

    from site_configs import mpi_worker_pool

    nodefile = tmp_path / "nodes"
    nodefile.write_text("localhost\nlocalhost\n")
    monkeypatch.delenv("SLURM_NODELIST", raising=False)
    monkeypatch.setenv("PBS_NODEFILE", str(nodefile))
    monkeypatch.setattr(MPITaskScheduler, "_schedule_backlog_tasks",
                        MPITaskScheduler._schedule_backlog_tasks)  # restored afterwards
    mpi_worker_pool.install()
    tasks, results = multiprocessing.Queue(), multiprocessing.Queue()
    scheduler = MPITaskScheduler(tasks, results)

    def task(task_id, nodes):
        return {"task_id": task_id, "context": {"resource_spec": {"num_nodes": nodes}}}

    for task_id, nodes in ((1, 1), (2, 1), (3, 2)):
        scheduler.put_task(task(task_id, nodes))
    assert [tasks.get(timeout=10)["task_id"] for _ in range(2)] == [1, 2]
    results.put(pickle.dumps({"type": "result", "task_id": 1}))
    scheduler.get_result(timeout=10)  # one node free, task 3 needs two: it waits
    with pytest.raises(queue.Empty):
        tasks.get(timeout=0.5)
    assert scheduler._backlog_queue.qsize() == 1
    results.put(pickle.dumps({"type": "result", "task_id": 2}))
    scheduler.get_result(timeout=10)
    assert tasks.get(timeout=10)["task_id"] == 3
