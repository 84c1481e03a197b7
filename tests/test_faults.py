"""Quick fault-injection suite: the driver is SIGKILLed at random moments and at the
hardest points (between the zarr write and the ledger commit, during a fit, after a
batch is recorded), resumed after each kill, with failing and NaN simulations injected.
The full version is `python -m benchmarks.faults` (20 kills, local HTEX, worker kills)."""

import pytest

from benchmarks.faults import run_suite


@pytest.mark.slow
def test_killed_driver_resumes_with_nothing_lost_duplicated_or_torn(tmp_path):
    result = run_suite(kills=4, site="threads", budget=24, seed=1, workdir=tmp_path)
    assert result["kills"] == 4, result["events"]
    assert result["lost"] == 0
    assert result["duplicated"] == 0
    assert result["torn"] == 0
    assert result["unfinished"] == 0
    assert result["quarantined"] > 0  # faults were injected on purpose...
    assert result["trained_on_quarantined"] == 0  # ...and never trained on
    assert result["identical_to_uninterrupted"]


def fine_app_that_kills_its_worker_once(x, *, seed, marker):
    """SIGKILLs the worker process running it the first time (mid-task), then behaves."""
    import os
    import signal
    from pathlib import Path

    from apps import toy

    try:
        Path(marker).unlink()
    except FileNotFoundError:
        return toy.smeared_energy(x, seed=seed, n_samples=4096)
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


@pytest.mark.htex
@pytest.mark.slow
def test_worker_killed_mid_task_is_retried_and_the_campaign_goes_on(tmp_path, monkeypatch):
    from pathlib import Path

    from conftest import tiny_campaign

    # the app lives in this test module: HTEX workers import it by name
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))

    from campaign import Budget
    from campaign.ledger import Ledger

    marker = tmp_path / "kill-next-worker"
    marker.write_text("")
    spec = tiny_campaign(fine_app=fine_app_that_kills_its_worker_once,
                         fine_params={"marker": str(marker)}, budget=Budget(fine=8))
    summary = spec.run(site="local", out=tmp_path / "run")
    assert not marker.exists()  # a worker really was killed
    assert summary.task_counts["fine"] == {"done": 8}
    ledger = Ledger(tmp_path / "run" / "ledger.sqlite", read_only=True)
    retried = [t for t in ledger.tasks("fine") if t["attempts"] > 1]
    assert len(retried) == 1
    assert "Lost" in retried[0]["reason"] or "lost" in retried[0]["reason"]
    ledger.close()
