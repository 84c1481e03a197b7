"""A campaign on a real 2-node Slurm: each slurmd in its own network and UTS namespace
(hostnames node1, node2) that tests/slurm/multinode_setup.sh creates, the controller and
the campaign's driver in a third, linked by a bridge; no traffic leaves them.

The coarse scale's block spans both nodes (srun starts a worker pool on each); the fine
scale is an MPI program (apps/data/mpi_energy.c, compiled here) whose 2 ranks Parsl's MPI
mode launches with srun over the 2 nodes of its block. Needs root, iproute2, util-linux,
Slurm and munge (tests/slurm/setup.sh installs them) and MPICH; skips and says why without
them (fails instead when ``CI`` is set).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "tests" / "slurm"
SOURCE = ROOT / "apps" / "data" / "mpi_energy.c"
CAMPAIGN_TIMEOUT_S = 400

pytestmark = [pytest.mark.slow, pytest.mark.htex]


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so the multi-node Slurm test may not be skipped: {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``(SLURM_CONF, controller namespace)`` of a running 2-node Slurm."""
    if os.geteuid() != 0:
        _unavailable("namespaces and a private Slurm need root")
    missing = [tool for tool in ("ip", "nsenter", "unshare", "slurmd", "slurmctld", "munged",
                                 "mpicc") if not shutil.which(tool)]
    if missing:
        _unavailable(f"missing {', '.join(missing)} (tests/slurm/setup.sh installs Slurm and "
                     "munge; make test installs MPICH)")
    folder = tmp_path_factory.mktemp("slurm-multinode")
    try:
        setup = subprocess.run([HERE / "multinode_setup.sh", folder, "2"], capture_output=True,
                               text=True, timeout=120)
    except subprocess.TimeoutExpired:
        setup = None
    try:
        if setup is None or setup.returncode != 0:
            detail = "timed out" if setup is None else (
                f"exit {setup.returncode}:\n{setup.stdout}{setup.stderr}")
            if setup is not None and setup.returncode == 3:
                _unavailable(f"tests/slurm/multinode_setup.sh: {detail}")
            pytest.fail(f"tests/slurm/multinode_setup.sh {folder} {detail}")
        env = dict(line.removeprefix("export ").split("=", 1)
                   for line in (folder / "env").read_text().splitlines())
        yield env["SLURM_CONF"], env["CONTROL_NS"]
    finally:
        subprocess.run([HERE / "multinode_teardown.sh", folder], capture_output=True,
                       timeout=120)


def test_workers_on_two_nodes_and_an_mpi_task_across_them(cluster, tmp_path):
    slurm_conf, control = cluster
    program = tmp_path / "mpi_energy"
    subprocess.run(["mpicc", "-O2", "-o", str(program), str(SOURCE)], check=True, timeout=120)
    env = {**os.environ, "SLURM_CONF": slurm_conf,
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    artifacts = tmp_path / "artifacts"
    run = subprocess.run(
        ["nsenter", f"--net=/run/netns/{control}", sys.executable,
         str(HERE / "multinode_campaign.py"), str(tmp_path / "run"), str(program),
         str(artifacts)],
        capture_output=True, text=True, timeout=CAMPAIGN_TIMEOUT_S, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["task_counts"]["fine"] == {"done": 4} and not summary["failed"], summary
    assert summary["rows"]["fine"] == 4

    # the coarse scale's workers ran on both nodes (the worker is host/pid/thread)
    with sqlite3.connect(tmp_path / "run" / "ledger.sqlite") as ledger:
        rows = ledger.execute("SELECT t.scale, a.worker FROM attempts a JOIN tasks t "
                              "USING (task_id) WHERE a.worker IS NOT NULL").fetchall()
    hosts = collections.defaultdict(set)
    for scale, worker in rows:
        hosts[scale].add(worker.split("/")[0])
    assert hosts["coarse"] == {"node1", "node2"}, hosts

    # each fine task: srun over node1 and node2, one rank on each
    workdirs = sorted(artifacts.glob("task-*"))
    assert len(workdirs) == 4
    for workdir in workdirs:
        launch = (workdir / "launch.txt").read_text()
        assert launch.startswith("srun --ntasks 2 --ntasks-per-node 1 --nodelist node1,node2 "
                                 "--nodes 2 "), launch
        ranks = sorted((workdir / f"rank-{r}.txt").read_text().split()[:6] for r in (0, 1))
        assert ranks == [["rank", "0", "of", "2", "on", "node1"],
                         ["rank", "1", "of", "2", "on", "node2"]], ranks
