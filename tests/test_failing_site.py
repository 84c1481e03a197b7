"""A site that cannot start workers stops the campaign with the scheduler's own words.

The host has an ``sbatch`` that refuses every job (a script on PATH, as a wrong account
makes a real Slurm do) and a ``squeue``/``scancel`` that reach no controller. Parsl's
real ``SlurmProvider`` submits the blocks, the executor turns bad
(``BadStateException``), and ``campaign run`` exits non-zero with sbatch's message,
quarantining no task. ``campaign resume DIR --site threads`` then finishes the campaign.
No Slurm is needed.

A block that starts late (held back, as a batch queue holds a job, past the attempts'
engine-side deadline) quarantines nothing: the deadline runs from each attempt's start.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from campaign.ingest import error_kind, infrastructure_message

ROOT = Path(__file__).parents[1]
CAMPAIGN_BIN = str(Path(sys.executable).parent / "campaign")
REFUSAL = ("sbatch: error: Batch job submission failed: Invalid account or "
           "account/partition combination specified")

SMALL = '''
"""A user's small campaign."""
from apps import toy
from campaign import Budget, Campaign, Promotion, Scale
from learners import ExactGP
from learners.acquisition import MaxVariance

campaign = Campaign(
    name="small",
    scales=[Scale("coarse", app=toy.langevin, params={"n_steps": 2000, "stride": 100},
                  walkers=toy.initial_walkers(2)),
            Scale("fine", app=toy.smeared_energy, params={"n_samples": 1024})],
    promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
                          learner=ExactGP(restarts=1, iterations=40),
                          acquisition=MaxVariance(), batch_size=4, quantity="energy")],
    budget=Budget(fine=8),
)
'''


def fake_command(folder: Path, name: str, stderr: str) -> None:
    """``name`` on PATH: prints ``stderr`` to stderr and exits 1."""
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{stderr}' >&2\nexit 1\n")
    path.chmod(0o755)


def campaign_cli(*args: str, bin_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200", PYTHONPATH=str(ROOT),
               PATH=os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent),
                                     os.environ["PATH"]]))
    return subprocess.run([CAMPAIGN_BIN, *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)


def task_statuses(run: Path) -> dict[str, dict[str, int]]:
    with sqlite3.connect(run / "ledger.sqlite") as db:
        rows = db.execute("SELECT scale, status, COUNT(*) FROM tasks GROUP BY scale, status")
        counts: dict[str, dict[str, int]] = {}
        for scale, status, count in rows:
            counts.setdefault(scale, {})[status] = count
    return counts


@pytest.mark.htex  # starts HTEX interchanges, whose blocks never start
@pytest.mark.slow
def test_a_refused_submission_stops_the_run_then_resume_on_another_site_finishes(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_command(bin_dir, "sbatch", REFUSAL)
    no_controller = "slurm_load_jobs error: Unable to contact slurm controller"
    fake_command(bin_dir, "squeue", no_controller)
    fake_command(bin_dir, "scancel", no_controller)
    (tmp_path / "small.py").write_text(SMALL)

    refused = campaign_cli("run", "small.py", "--site", "slurm", "--site-param", "account=x",
                           "--site-param", "partition=debug", "--out", "run", "--no-report",
                           bin_dir=bin_dir, cwd=tmp_path)
    assert refused.returncode != 0, refused.stdout + refused.stderr
    said = (refused.stdout + refused.stderr).splitlines()
    stop = re.compile(  # how many blocks Parsl tried before it gave up depends on timing
        r"campaign could not progress: scale 'coarse' cannot run tasks on this site: "
        r"BadStateException: executor sim-coarse could not start its workers \(\d+ "
        rf"blocks?\): {re.escape(REFUSAL)}")
    assert any(stop.fullmatch(line) for line in said), "\n".join(said[-20:])
    counts = task_statuses(tmp_path / "run")
    assert counts == {"coarse": {"submitted": 2}}  # nothing quarantined, nothing lost

    # resuming on the same refusing site fails the same way, and poisons nothing
    again = campaign_cli("resume", "run", "--site", "slurm", "--site-param", "account=x",
                         "--site-param", "partition=debug", "--no-report",
                         bin_dir=bin_dir, cwd=tmp_path)
    assert again.returncode != 0 and REFUSAL in again.stdout + again.stderr
    assert task_statuses(tmp_path / "run") == {"coarse": {"submitted": 2}}

    resumed = campaign_cli("resume", "run", "--site", "threads", "--no-report",
                           bin_dir=bin_dir, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr[-3000:]
    counts = task_statuses(tmp_path / "run")
    assert counts["fine"] == {"done": 8}
    assert "quarantined" not in counts["coarse"]


def test_parsls_account_of_refused_blocks_reads_as_one_line_of_the_schedulers_words():
    parsl_text = (  # BadStateException of HTEX over SlurmProvider, Parsl 2026.10
        "Executor sim-fine failed due to: Error 1:\n\tFailed to start block 0: Cannot "
        "launch job parsl.sim-fine.block-0.1: Could not read job ID from submit command "
        f"standard output; recode=1, stdout=, stderr={REFUSAL}\n\n\nError 2:\n\tFailed "
        "to start block 1: Cannot launch job parsl.sim-fine.block-1.2: Could not read job "
        f"ID from submit command standard output; recode=1, stdout=, stderr={REFUSAL}\n")
    problem = f"BadStateException: {infrastructure_message(parsl_text)}"
    assert problem == ("BadStateException: executor sim-fine could not start its workers "
                       f"(2 blocks): {REFUSAL}")
    assert error_kind(problem) == "fatal"
    hung = ("Executor train failed due to: Error 1:\n\tFailed to start block 0: Command "
            "'sbatch /run/parsl.train.block-0.1' timed out after 5 seconds\nError 2:\n\t"
            "Failed to start block 1: Command 'sbatch /run/parsl.train.block-1.2' timed out "
            "after 5 seconds\n")  # as Parsl words a submit command that hangs
    assert infrastructure_message(hung) == (
        "executor train could not start its workers (2 blocks): Command 'sbatch "
        "/run/parsl.train.block-0.1' timed out after 5 seconds (and 1 other message)")
    no_stderr = ("Executor sim-fine failed due to: Error 1:\n\tFailed to start block 1: "
                 f"Cannot launch job parsl.sim-fine.block-1.3: {REFUSAL}; recode=1, "
                 "stdout=None, stderr=None\n")  # a provider that puts the words in its message
    assert infrastructure_message(no_stderr) == (
        f"executor sim-fine could not start its workers (1 block): {REFUSAL}")
    assert infrastructure_message("Task failure due to loss of worker 3 on host\n n1") == (
        "Task failure due to loss of worker 3 on host n1")


@pytest.mark.htex
@pytest.mark.slow
def test_a_block_held_back_past_the_deadline_quarantines_nothing(tmp_path, monkeypatch):
    """Local HTEX whose blocks start 12 s after their submission (``worker_init`` sleeps
    first, as a job waits in a batch queue), and a scale with ``timeout=2``: an
    engine-side deadline of 6 s that a submission clock would pass twice over. Every
    attempt waits past it, none is charged, lost or quarantined."""
    import numpy as np

    from apps import toy
    from campaign import Budget, Campaign, Scale
    from campaign.engine import Engine
    from campaign.ledger import Ledger

    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the workers import this checkout's apps
    held_back = 12.0
    spec = Campaign(name="held", scales=[
        Scale("walk", app=toy.smeared_energy, params={"n_samples": 256},
              walkers=toy.initial_walkers(2), timeout=2.0, retries=0)],
        budget=Budget(walk=4))
    deadline = 2 * 2.0 + 2.0
    summary = Engine(spec, tmp_path / "run", site="local",
                     site_params={"worker_init": f"sleep {held_back:.0f}"}).run()
    assert not summary.failed and summary.task_counts["walk"] == {"done": 4}
    ledger = Ledger(tmp_path / "run" / "ledger.sqlite", read_only=True)
    attempts = ledger.attempts()
    ledger.close()
    assert [a["outcome"] for a in attempts] == ["done"] * 4  # none lost, failed, expired
    waits = np.array([a["started"] - a["submitted"] for a in attempts])
    assert waits.max() > deadline, waits  # the first attempts waited for their block
