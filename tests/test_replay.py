"""The simulated site against reality: a real local HTEX run and its simulated replay
(each scale's recorded durations, in submission order) agree on makespan and per-scale
utilization (benchmarks.replay).

The goal, within 10%, is measured by ``python -m benchmarks.replay`` on a quiet machine
(docs/benchmarks.md: 3-4%). Under load the real driver waits for a core and the virtual
clock charges only its CPU, so the real run stretches (seen in CI: 0.88x makespan, 1.13x
utilization): the test allows 25%, still far inside what a wrong worker count or a
clock that ignored durations would give (2x and more)."""

import pytest

from benchmarks import replay


@pytest.mark.slow
@pytest.mark.htex
def test_simulated_replay_of_a_real_local_run_agrees_with_it(tmp_path):
    result = replay.run("local", 48, tmp_path, duration_scale=1.0)
    assert "fine" in result["stop_reason"] or "budget" in result["stop_reason"], result
    for key in ("makespan", "utilization_coarse", "utilization_fine"):
        assert result[key]["ratio"] == pytest.approx(1.0, abs=0.25), (key, result)
