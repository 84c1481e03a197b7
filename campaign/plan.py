"""Plan an allocation before spending it: a campaign run on a simulated site.

Owns: :func:`plan`, which answers "with these nodes for these hours, how many fine
simulations will I get, and how busy will the nodes be?" by running the campaign's
real engine (steering, learners, selection, store, ledger) on a virtual clock
(``campaign.simulated``) with the site's layout, and :func:`plan_table`, its printout.
It also says where the driver's time went and the worker count at which the driver
itself would become the bottleneck for these durations.

>>> simulated_workers_from({"sim-fine": 4}, {"sim-fine": 2})
{'sim-fine': 8}
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from campaign.durations import DurationModel, assumed_durations
from campaign.spec import Budget, CampaignSpec

__all__ = ["plan", "plan_table", "simulated_workers_from", "site_workers_per_node",
           "utilization_from_ledger"]


def simulated_workers_from(per_node: dict[str, int], nodes: dict[str, int]) -> dict[str, int]:
    """Workers per executor label: workers per node times the nodes given (1 if none)."""
    return {label: int(count) * int(nodes.get(label, 1)) for label, count in per_node.items()}


def site_workers_per_node(spec: CampaignSpec, site: str,
                          site_params: dict[str, Any] | None = None) -> dict[str, int]:
    """How many tasks of each scale one node of ``site`` runs at once, from the scale's
    resources and the site's node shape (``site_configs.node_shape``); ``train`` runs
    one fit per node. A task spanning k nodes counts 1/k (at least 1 per k nodes)."""
    import inspect
    import tempfile

    from campaign.lifecycle import executor_workers
    from campaign.resources import Resources, workers_per_node
    from site_configs import SITES, get_config, node_shape

    site_params = site_params or {}
    needs = {scale.name: Resources.coerce(scale.resources) for scale in spec.scales}
    layout_params = dict(site_params)
    factory = SITES.get(site)
    if (factory is not None and "address" in inspect.signature(factory).parameters
            and not {"address", "interface"} & set(site_params)):
        layout_params["address"] = "127.0.0.1"  # planning off the machine: any address
    with tempfile.TemporaryDirectory() as scratch:  # the site's own layout, never loaded
        config = get_config(site, scales=list(needs), run_dir=scratch,
                            **{"resources": needs, **layout_params})
    executors = {executor.label: executor for executor in config.executors}
    per_node: dict[str, int] = {"train": 1}
    for scale in spec.scales:
        node = node_shape(site, label=scale.executor_label, **site_params)
        need = needs[scale.name]
        count = workers_per_node(need, node)
        if need.node_count > 1:  # a task spans several nodes: count it per node it holds
            count = 1
        elif count is None:  # nothing asked: the site's default workers per node
            executor = executors[scale.executor_label]
            provider = getattr(executor, "provider", None)
            blocks = (getattr(provider, "nodes_per_block", 1) or 1) * max(
                1, getattr(provider, "max_blocks", 1) or 1)
            count = executor_workers(executor) // blocks
        per_node[scale.executor_label] = max(1, int(count))
    return per_node


def utilization_from_ledger(run_dir: Path, workers: dict[str, int],
                            window: tuple[float, float] | None = None
                            ) -> dict[str, dict[str, Any]]:
    """Per scale: attempts, tasks done, busy seconds, and utilization = busy / (its
    workers x the span), from the ledger's attempts. The span runs from the first attempt's
    start to the last one's end, or is ``window`` (an allocation: attempts are clipped to
    it, and only those that ended inside it count as done)."""
    db = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT t.scale, a.started, a.ended, a.outcome FROM attempts a "
                          "JOIN tasks t USING (task_id) WHERE a.started IS NOT NULL "
                          "AND a.ended IS NOT NULL").fetchall()
    finally:
        db.close()
    if not rows:
        return {}
    if window is None:
        window = (min(r[1] for r in rows), max(r[2] for r in rows))
    start, end = window
    span = max(end - start, 1e-9)
    out: dict[str, dict[str, Any]] = {}
    for scale, label_workers in workers.items():
        mine = [r for r in rows if r[0] == scale and r[1] < end]
        busy = float(sum(min(r[2], end) - max(r[1], start) for r in mine))
        out[scale] = {"attempts": len(mine),
                      "done": sum(r[3] == "done" and r[2] <= end for r in mine),
                      "busy_seconds": busy, "span_seconds": span, "workers": label_workers,
                      "utilization": busy / (label_workers * span)}
    return out


def _quantile(values: list[float], q: float) -> float:
    return float(np.quantile(values, q)) if values else math.nan


def plan(spec: CampaignSpec, *, workers: dict[str, int], hours: float,
         durations: dict[str, DurationModel], out: Path, per_node: dict[str, int] | None = None,
         outputs: dict[str, Any] | None = None, cheap_seconds: float | None = 0.1,
         real_apps: set[str] | None = None, references: bool = False, fit_speed: float = 1.0,
         keep_task_budgets: bool = False, site: str = "simulated", seed: int = 0,
         **faults: Any) -> dict[str, Any]:
    """Run ``spec`` on a simulated site for ``hours`` of virtual time; return the plan.

    Args:
        workers: executor label -> simulated workers (``sim-<scale>``, ``train``).
        hours: the allocation's length: the campaign's ``wall_time`` budget.
        durations: scale name -> duration model; a scale left out is assumed one
            (``campaign.durations.assumed_durations``) and the plan says so.
        out: the run directory of the simulated run (overwritten).
        per_node: executor label -> workers per node, for node-hours (default 1).
        outputs: scale name -> stand-in (``campaign.stand_ins``): a dry run. Stand-ins
            the run makes (``cheap_seconds``) are added to this dict.
        cheap_seconds: a scale whose real app call takes more CPU seconds here is stood
            in after it (its outputs replayed, or drawn from the surrogate); None: all run for real.
        real_apps: scales that always run for real (never stood in for being slow).
        references: measure the promotions' reference errors (their CPU is charged to
            the model thread); by default they are left out of a plan.
        keep_task_budgets: keep the spec's per-scale task budgets; by default they are
            lifted, so the plan says how many tasks fit in the hours.
        site: what the run's ledger records as its site.
        faults: ``failure_rate``, ``loss_rate``, ``block_walltime`` of
            ``campaign.simulated.Simulation``.
    """
    from campaign.engine import Engine
    from campaign.simulated import Simulation, record_simulation

    budget = spec.budget.model_dump()
    limits = {**(budget["tasks"] if keep_task_budgets else {}),
              **{key: budget[key] for key in ("rounds", "core_seconds")
                 if budget[key] is not None},
              "wall_time": hours * 3600.0}
    promotions = spec.promotions if references else [
        p.model_copy(update={"reference": None}) for p in spec.promotions]
    planned = spec.model_copy(update={"budget": Budget(**limits), "promotions": promotions})
    assumed = assumed_durations([s.name for s in spec.scales])
    models = {s.name: durations.get(s.name, assumed[s.name]) for s in spec.scales}
    simulation = Simulation(workers=workers, durations=models,
                            outputs=outputs if outputs is not None else {},
                            cheap_seconds=cheap_seconds, real_apps=set(real_apps or ()),
                            fit_speed=fit_speed, seed=seed,
                            **faults)
    engine = Engine(planned, out, overwrite=True, simulation=simulation, site=site)
    real_started, cpu_started = time.time(), time.process_time()
    summary = engine.run()
    real_seconds, cpu_seconds = time.time() - real_started, time.process_time() - cpu_started
    record_simulation(Path(out), simulation)
    dispatcher = engine.dispatcher
    per_node = per_node or {}
    # the allocation ends after ``hours``: what still runs then is lost with it
    scales = utilization_from_ledger(Path(out), {s.name: workers.get(s.executor_label, 1)
                                                 for s in spec.scales},
                                     window=(engine.started, engine.started + hours * 3600.0))
    for scale in spec.scales:
        held = scales.setdefault(scale.name, {"attempts": 0, "done": 0, "busy_seconds": 0.0,
                                              "utilization": math.nan})
        nodes = workers.get(scale.executor_label, 1) / per_node.get(scale.executor_label, 1)
        held["nodes"] = nodes
        held["node_hours_used"] = held["busy_seconds"] / 3600.0 / per_node.get(
            scale.executor_label, 1)
        held["node_hours_allocated"] = nodes * hours
    tasks = sum(held["attempts"] for held in scales.values())
    waited = engine.parsl.fit_seconds  # fits the driver waited for: charged to its clock
    charged = {**dispatcher.charged,
               "driver": max(0.0, dispatcher.charged["driver"] - waited),
               "fits": dispatcher.charged["fits"] + waited}
    per_task = {name: seconds / max(tasks, 1) for name, seconds in charged.items()}
    mean_duration = {name: held["busy_seconds"] / held["attempts"]
                     for name, held in scales.items() if held["attempts"]}
    # the driver (steering thread) and the model thread each handle one task at a time:
    # N workers of duration D hand them N / D tasks per second
    binding = max(per_task["driver"], per_task["model_thread"], 1e-9)
    shortest = min(mean_duration.values()) if mean_duration else math.nan
    latencies = [v for label, values in dispatcher.latencies.items()
                 if label.startswith("sim-")  # a fit worker between fits waits on none
                 for v in values]
    return {
        "campaign": spec.name, "site": site, "hours": hours, "dry_run": simulation.dry_run,
        "durations": {name: {"model": model.describe(), "assumed": name not in durations}
                      for name, model in models.items()},
        "stand_ins": {name: s.describe() for name, s in simulation.outputs.items()},
        "references": references,
        "window": [engine.started, engine.started + hours * 3600.0],
        "virtual_seconds": summary.wall_seconds, "stop_reason": summary.stop_reason,
        "workers": workers, "scales": scales,
        "fine_simulations": scales[spec.scales[-1].name]["done"],
        "driver_seconds": {"steering (events, commits, ledger)": charged["driver"],
                           "model thread (selection, scoring, conditioning)":
                               charged["model_thread"],
                           "fits (train executor, and waited-for fits)": charged["fits"],
                           "apps and stand-ins run here (not charged)": charged["apps"]},
        "driver_cpu_per_task_ms": 1e3 * per_task["driver"],
        "model_thread_cpu_per_task_ms": 1e3 * per_task["model_thread"],
        "decision_latency_s": {"p50": _quantile(latencies, 0.5),
                               "p99": _quantile(latencies, 0.99),
                               "max": max(latencies) if latencies else math.nan},
        "bottleneck_workers": shortest / binding if math.isfinite(shortest) else math.nan,
        "model_thread_jobs": {name: {"jobs": count, "cpu_seconds": seconds}
                              for name, (count, seconds) in dispatcher.model_jobs.items()},
        "mean_durations_s": mean_duration,
        "app_cpu_seconds": {name: float(np.mean(seconds))
                            for name, seconds in dispatcher.measured.items()},
        "real_seconds": real_seconds, "real_cpu_seconds": cpu_seconds,
        "store_commits": {"commits": engine.store.commit_counts.commits,
                          "rows": engine.store.commit_counts.rows,
                          "wall_seconds": engine.store.commit_counts.seconds},
    }


def plan_table(result: dict[str, Any]) -> str:
    """The plan as a few lines of text for a terminal."""
    lines = [f"plan of {result['campaign']} on {result['site']} for {result['hours']:g} h"
             + (" (a dry run: stand-in outputs, nothing it learns is science)"
                if result["dry_run"] else "")]
    for name, held in result["durations"].items():
        lines.append(f"  {name} durations: {held['model']}"
                     + (" (assumed: give --durations)" if held["assumed"] else ""))
    for name, seconds in result["app_cpu_seconds"].items():
        lines.append(f"  {name} app: {seconds:.3g} CPU s per real call here; outputs: "
                     + result["stand_ins"].get(name, "its real app's"))
    if not result["references"]:
        lines.append("  reference errors: not measured (--references)")
    lines.append(f"{'scale':<12}{'workers':>9}{'tasks done':>12}{'node-hours':>12}"
                 f"{'utilization':>13}")
    for name, held in result["scales"].items():
        lines.append(f"{name:<12}{held.get('workers', 0):>9}{held['done']:>12}"
                     f"{held['node_hours_used']:>12.1f}{held['utilization']:>13.2f}")
    latency = result["decision_latency_s"]
    lines += [f"fine simulations in the allocation: {result['fine_simulations']}",
              "driver time: " + ", ".join(f"{k} {v:.1f} s"
                                          for k, v in result["driver_seconds"].items()),
              f"decision latency: p50 {latency['p50']:.3g} s, p99 {latency['p99']:.3g} s, "
              f"max {latency['max']:.3g} s (virtual)",
              f"driver CPU per task {result['driver_cpu_per_task_ms']:.2f} ms, model thread "
              f"{result['model_thread_cpu_per_task_ms']:.2f} ms: the driver becomes the "
              f"bottleneck near {result['bottleneck_workers']:,.0f} workers for these "
              "durations",
              f"(simulated in {result['real_seconds']:.0f} s real time)"]
    return "\n".join(lines)


def write_plan(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
