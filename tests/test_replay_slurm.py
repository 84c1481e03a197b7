"""The simulated site against a real Slurm: the benchmark's two-scale campaign run on the
test suite's private one-node Slurm (tests/test_slurm.py's fixture: it starts and stops
that Slurm, and skips, or fails under ``CI``, exactly as there), then replayed on the
virtual clock with what its ledger recorded (benchmarks.replay, ``latencies``): each
attempt's duration and start delay (the batch job's queue wait and start, a cold worker,
dispatch), and from its driver, metered: each fit's turnaround and its wall seconds per
CPU second.
Makespan and per-scale utilization agree within ``TOLERANCE`` (docs/benchmarks.md gives
the spread measured under load)."""

import pytest
from test_slurm import slurm_conf  # noqa: F401 (a fixture: the same Slurm)

from benchmarks import replay

# The goal, 10%, is the benchmark's (docs/benchmarks.md: met in every repeat, within 1%
# in most, 0.913x at worst). A test allows 15%: a stall of the real driver just when the
# fine workers run dry (seen, about 1.5 s) is what no replay can place. The durations
# alone miss by up to 50% under load.
TOLERANCE = 0.15

pytestmark = [pytest.mark.slow, pytest.mark.htex]


def test_simulated_replay_of_a_real_slurm_run_agrees_with_it(slurm_conf, tmp_path):  # noqa: F811
    result = replay.run("slurm", 48, tmp_path, duration_scale=1.0, replays=("latencies",))
    assert result["stop_reason"].startswith("task budget spent"), result
    assert result["workers"] == {"sim-coarse": 2, "sim-fine": 2}, result
    assert result["fit_turnarounds"], result  # the real driver's fits were metered
    replayed = result["replays"]["latencies"]
    print(", ".join(f"{key} {value['ratio']:.3f}x" for key, value in replayed.items()
                    if isinstance(value, dict) and "ratio" in value))
    for key in ("makespan", "utilization_coarse", "utilization_fine"):
        assert replayed[key]["ratio"] == pytest.approx(1.0, abs=TOLERANCE), (key, result)
