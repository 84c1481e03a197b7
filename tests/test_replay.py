"""The simulated site against reality: a real local HTEX run and its simulated replay
(each scale's recorded durations, in submission order) agree on makespan and per-scale
utilization within 10% (benchmarks.replay)."""

import pytest

from benchmarks import replay


@pytest.mark.slow
@pytest.mark.htex
def test_simulated_replay_of_a_real_local_run_agrees_within_ten_percent(tmp_path):
    result = replay.run("local", 48, tmp_path, duration_scale=1.0)
    assert "fine" in result["stop_reason"] or "budget" in result["stop_reason"], result
    for key in ("makespan", "utilization_coarse", "utilization_fine"):
        assert result[key]["ratio"] == pytest.approx(1.0, abs=0.10), (key, result)
