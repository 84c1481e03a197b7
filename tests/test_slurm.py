"""A campaign on a real Slurm: HTEX worker pools in batch jobs that Parsl's SlurmProvider
submits with sbatch, on a private single-node Slurm this module starts and stops.

tests/slurm/setup.sh installs slurm-wlm and munge when missing (apt, as root), writes a
slurm.conf under a temporary folder and starts munged, slurmctld and slurmd there;
tests/slurm/teardown.sh cancels the jobs and stops those daemons. Skipped only where this
process is not root; in CI (``CI`` set) a Slurm that cannot start fails the run.
"""

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import tiny_campaign

from campaign import Budget

HERE = Path(__file__).parent / "slurm"
SETUP_TIMEOUT_S = 300  # apt-get on a cold cache
CAMPAIGN_TIMEOUT_S = 240

pytestmark = [pytest.mark.slow, pytest.mark.htex]


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so the real-Slurm test may not be skipped: {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def slurm_conf(tmp_path_factory):
    """SLURM_CONF of a running private Slurm, set in this process for sbatch/squeue/scancel."""
    if os.geteuid() != 0:
        _unavailable("a private Slurm needs root (SlurmUser=root, munged as munge); "
                     "run the tests as root, as CI does")
    folder = tmp_path_factory.mktemp("slurm")
    started = time.perf_counter()
    try:
        setup = subprocess.run([HERE / "setup.sh", folder], capture_output=True, text=True,
                               timeout=SETUP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        setup = None
    if setup is None or setup.returncode != 0:
        subprocess.run([HERE / "teardown.sh", folder], capture_output=True, timeout=60)
        detail = "timed out" if setup is None else (
            f"exit {setup.returncode}:\n{setup.stdout}{setup.stderr}")
        pytest.fail(f"tests/slurm/setup.sh {folder} {detail}")
    print(f"\n{setup.stdout.strip()} ({time.perf_counter() - started:.1f} s with the script)")
    conf = folder / "slurm.conf"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(conf))
        try:
            yield conf
        finally:
            subprocess.run([HERE / "teardown.sh", folder], capture_output=True, timeout=60)


def queued_jobs() -> list[str]:
    result = subprocess.run(["squeue", "-h", "-o", "%i %T %j"], capture_output=True,
                            text=True, timeout=30, check=True)
    return result.stdout.split("\n")[:-1]


def test_campaign_runs_end_to_end_on_slurm(slurm_conf, tmp_path):
    # Three executors (sim-coarse, sim-fine, train), each a one-node job with 2 cores; the
    # private node advertises 8 slots, so all three run at once on this 2-core machine.
    campaign = tiny_campaign(budget=Budget(fine=8))
    started = time.perf_counter()
    summary = campaign.run(
        site="slurm", out=tmp_path / "run", address="127.0.0.1", cores_per_node=2,
        exclusive=False, walltime="00:10:00", strategy_period=1.0, cmd_timeout=30,
    )
    elapsed = time.perf_counter() - started
    print(f"campaign on Slurm: {elapsed:.1f} s, {summary.rounds} rounds, {summary.rows}")

    assert summary.stop_reason.startswith("task budget spent")
    assert summary.rows["fine"] == 8
    assert summary.task_counts["fine"].get("done") == 8
    assert not summary.task_counts["fine"].get("failed")
    assert elapsed < CAMPAIGN_TIMEOUT_S

    # the worker pools ran in Slurm batch jobs, started by srun, one per executor label
    scripts = {path.name.split(".")[1]: path.read_text()
               for path in (tmp_path / "run" / "parsl").rglob("submit_scripts/parsl.*")
               if path.suffix not in (".stdout", ".stderr")}
    assert set(scripts) == {"sim-coarse", "sim-fine", "train"}
    bodies = list(scripts.values())
    assert all("#SBATCH --cpus-per-task=2" in body and "srun" in body for body in bodies)
    log = (slurm_conf.parent / "log" / "slurmctld.log").read_text()
    assert len(re.findall(r"sched: Allocate JobId=\d+", log)) >= 3

    # Parsl cancelled its blocks at cleanup: nothing left in the queue
    deadline = time.monotonic() + 30
    while queued_jobs() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert queued_jobs() == []
