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
