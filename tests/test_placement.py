"""Tasks go where their resources say, on a real local HTEX: priorities order the tasks
waiting for the same workers, and each task sees exactly its GPUs (a fake accelerator
list: Parsl sets ``CUDA_VISIBLE_DEVICES`` and its AMD and Intel equivalents per worker)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from apps.probe import where
from campaign.lifecycle import ParslSession
from campaign.resources import Resources
from campaign.spec import Budget, CampaignSpec, Scale
from site_configs import get_config

RESULT_TIMEOUT_S = 120
WAIT_S = 60


def spec_of(scales: list[Scale]) -> CampaignSpec:
    return CampaignSpec(name="placement", scales=scales,
                        budget=Budget(**{scale.name: 1 for scale in scales}))


def walker_scale(name: str, **fields) -> Scale:
    return Scale(name, app=where, walkers=np.zeros((1, 2)), **fields)


def held_pools(go: Path) -> str:
    """worker_init that holds each worker pool until ``go`` exists: tasks submitted before
    then wait at the interchange, where priorities order them."""
    return f'while [ ! -e "{go}" ]; do sleep 0.05; done'


def wait_until_queued(log: Path, count: int) -> None:
    """Until the interchange has logged ``count`` tasks onto its pending queue."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().count("onto pending_task_queue") >= 2 * count:
            return  # it logs "Putting task ..." and "Put task ..." per task
        time.sleep(0.05)
    raise AssertionError(f"the interchange did not queue {count} tasks in {WAIT_S} s ({log})")


@pytest.fixture
def on_path(monkeypatch):
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep
                       + os.environ["PATH"])


@pytest.mark.htex
@pytest.mark.slow
def test_finer_scales_and_set_priorities_are_dispatched_first(tmp_path, on_path):
    # three scales share one single-worker executor; none has a worker until all tasks
    # are queued, then the worker takes them one at a time
    shared = "sim-fine"
    spec = spec_of([walker_scale("coarse", executor=shared),
                    walker_scale("urgent", executor=shared, resources=Resources(priority=0)),
                    walker_scale("fine")])
    go = tmp_path / "go"
    config = get_config("local", scales=[s.name for s in spec.scales],
                        run_dir=str(tmp_path / "parsl"), workers_per_scale=1,
                        worker_init=held_pools(go))
    for executor in config.executors:
        executor.worker_debug = True  # the interchange logs each task it queues
    session = ParslSession(config, spec)
    try:
        assert session.resource_spec("coarse") == {"priority": 3}
        assert session.resource_spec("urgent") == {"priority": 0}
        assert session.resource_spec("fine") == {"priority": 1}
        futures = []
        for index in range(3):  # submitted coarsest first, interleaved
            for name in ("coarse", "urgent", "fine"):
                futures.append((name, session.sim_apps[name](where, np.zeros(2), index, {})))
        log = next(Path(tmp_path / "parsl").glob(f"*/{shared}/interchange.log"))
        wait_until_queued(log, len(futures))
        go.touch()
        started = sorted((future.result(timeout=RESULT_TIMEOUT_S)["started"], name)
                         for name, future in futures)
    finally:
        session.close()
    assert [name for _, name in started] == ["urgent"] * 3 + ["fine"] * 3 + ["coarse"] * 3


@pytest.mark.htex
@pytest.mark.slow
def test_each_task_sees_exactly_its_gpus(tmp_path, on_path):
    spec = spec_of([walker_scale("cpu", resources=Resources(gpus=0)),
                    walker_scale("one"),
                    walker_scale("pair", resources=Resources(gpus=2))])
    config = get_config("local", scales=[s.name for s in spec.scales],
                        run_dir=str(tmp_path / "parsl"), workers_per_scale=4,
                        accelerators=["0", "1", "2", "3"],
                        resources={s.name: s.resources for s in spec.scales})
    session = ParslSession(config, spec)
    try:
        assert session.workers == {"cpu": 4, "one": 4, "pair": 2}
        futures = [(name, session.sim_apps[name](where, np.zeros(2), seed, {}))
                   for name in ("cpu", "one", "pair") for seed in range(8)]
        seen: dict[str, set] = {"cpu": set(), "one": set(), "pair": set()}
        for name, future in futures:
            outputs = future.result(timeout=RESULT_TIMEOUT_S)["outputs"]
            devices = (outputs["CUDA_VISIBLE_DEVICES"], outputs["ROCR_VISIBLE_DEVICES"],
                       outputs["ZE_AFFINITY_MASK"])
            seen[name].add((devices, outputs["pid"]))
    finally:
        session.close()
    # a worker keeps its device group for life: each pid sees one group, all the same kind
    for name, expected in (("one", {"0", "1", "2", "3"}), ("pair", {"0,1", "2,3"})):
        groups = {devices for devices, _ in seen[name]}
        assert all(len(set(devices)) == 1 for devices in groups), groups
        assert {devices[0] for devices in groups} <= expected
        pids = {}
        for devices, pid in seen[name]:
            pids.setdefault(pid, set()).add(devices)
        assert all(len(groups_of_pid) == 1 for groups_of_pid in pids.values()), pids
    inherited = tuple(os.environ.get(name) for name in
                      ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK"))
    assert {devices for devices, _ in seen["cpu"]} == {inherited}  # not pinned
