"""The `campaign` command: a real run on a local HighThroughputExecutor, status, report,
and one clear error line for each bad input."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from campaign.cli import app

CAMPAIGN_BIN = str(Path(sys.executable).parent / "campaign")

# A user's own script: its fine app is defined here, not in the package, so HTEX
# workers must import it from the script's folder.
USER_SCRIPT = '''
"""A user's campaign with a fine-scale function of their own."""
import numpy as np
from apps import toy
from campaign import Budget, Campaign, Promotion, Scale
from learners import ExactGP
from learners.acquisition import MaxVariance


def my_fine_scale(x, *, seed):
    return toy.smeared_energy(x, seed=seed, n_samples=4096)


campaign = Campaign(
    name="user_campaign",
    scales=[Scale("coarse", app=toy.langevin, params={{"n_steps": 2000, "stride": 100}},
                  walkers=toy.initial_walkers(2)),
            Scale("fine", app=my_fine_scale)],
    promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
                          learner=ExactGP(restarts=1, iterations=60),
                          acquisition=MaxVariance(), batch_size=4, quantity="energy",
                          reference=lambda: toy.reference(resolution=25))],
    budget=Budget(fine={budget}),
)
'''


def write_script(folder: Path, budget: int = 8, name: str = "user_campaign.py") -> Path:
    path = folder / name
    path.write_text(USER_SCRIPT.format(budget=budget))
    return path


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               COLUMNS="200")
    return subprocess.run([CAMPAIGN_BIN, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.htex
@pytest.mark.slow
def test_run_on_local_htex_then_status_and_report(tmp_path):
    (tmp_path / "scripts").mkdir()
    script = write_script(tmp_path / "scripts")
    out = tmp_path / "run"
    done = run_cli("run", str(script), "--site", "local", "--out", str(out), "--no-report")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "task budget spent (fine=8)" in done.stdout
    assert (out / "store.zarr").is_dir() and (out / "ledger.sqlite").is_file()

    status = run_cli("status", str(out))
    assert status.returncode == 0, status.stderr
    assert "user_campaign" in status.stdout
    assert "fine" in status.stdout and "reference RMSE" in status.stdout
    fine_line = next(line for line in status.stdout.splitlines() if "│ fine" in line)
    assert fine_line.split("│")[2].strip() == "8"  # rows

    report = run_cli("report", str(out), "--baseline", "1")
    assert report.returncode == 0, report.stdout + report.stderr
    assert (out / "report.png").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    entry = summary["promotions"]["coarse-to-fine"]
    assert entry["curve"]["n_simulations"] == [4, 8]
    assert entry["random_curves"][0]["n_simulations"] == [4, 8]
    assert summary["tasks"]["fine"] == {"done": 8}
    assert summary["site"] == "local"


@pytest.mark.slow
def test_run_on_threads_writes_report_by_default(tmp_path):
    script = write_script(tmp_path, budget=8)
    out = tmp_path / "run"
    done = run_cli("run", str(script), "--site", "threads", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "report.png").is_file() and (out / "summary.json").is_file()
    assert not (out / "baseline-random").exists()  # the baseline is opt-in: its compute
    compared = run_cli("report", str(out), "--baseline", "1")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert (out / "baseline-random" / "ledger.sqlite").is_file()
    assert re.search(r"random baseline: 1 seed, \d+ tasks, \d+ s", compared.stdout), compared.stdout
    again = run_cli("run", str(script), "--site", "threads", "--out", str(out))
    assert again.returncode == 2
    assert "already holds a run of 'user_campaign'" in again.stdout


runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "300"})


def test_unknown_site_is_one_error_line(tmp_path):
    script = write_script(tmp_path)
    result = invoke("run", str(script), "--site", "nowhere", "--out", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert "unknown site 'nowhere'; known sites:" in result.stdout
    assert not (tmp_path / "r").exists()


def test_invalid_spec_in_script_is_one_error_line(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text(USER_SCRIPT.format(budget=0))
    result = invoke("run", str(script), "--site", "threads", "--out", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert "invalid Budget: tasks: tasks for scale 'fine' must be a positive integer" in \
        result.stdout.replace("\n", " ")


def test_script_without_campaign_and_missing_script(tmp_path):
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    result = invoke("run", str(empty), "--out", str(tmp_path / "r"))
    assert result.exit_code == 2 and "must define one Campaign" in result.stdout
    result = invoke("run", str(tmp_path / "missing.py"), "--out", str(tmp_path / "r"))
    assert result.exit_code == 2 and "does not exist" in result.stdout
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_module_anywhere\n")
    result = invoke("run", str(broken), "--out", str(tmp_path / "r"))
    assert result.exit_code == 2 and "ModuleNotFoundError" in result.stdout


def test_status_and_report_of_a_non_run_directory(tmp_path):
    for command in ("status", "report"):
        result = invoke(command, str(tmp_path))
        assert result.exit_code == 2
        assert "is not a campaign run directory" in result.stdout


def test_bad_site_param(tmp_path):
    script = write_script(tmp_path)
    result = invoke("run", str(script), "--site", "threads", "--out", str(tmp_path / "r"),
                    "--site-param", "cores")
    assert result.exit_code == 2 and "KEY=VALUE" in result.stdout
    result = invoke("run", str(script), "--site", "threads", "--out", str(tmp_path / "r"),
                    "--site-param", "colour=red")
    assert result.exit_code == 2 and "colour" in result.stdout


def test_misspelled_site_param_suggests_the_known_one(tmp_path):
    from site_configs import describe_sites

    script = write_script(tmp_path)
    result = invoke("run", str(script), "--site", "slurm", "--out", str(tmp_path / "r"),
                    "--site-param", "acount=x")
    line = " ".join(result.stdout.split())
    assert result.exit_code == 2, result.stdout
    assert "site 'slurm' has no parameter 'acount'; did you mean 'account'?" in line
    slurm = next(s for s in describe_sites() if s["name"] == "slurm")
    assert ", ".join(p["name"] for p in slurm["parameters"]) in line  # every known key
    assert "unexpected keyword" not in line and not (tmp_path / "r").exists()


def test_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("run", "demo", "status", "report"):
        assert command in result.stdout


def test_python_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "campaign.cli", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "status" in done.stdout


SLOW_SCRIPT = '''
import time
from apps import toy
from campaign import Budget, Campaign, Promotion, Scale


def slow_fine(x, *, seed):
    time.sleep(6)
    return toy.smeared_energy(x, seed=seed, n_samples=4096)


campaign = Campaign(
    name="slow",
    scales=[Scale("coarse", app=toy.langevin, params={"n_steps": 2000, "stride": 100},
                  walkers=toy.initial_walkers(2)),
            Scale("fine", app=slow_fine)],
    promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
                          learner="exact_gp", acquisition="max_variance", batch_size=2,
                          quantity="energy")],
    budget=Budget(fine=6),
)
'''


@pytest.mark.htex
@pytest.mark.slow
def test_sigterm_to_the_whole_job_exits_0_with_a_resume_hint_then_resumes(tmp_path):
    """What Slurm does at walltime: SIGTERM to every process of the job, Parsl's
    interchange and workers included. The driver must still exit, 0, with nothing
    committed lost, and `campaign resume` must finish the run."""
    import signal
    import time

    script = tmp_path / "slow_campaign.py"
    script.write_text(SLOW_SCRIPT)
    out = tmp_path / "run"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               COLUMNS="200")
    driver = subprocess.Popen([CAMPAIGN_BIN, "run", str(script), "--site", "local", "--out",
                               str(out), "--no-report"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env,
                              start_new_session=True)
    from campaign.ledger import Ledger

    deadline = time.time() + 120
    while time.time() < deadline:  # wait until fine tasks are running
        time.sleep(0.5)
        if (out / "ledger.sqlite").exists():
            ledger = Ledger(out / "ledger.sqlite", read_only=True)
            running = ledger.tasks("fine", status="submitted")
            ledger.close()
            if running:
                break
    os.killpg(driver.pid, signal.SIGTERM)
    output, _ = driver.communicate(timeout=120)
    assert driver.returncode == 0, output
    assert "interrupted by SIGTERM" in output and f"campaign resume {out}" in output
    resumed = run_cli("resume", str(out), "--no-report")
    assert resumed.returncode == 0, resumed.stdout
    assert "task budget spent (fine=6)" in resumed.stdout
    ledger = Ledger(out / "ledger.sqlite", read_only=True)
    assert ledger.task_counts()["fine"] == {"done": 6}
    ledger.close()
