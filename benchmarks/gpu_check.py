"""GPU check for a GPU owner: OpenMM ns/day on CPU against GPU, and GPU pinning per task.

    python -m benchmarks.gpu_check [--steps 5000] [--json PATH]

Untested on a GPU: this project had no GPU machine when it was written. On a machine
without one it still runs, and says so. Three parts:

* **platforms**: the OpenMM platforms this installation has, the GPUs ``nvidia-smi``
  lists, and what ``apps.md.choose_platform("auto")`` picks with one GPU assigned;
* **openmm**: alanine dipeptide (amber14 + OBC2, 2 fs, HBonds) for ``--steps`` steps with
  ``apps.md.segment`` on CPU (all cores) and on the auto platform with GPU 0 assigned:
  ns/day each, their ratio, and the platform each task recorded;
* **pinning**: a ``local`` site with ``accelerators`` = the GPUs found, a scale with
  ``Resources(gpus=1)``: every task's ``CUDA_VISIBLE_DEVICES`` (``apps.probe.where``), which
  must be exactly one GPU per worker.

Output: a table, and with ``--json`` the records ``{"part", ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FS_PER_STEP = 2.0


def gpus_listed() -> list[str]:
    """GPU indices ``nvidia-smi -L`` lists (empty without it)."""
    if not shutil.which("nvidia-smi"):
        return []
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    return [str(i) for i, line in enumerate(listed.stdout.splitlines()) if line.startswith("GPU")]


def platforms() -> dict[str, Any]:
    from apps import md

    return {"part": "platforms", "available": md.available_platforms(), "gpus": gpus_listed(),
            "auto_with_gpu_0": md.choose_platform("auto", gpus="0")}


def openmm_speed(platform: str, steps: int, gpu: str | None) -> dict[str, Any]:
    """ns/day of ``steps`` steps (after a 100-step warm-up) on ``platform``."""
    from apps import md

    previous = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    try:
        threads = os.cpu_count() or 1
        md.segment(np.zeros(0), seed=1, n_steps=100, stride=100, platform=platform,
                   threads=threads)
        started = time.perf_counter()
        result = md.segment(np.zeros(0), seed=2, n_steps=steps, stride=steps,
                            platform=platform, threads=threads, record_platform=True)
        seconds = time.perf_counter() - started
    finally:
        if gpu is not None:
            if previous is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = previous
    code = int(result["platform"][0])
    used = {number: name for name, number in md.PLATFORM_CODES.items()}.get(code, "?")
    ns = steps * FS_PER_STEP * 1e-6
    return {"part": "openmm", "asked": platform, "used": used, "steps": steps,
            "seconds": seconds, "ns_per_day": ns / seconds * 86400.0}


def pinning(gpus: list[str]) -> dict[str, Any]:
    """Each task's CUDA_VISIBLE_DEVICES on a local site pinned to ``gpus``."""
    from apps.probe import where
    from campaign.lifecycle import ParslSession
    from campaign.resources import Resources
    from campaign.spec import Budget, CampaignSpec, Scale
    from site_configs import get_config

    if not gpus:
        return {"part": "pinning", "skipped": "no GPU listed by nvidia-smi"}
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
    spec = CampaignSpec(name="gpu_check", budget=Budget(md=1),
                        scales=[Scale("md", app=where, walkers=np.zeros((1, 2)),
                                      resources=Resources(gpus=1))])
    with tempfile.TemporaryDirectory() as run_dir:
        config = get_config("local", scales=["md"], run_dir=run_dir,
                            workers_per_scale=len(gpus), accelerators=gpus,
                            resources={"md": spec.scales[0].resources})
        session = ParslSession(config, spec)
        try:
            futures = [session.sim_apps["md"](where, np.zeros(2), seed, {})
                       for seed in range(4 * len(gpus))]
            seen = [(f.result(timeout=300)["outputs"]["CUDA_VISIBLE_DEVICES"],
                     f.result()["outputs"]["pid"]) for f in futures]
        finally:
            session.close()
    per_worker: dict[int, set] = {}
    for devices, pid in seen:
        per_worker.setdefault(pid, set()).add(devices)
    one_each = all(len(d) == 1 and "," not in next(iter(d)) for d in per_worker.values())
    return {"part": "pinning", "gpus": gpus, "workers": len(per_worker),
            "devices_seen": sorted({d for d, _ in seen}), "one_gpu_per_worker": one_each}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    records = [platforms()]
    print(f"platforms: {records[0]['available']}; GPUs: {records[0]['gpus'] or 'none'}; "
          f"auto with GPU 0 assigned -> {records[0]['auto_with_gpu_0']}")
    cpu = openmm_speed("CPU", args.steps, gpu=None)
    records.append(cpu)
    if records[0]["gpus"]:
        gpu = openmm_speed("auto", args.steps, gpu=records[0]["gpus"][0])
        gpu["speedup_vs_cpu"] = gpu["ns_per_day"] / cpu["ns_per_day"]
        records.append(gpu)
    for record in records[1:]:
        print(f"openmm {record['asked']:>4} -> ran on {record['used']:<6} "
              f"{record['ns_per_day']:10.1f} ns/day ({record['steps']} steps, "
              f"{record['seconds']:.2f} s)")
    pinned = pinning(records[0]["gpus"])
    records.append(pinned)
    print("pinning:", pinned)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
