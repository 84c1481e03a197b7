"""Sample efficiency on three problems: fine simulations each policy needs to a target error.

Problems (each with exact ground truth, see :mod:`apps.toy` and :mod:`apps.landscapes`):

* ``muller_brown``: the built-in two-scale Müller-Brown problem (2-D).
* ``channel``: two basins and a narrow, rarely visited trough (2-D).
* ``wells6d``: four anisotropic wells in 6-D.

For each problem, policy and seed the campaign runs through the real engine (threads
site, its own run directory) until the fine budget is spent. After every round the saved
surrogate (``store.load_model``) is scored against exact values, and we count the fine
simulations it took to reach the problem's target RMSE. Error metrics, named because they
answer different questions (DESIGN):

* ``uniform``: RMSE over the problem's reference set (a grid, or a uniform sample in 6-D,
  of the thermally accessible region): "learn the landscape". Headline metric.
* ``pool``: RMSE over 2,000 of the coarse candidates the walkers produced (where the
  coarse scale goes). Random selection follows this density.

Also reported: final calibration of the last surrogate on the reference set (coverage of
the 90% interval of the latent function, without observation noise, since the reference
values are noise-free; std of z-scores; :func:`learners.calibration.calibration_metrics`),
and for ``channel`` the rare-event discovery: fine simulations until the first one inside
the narrow trough.

Policies: ``random`` and every registered acquisition except ``cost_aware`` (the fine
cost is the same for every candidate in these problems, so it equals its base policy;
it is tested in tests/test_acquisition.py), ``explore`` (the default policy,
:func:`learners.acquisition.default_acquisition`) included. UCB and EI look for minima
(low energies are the rare events here). ``--policies`` also takes any other name
registered in :data:`learners.acquisition.ACQUISITIONS` (built with its defaults).
Anchor rules (the best-known frameworks'): ``farthest_point``
(MuMMI), ``local_outlier`` (DeepDriveMD), ``trust_window`` (DP-GEN).

Usage::

    python -m benchmarks.sample_efficiency [--quick] [--json PATH] [--seeds N]
        [--problems a,b] [--policies a,b]

Prints one table per problem and a goals summary; writes JSON (``results``: one record per
problem, metric and policy with ``sims_to_target`` per seed, ``median``, ``spread``,
``ratio_vs_random``, ``ratio_vs_best_anchor``, calibration). A run that never reaches the
target within the budget counts as ``budget + batch`` (a lower bound) and is flagged '>'.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from apps import landscapes, toy
from campaign import Budget, Campaign, Promotion, Scale
from campaign.ledger import Ledger
from campaign.store import Store
from learners import ExactGP
from learners.acquisition import (
    ACQUISITIONS,
    ExpectedImprovement,
    FarthestPoint,
    IntegratedVariance,
    LocalOutlier,
    MaxVariance,
    Random,
    TrustWindow,
    UpperConfidenceBound,
    acquisition_by_name,
    default_acquisition,
)
from learners.calibration import calibration_metrics

logger = logging.getLogger("benchmarks.sample_efficiency")

#: Policy factories by name (UCB and EI look for low energies).
POLICIES: dict[str, Callable[[], Any]] = {
    "random": Random,
    "max_variance": MaxVariance,
    "integrated_variance": IntegratedVariance,
    "integrated_variance_spread": functools.partial(IntegratedVariance, reference="spread"),
    "ucb": functools.partial(UpperConfidenceBound, maximize=False),
    "expected_improvement": functools.partial(ExpectedImprovement, maximize=False),
    "trust_window": TrustWindow,
    "farthest_point": FarthestPoint,
    "local_outlier": LocalOutlier,
    "explore": default_acquisition,
}
ANCHORS = ("farthest_point", "local_outlier", "trust_window")
OURS = ("max_variance", "integrated_variance", "integrated_variance_spread", "ucb",
        "expected_improvement", "explore")


def policy_factory(name: str) -> Callable[[], Any]:
    """A factory of the policy ``name``: :data:`POLICIES` first (the benchmark's variants),
    then any name registered in :data:`learners.acquisition.ACQUISITIONS` (its defaults).

    Raises:
        ValueError: a name in neither.
    """
    if name in POLICIES:
        return POLICIES[name]
    if name in ACQUISITIONS:
        return functools.partial(acquisition_by_name, name)
    known = ", ".join(sorted({*POLICIES, *ACQUISITIONS}))
    raise ValueError(f"unknown policy {name!r}; known: {known}")


@dataclass(frozen=True)
class Problem:
    """A two-scale problem with exact ground truth, and its benchmark settings per mode."""

    name: str
    coarse: Callable[..., dict[str, np.ndarray]]
    fine: Callable[..., dict[str, np.ndarray]]
    walkers: Callable[[int], np.ndarray]
    features: Callable[[np.ndarray], np.ndarray]
    reference: Callable[[], tuple[np.ndarray, np.ndarray]]
    exact: Callable[[np.ndarray], np.ndarray]
    description: str
    coarse_params: dict[str, Any] = field(default_factory=dict)
    fine_params: dict[str, Any] = field(default_factory=dict)
    rare: Callable[[np.ndarray], np.ndarray] | None = None
    #: mode -> {target_rmse, budget, n_samples}
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)


def _landscape(name: str, description: str, settings: dict[str, dict[str, Any]],
               rare: bool = False) -> Problem:
    return Problem(
        name=name, coarse=landscapes.sampler, fine=landscapes.smeared_energy,
        walkers=functools.partial(landscapes.initial_walkers, landscape=name),
        features=landscapes.coordinates,
        reference=functools.partial(landscapes.reference, name),
        exact=functools.partial(landscapes.smeared_energy_exact, landscape=name),
        description=description, coarse_params={"landscape": name},
        fine_params={"landscape": name},
        rare=functools.partial(landscapes.in_rare_region, landscape=name) if rare else None,
        settings=settings,
    )


PROBLEMS: dict[str, Problem] = {
    "muller_brown": Problem(
        name="muller_brown", coarse=toy.langevin, fine=toy.smeared_energy,
        walkers=toy.initial_walkers, features=toy.positions, reference=toy.reference,
        exact=toy.smeared_energy_exact,
        description="RMSE vs exact smeared energy; range -140..-15 over the region",
        # target 2 = 1.6% of the range; quick 5
        settings={"full": {"target_rmse": 2.0, "budget": 200, "n_samples": 2**17},
                  "quick": {"target_rmse": 5.0, "budget": 96, "n_samples": 2**14}},
    ),
    "channel": _landscape(
        "channel", "RMSE vs exact smeared energy; sd of F over the region 1.9",
        {"full": {"target_rmse": 0.15, "budget": 160, "n_samples": 2**16},
         "quick": {"target_rmse": 0.6, "budget": 96, "n_samples": 2**13}}, rare=True),
    "wells6d": _landscape(
        "wells6d", "RMSE vs exact smeared energy; sd of F over the region 0.9",
        {"full": {"target_rmse": 0.4, "budget": 160, "n_samples": 2**15},
         "quick": {"target_rmse": 0.7, "budget": 96, "n_samples": 2**12}}),
}
# Quick mode (under 2 minutes): by default only the built-in problem, random against
# max variance, 5 seeds; --problems/--policies widen it (then it takes longer).
COMMON = {"full": {"seeds": 5, "walkers": 4, "batch_size": 8, "restarts": 2},
          "quick": {"seeds": 5, "walkers": 4, "batch_size": 8, "restarts": 2}}
QUICK_PROBLEMS = ("muller_brown",)
QUICK_POLICIES = ("random", "max_variance")


def build_campaign(problem: Problem, policy: str, seed: int, settings: dict[str, Any],
                   engine_mode: str = "async") -> Campaign:
    """The problem's campaign with ``policy`` and ``seed``; everything else fixed."""
    return Campaign(
        name=f"bench_{problem.name}_{policy}",
        mode=engine_mode,
        scales=[
            Scale("coarse", app=problem.coarse, params=dict(problem.coarse_params),
                  walkers=problem.walkers(settings["walkers"])),
            Scale("fine", app=problem.fine,
                  params={**problem.fine_params, "n_samples": settings["n_samples"]}),
        ],
        promotions=[Promotion(
            source="coarse", target="fine", features=problem.features,
            learner=ExactGP(seed=seed, restarts=settings["restarts"]),
            acquisition=policy_factory(policy)(), batch_size=settings["batch_size"],
            quantity="energy", reference=problem.reference)],
        budget=Budget(fine=settings["budget"]),
        seed=seed,
    )


def score_run(problem: Problem, run_dir: Path, seed: int,
              reference: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """Learning curves (n_train, uniform RMSE, pool RMSE), final calibration and rare-event
    discovery of one finished run."""
    ledger = Ledger(run_dir / "ledger.sqlite")
    store = Store(run_dir, ledger, read_only=True)
    try:
        pool = problem.features(store.read("coarse").x)
        coarse_rows = int(len(pool))
        rng = np.random.default_rng(seed)
        pool_points = pool[rng.choice(len(pool), size=min(2000, len(pool)), replace=False)]
        pool_truth = problem.exact(pool_points)
        X_ref, F_ref = reference
        n_train, uniform, pooled = [], [], []
        learner = None
        for record in ledger.rounds("coarse-to-fine"):
            if not record.get("n_train"):
                continue
            learner = ExactGP().load_state_dict(
                store.load_model("coarse-to-fine", record["round"]))
            n_train.append(int(record["n_train"]))
            uniform.append(float(np.sqrt(np.mean((learner.posterior(X_ref).mean - F_ref)**2))))
            error = learner.posterior(pool_points).mean - pool_truth
            pooled.append(float(np.sqrt(np.mean(error**2))))
        # F_ref is the exact, noise-free function: score the latent intervals.
        calibration = (calibration_metrics(learner.posterior(X_ref), F_ref,
                                           include_noise=False)
                       if learner is not None else {})
        first_rare = None
        pool_rare = None
        if problem.rare is not None:
            fine_x = problem.features(store.read("fine").x)
            hits = np.flatnonzero(problem.rare(fine_x))
            first_rare = int(hits[0]) + 1 if hits.size else None
            pool_rare = float(np.mean(problem.rare(pool)))
    finally:
        ledger.close()
    return {"n_train": n_train, "uniform_rmse": uniform, "pool_rmse": pooled,
            "calibration": calibration, "first_rare": first_rare, "pool_rare_fraction": pool_rare,
            "coarse_rows": coarse_rows}


def sims_to_target(n_train: list[int], errors: list[float], target: float,
                   censored_at: int) -> tuple[int, bool]:
    """(first n with error <= target, reached?); ``censored_at`` when never reached."""
    for n, error in zip(n_train, errors, strict=True):
        if error <= target:
            return int(n), True
    return censored_at, False


def summarize(problem: Problem, settings: dict[str, Any], runs: dict[str, list[dict[str, Any]]]
              ) -> list[dict[str, Any]]:
    """One record per metric and policy, with ratios to random and to the best anchor."""
    censored_at = settings["budget"] + settings["batch_size"]
    results = []
    for metric in ("uniform", "pool"):
        records = {}
        for policy, curves in runs.items():
            reached = [sims_to_target(c["n_train"], c[f"{metric}_rmse"], settings["target_rmse"],
                                      censored_at) for c in curves]
            counts = [n for n, _ in reached]
            calibration = [c["calibration"] for c in curves if c["calibration"]]
            rare = [c["first_rare"] for c in curves]
            records[policy] = {
                "problem": problem.name, "metric": metric, "policy": policy,
                "seeds": list(range(len(curves))), "sims_to_target": counts,
                "reached": [ok for _, ok in reached], "median": float(np.median(counts)),
                "spread": [float(np.min(counts)), float(np.max(counts))],
                "final_rmse_median": float(np.median([c[f"{metric}_rmse"][-1] for c in curves])),
                "coverage_90_median": float(np.median([m["coverage_90"] for m in calibration]))
                if calibration else None,
                "z_std_median": float(np.median([m["z_std"] for m in calibration]))
                if calibration else None,
                "first_rare": rare if problem.rare is not None else None,
                "seconds_median": float(np.median([c["seconds"] for c in curves])),
                "coarse_rows_median": float(np.median([c["coarse_rows"] for c in curves])),
            }
        anchors = [records[a]["median"] for a in ANCHORS if a in records]
        best_anchor = min(anchors) if anchors else None
        for record in records.values():
            record["ratio_vs_random"] = (records["random"]["median"] / record["median"]
                                         if "random" in records else None)
            record["ratio_vs_best_anchor"] = (best_anchor / record["median"]
                                              if best_anchor is not None else None)
        results.extend(records.values())
    return results


def run(mode: str, seeds: int | None = None, problems: tuple[str, ...] = tuple(PROBLEMS),
        policies: tuple[str, ...] = tuple(POLICIES),
        overrides: dict[str, Any] | None = None, engine_mode: str = "async") -> dict[str, Any]:
    """Run every problem x policy x seed; returns the report (see the module docstring).

    ``overrides`` replaces settings (``budget``, ``batch_size``, ``n_samples``,
    ``target_rmse``, ``walkers``, ``restarts``) for every problem, e.g. in a smoke test.
    ``engine_mode``: the campaigns' ``mode``, ``"async"`` (the default of ``campaign run``)
    or ``"rounds"``.
    """
    report: dict[str, Any] = {"mode": mode, "engine_mode": engine_mode, "problems": {},
                              "results": [], "curves": {}}
    with tempfile.TemporaryDirectory(prefix="sample-efficiency-") as scratch:
        for name in problems:
            problem = PROBLEMS[name]
            settings = {**COMMON[mode], **problem.settings[mode], **(overrides or {})}
            if seeds is not None:
                settings["seeds"] = seeds
            reference = problem.reference()
            runs: dict[str, list[dict[str, Any]]] = {policy: [] for policy in policies}
            for seed in range(settings["seeds"]):
                for policy in policies:
                    started = time.time()
                    run_dir = Path(scratch) / f"{name}-{policy}-{seed}"
                    build_campaign(problem, policy, seed, settings, engine_mode).run(
                        site="threads", out=run_dir)
                    curves = score_run(problem, run_dir, seed, reference)
                    curves["seconds"] = time.time() - started
                    runs[policy].append(curves)
                    logger.info("%s %s seed %d: final uniform RMSE %.3g, pool RMSE %.3g "
                                "(%.1f s)", name, policy, seed, curves["uniform_rmse"][-1],
                                curves["pool_rmse"][-1], curves["seconds"])
            report["problems"][name] = {"settings": settings, "error_metric": problem.description}
            report["results"].extend(summarize(problem, settings, runs))
            report["curves"][name] = runs
    report["goals"] = goals(report["results"])
    return report


def goals(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's goals on the uniform metric: >= 3x fewer than random on muller_brown
    (best of our policies), and >= 1.5x better than the best anchor on >= 2 problems."""
    uniform = [r for r in results if r["metric"] == "uniform"]
    by_problem: dict[str, dict[str, dict[str, Any]]] = {}
    for r in uniform:
        by_problem.setdefault(r["problem"], {})[r["policy"]] = r
    best = {}
    for problem, records in by_problem.items():
        ours = [records[p] for p in OURS if p in records]
        if ours:
            top = min(ours, key=lambda r: r["median"])
            best[problem] = {"policy": top["policy"], "ratio_vs_random": top["ratio_vs_random"],
                             "ratio_vs_best_anchor": top["ratio_vs_best_anchor"]}
    mb = best.get("muller_brown", {}).get("ratio_vs_random")
    anchor_wins = [p for p, b in best.items()
                   if b["ratio_vs_best_anchor"] is not None and b["ratio_vs_best_anchor"] >= 1.5]
    return {"best_of_ours": best,
            "muller_brown_vs_random_3x": None if mb is None else bool(mb >= 3.0),
            "problems_1p5x_vs_best_anchor": anchor_wins,
            "anchor_goal_met": len(anchor_wins) >= 2}


def table(report: dict[str, Any]) -> str:
    """Plain-text tables, one per problem, and the goals."""
    lines = []
    for name, info in report["problems"].items():
        s = info["settings"]
        lines.append(f"\nproblem {name} ({report['mode']}): fine sims to reach RMSE <= "
                     f"{s['target_rmse']} (budget {s['budget']}, batch {s['batch_size']}, "
                     f"{s['seeds']} seeds; '>' = not reached). {info['error_metric']}")
        has_rare = any(r["first_rare"] is not None for r in report["results"]
                       if r["problem"] == name)
        lines.append(f"{'metric':8} {'policy':26} {'median':>6} {'min':>4} {'max':>4} "
                     f"{'/random':>7} {'/anchor':>7} {'rmse':>7} {'cov90':>5} {'z_sd':>5}"
                     f"{'1st rare' if has_rare else '':>10}  per seed")
        for r in report["results"]:
            if r["problem"] != name:
                continue
            per_seed = " ".join(f"{'' if ok else '>'}{n}" for n, ok in
                                zip(r["sims_to_target"], r["reached"], strict=True))
            ratio = "" if r["ratio_vs_random"] is None else f"{r['ratio_vs_random']:.2f}x"
            anchor = ("" if r["ratio_vs_best_anchor"] is None
                      else f"{r['ratio_vs_best_anchor']:.2f}x")
            cov = "" if r["coverage_90_median"] is None else f"{r['coverage_90_median']:.2f}"
            zsd = "" if r["z_std_median"] is None else f"{r['z_std_median']:.2f}"
            rare = ""
            if r["first_rare"] is not None:
                rare = " " + ",".join("-" if v is None else str(v) for v in r["first_rare"])
                rare = f"{rare:>10}"
            lines.append(f"{r['metric']:8} {r['policy']:26} {r['median']:6.0f} "
                         f"{r['spread'][0]:4.0f} {r['spread'][1]:4.0f} {ratio:>7} {anchor:>7} "
                         f"{r['final_rmse_median']:7.3g} {cov:>5} {zsd:>5}{rare}  {per_seed}")
    g = report["goals"]
    lines.append(f"\ngoals (uniform metric, best of {'/'.join(OURS)}):")
    for problem, b in g["best_of_ours"].items():
        def ratio(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.2f}x"

        lines.append(f"  {problem}: {b['policy']} {ratio(b['ratio_vs_random'])} vs random, "
                     f"{ratio(b['ratio_vs_best_anchor'])} vs best anchor (none run)"
                     if b["ratio_vs_best_anchor"] is None else
                     f"  {problem}: {b['policy']} {ratio(b['ratio_vs_random'])} vs random, "
                     f"{ratio(b['ratio_vs_best_anchor'])} vs best anchor")
    lines.append(f"  >= 3x vs random on muller_brown: {g['muller_brown_vs_random_3x']}; "
                 f">= 1.5x vs best anchor on >= 2 problems: {g['anchor_goal_met']} "
                 f"({', '.join(g['problems_1p5x_vs_best_anchor']) or 'none'})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller budgets, looser targets; by default only muller_brown "
                             "with random and max_variance")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--mode", choices=("async", "rounds"), default="async",
                        help="engine mode of the campaigns (default async, as campaign run)")
    parser.add_argument("--seeds", type=int, help="number of seeds (full default 5)")
    parser.add_argument("--problems", default=None,
                        help=f"comma-separated subset of {', '.join(PROBLEMS)}")
    parser.add_argument("--policies", default=None,
                        help="comma-separated policy names: "
                             f"{', '.join(sorted({*POLICIES, *ACQUISITIONS}))}")
    args = parser.parse_args(argv)
    if args.problems is None:
        args.problems = ",".join(QUICK_PROBLEMS if args.quick else PROBLEMS)
    if args.policies is None:
        args.policies = ",".join(QUICK_POLICIES if args.quick else POLICIES)
    handler = logging.StreamHandler()
    handler.addFilter(lambda record: record.name.startswith("benchmarks")
                      or record.levelno >= logging.WARNING)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        handlers=[handler])
    problems = tuple(p for p in args.problems.split(",") if p)
    policies = tuple(p for p in args.policies.split(",") if p)
    unknown = [p for p in problems if p not in PROBLEMS] + [
        p for p in policies if p not in POLICIES and p not in ACQUISITIONS]
    if unknown:
        parser.error(f"unknown problem or policy: {', '.join(unknown)}")
    started = time.time()
    report = run("quick" if args.quick else "full", seeds=args.seeds, problems=problems,
                 policies=policies, engine_mode=args.mode)
    report["wall_seconds"] = time.time() - started
    print(table(report))
    print(f"wall time {report['wall_seconds']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
