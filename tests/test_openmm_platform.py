"""The OpenMM apps run on the GPU a task was given (CUDA, else HIP, else OpenCL), fall
back to CPU with a log line, and record the platform used per task."""

import logging

import numpy as np
import pytest

md = pytest.importorskip("apps.md")


@pytest.mark.parametrize(
    ("available", "gpus", "chosen"),
    [(["Reference", "CPU", "CUDA", "OpenCL"], "0,1", "CUDA"),
     (["Reference", "CPU", "OpenCL"], "1", "OpenCL"),
     (["Reference", "CPU", "HIP", "OpenCL"], "2", "HIP"),
     (["Reference", "CPU", "OpenCL"], None, "CPU"),  # OpenCL may be a CPU driver
     (["Reference", "CPU", "CUDA"], None, "CUDA"),
     (["Reference", "CPU"], None, "CPU")],
)
def test_auto_picks_a_gpu_platform_for_an_assigned_gpu(available, gpus, chosen):
    assert md.choose_platform("auto", available=available, gpus=gpus) == chosen


def test_an_assigned_gpu_without_a_gpu_platform_falls_back_to_cpu_with_a_log_line(caplog):
    with caplog.at_level(logging.WARNING, logger="apps.md"):
        assert md.choose_platform("auto", available=["Reference", "CPU"], gpus="3") == "CPU"
    assert "GPU 3 assigned to this task but OpenMM has no GPU platform" in caplog.text
    with pytest.raises(ValueError, match="OpenMM platform 'CUDA' is not available"):
        md.choose_platform("CUDA", available=["CPU"])


def test_assigned_gpus_reads_the_variables_parsl_sets():
    assert md.assigned_gpus({}) is None
    assert md.assigned_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) is None
    assert md.assigned_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}) == "0,1"
    assert md.assigned_gpus({"ZE_AFFINITY_MASK": "2.1"}) == "2.1"


def test_segment_records_the_platform_it_ran_on(tmp_path, monkeypatch):
    # a GPU "assigned" on a machine whose OpenMM has no GPU platform: CPU, recorded
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    available = md.available_platforms()
    expected = md.choose_platform("auto")
    result = md.segment(np.zeros(0), seed=1, n_steps=20, stride=10, platform="auto",
                        record_platform=True, artifacts_dir=str(tmp_path))
    assert result["platform"].tolist() == [float(md.PLATFORM_CODES[expected])] * 2
    assert (tmp_path / "1" / "platform.txt").read_text().strip() == expected
    if not set(md.GPU_PLATFORMS) & set(available):
        assert expected == "CPU"
    assert "platform" not in md.segment(np.zeros(0), seed=1, n_steps=10, stride=10)
