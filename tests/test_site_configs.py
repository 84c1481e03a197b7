"""One shared suite for every site config in site_configs.SITES."""

import os
import subprocess
import sys
import time

import numpy as np
import parsl
import pytest
from parsl.config import Config

from site_configs import SITES, UnknownSiteError, executor_labels, get_config

SCALES = ["coarse", "fine"]
RESULT_TIMEOUT_S = 60  # a hung executor fails the test instead of blocking the run

# Sites whose real run starts worker processes, and the marks their run test needs.
RUN_MARKS = {"local": [pytest.mark.htex, pytest.mark.slow], "threads": []}


def test_every_site_has_run_marks():
    assert set(RUN_MARKS) == set(SITES)


@pytest.fixture(params=sorted(SITES))
def site(request):
    return request.param


def test_executor_labels():
    assert executor_labels(SCALES) == ["sim-coarse", "sim-fine", "train"]
    assert executor_labels(("cg",)) == ["sim-cg", "train"]


@pytest.mark.parametrize(
    ("scales", "error"),
    [("coarse", TypeError), ([], ValueError), (["a", "a"], ValueError), ([""], ValueError)],
)
def test_executor_labels_rejects_bad_scales(scales, error):
    with pytest.raises(error):
        executor_labels(scales)


def test_site_returns_a_config_with_the_expected_labels(site, tmp_path):
    config = get_config(site, scales=SCALES, run_dir=str(tmp_path))
    assert isinstance(config, Config)
    assert [executor.label for executor in config.executors] == executor_labels(SCALES)
    assert config.run_dir == str(tmp_path)
    assert config.usage_tracking == 0


def test_site_returns_a_fresh_config_each_call(site, tmp_path):
    first = SITES[site](scales=SCALES, run_dir=str(tmp_path))
    second = SITES[site](scales=SCALES, run_dir=str(tmp_path))
    assert first is not second
    assert all(a is not b for a, b in zip(first.executors, second.executors, strict=True))


def test_site_labels_follow_the_scales(site, tmp_path):
    scales = ["continuum", "cg", "aa"]
    config = get_config(site, scales=scales, run_dir=str(tmp_path))
    assert [executor.label for executor in config.executors] == executor_labels(scales)


def test_site_rejects_bad_scales(site, tmp_path):
    with pytest.raises(ValueError):
        get_config(site, scales=["a", "a"], run_dir=str(tmp_path))


def test_site_rejects_unknown_parameters(site, tmp_path):
    with pytest.raises(TypeError):
        get_config(site, scales=SCALES, run_dir=str(tmp_path), no_such_parameter=1)


def test_unknown_site_lists_the_known_sites(tmp_path):
    with pytest.raises(UnknownSiteError) as info:
        get_config("foo", scales=SCALES, run_dir=str(tmp_path))
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "unknown site 'foo'" in message
    assert "known sites: " + ", ".join(sorted(SITES)) in message


def test_local_config_is_loopback_only_and_encrypted(tmp_path):
    config = get_config(
        "local", scales=SCALES, run_dir=str(tmp_path), workers_per_scale=3, train_workers=1
    )
    workers = {executor.label: executor.max_workers_per_node for executor in config.executors}
    assert workers == {"sim-coarse": 3, "sim-fine": 3, "train": 1}
    for executor in config.executors:
        assert executor.address == "127.0.0.1"
        assert executor.loopback_address == "127.0.0.1"
        assert executor.encrypted
        assert executor.cores_per_worker < 1
        assert executor.provider.max_blocks == 1
    assert config.strategy_period <= 0.5


def test_threads_config_sets_max_threads(tmp_path):
    config = get_config("threads", scales=SCALES, run_dir=str(tmp_path), max_threads=3)
    assert all(executor.max_threads == 3 for executor in config.executors)


def test_import_has_no_side_effects():
    # In a fresh interpreter: importing the package loads no DataFlowKernel, starts no
    # thread and leaves the environment alone.
    script = (
        "import os, threading\n"
        "before = dict(os.environ)\n"
        "import parsl, site_configs\n"
        "assert dict(os.environ) == before\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "try:\n"
        "    parsl.dfk()\n"
        "except parsl.errors.NoDataFlowKernelError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('a DataFlowKernel was loaded at import')\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def run_probe_on_every_label(config: Config) -> dict[str, tuple[int, float]]:
    """Load ``config``; on each executor run ``os.getpid`` and ``numpy.sum(arange(10))``.

    The apps are importable callables: HTEX workers import a function by its module name,
    so one defined in this test module (not importable there) would fail to deserialize.
    """
    results = {}
    with parsl.load(config):
        try:
            labels = [executor.label for executor in config.executors]
            futures = {
                label: (
                    parsl.python_app(executors=[label])(os.getpid)(),
                    parsl.python_app(executors=[label])(np.sum)(np.arange(10)),
                )
                for label in labels
            }
            for label, (pid, total) in futures.items():
                results[label] = (
                    pid.result(timeout=RESULT_TIMEOUT_S),
                    float(total.result(timeout=RESULT_TIMEOUT_S)),
                )
        finally:
            parsl.clear()
    return results


@pytest.mark.parametrize(
    "run_site", [pytest.param(name, marks=marks) for name, marks in sorted(RUN_MARKS.items())]
)
def test_site_runs_an_app_on_every_label(run_site, tmp_path, monkeypatch):
    # HTEX finds interchange.py and process_worker_pool.py on PATH (the engine sets it too).
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    config = get_config(run_site, scales=SCALES, run_dir=str(tmp_path / "runinfo"))
    start = time.perf_counter()
    results = run_probe_on_every_label(config)
    elapsed = time.perf_counter() - start
    assert set(results) == set(executor_labels(SCALES))
    assert all(total == 45.0 for _, total in results.values())
    pids = {pid for pid, _ in results.values()}
    if run_site == "threads":
        assert pids == {os.getpid()}
    else:
        assert os.getpid() not in pids  # ran in worker processes
        assert len(pids) == len(results)  # one pool per label
    assert (tmp_path / "runinfo").is_dir()
    assert elapsed < RESULT_TIMEOUT_S
