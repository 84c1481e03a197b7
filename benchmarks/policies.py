"""Policies on fixed pools: every acquisition against random, four problems, whole curves.

    python -m benchmarks.policies [--quick] [--json PATH] [--seeds N] [--problems a,b]
        [--policies a,b] [--processes 2]

A policy is a registered name (``campaign policies``), ``default``, or a name with one
numeric parameter: ``explore:fraction=0.5``.

For each problem and seed, coarse walkers (the problem's own coarse app, 4 walkers run
segment after segment) give a fixed pool of frames; a random part of it is held out as
the **pool** test set ("where the coarse scale goes"), the problem's reference set is the
**uniform** test set ("learn the landscape"). Each policy then labels pool frames in
batches with the fine app (Monte Carlo, noisy) through :func:`learners.pool_loop`,
learner :func:`learners.default_learner` wrapped in :class:`learners.Recalibrated`
(scalar recalibration from prospective z-scores: the mean, and so every error below, is
the default learner's; the policies compared here rank by relative variance or ignore it,
so their picks are those of the unwrapped learner). Scored against the exact answers:

* the whole learning curve on both test sets and on a third, the **rare** region (the
  points of a dense reference set inside it, the same for every seed; problems with one);
* simulations to reach several error levels on each metric, set by a rule that cannot be
  tuned: random's median error at the full budget, and 1.5x and 2x that;
* the error at fixed budgets (a third, two thirds, all of it);
* first discovery of the rare region: labels until the first one inside it;
* calibration of the 90% predictive interval on **prospective** points (each batch before
  it is labelled, against its noisy labels, the predictive variance including the noise),
  raw and after recalibration, over the second half of the run.

Problems: ``muller_brown`` (2-D, the built-in problem), ``channel`` (2-D, a narrow
trough), ``channel4d`` (4-D, three basins and a narrow channel, ~2% of coarse frames),
``wells6d`` (6-D). ``explore`` is :class:`learners.acquisition.Explore` (integrated
variance with 30% of the picks uniform random). Anchor rules: ``farthest_point``
(MuMMI), ``local_outlier`` (DeepDriveMD), ``trust_window`` (DP-GEN). ``default`` names
:func:`learners.acquisition.default_acquisition` (the JSON records which policy that was,
``default_policy``).

Output: a table per problem and JSON (``records``: one per problem, metric, policy and
level or budget, with ``per_seed``, ``median``, ``censored`` and ``ratio_vs_random``;
``curves``: every run). A run that never reaches a level counts as budget + batch (a
lower bound, marked '>').
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SETTINGS: dict[str, dict[str, Any]] = {
    "full": {"seeds": 5, "segments": 9, "test_pool": 500, "uniform_points": 1500,
             "budget": 300, "batch_size": 10,
             "policies": ("random", "integrated_variance", "explore", "max_variance",
                          "farthest_point", "local_outlier", "trust_window")},
    "quick": {"seeds": 3, "segments": 5, "test_pool": 300, "uniform_points": 800,
              "budget": 120, "batch_size": 10,
              "policies": ("random", "integrated_variance", "explore", "max_variance",
                           "farthest_point")},
    # the whole pipeline at its smallest (tests/test_policies_benchmark.py), not a result
    "tiny": {"seeds": 1, "segments": 1, "test_pool": 60, "uniform_points": 100,
             "budget": 20, "batch_size": 5, "policies": ("random", "default")},
}
WALKERS = 4
LEVELS = (1.0, 1.5, 2.0)  # multiples of random's median error at the full budget


@dataclass(frozen=True)
class PoolProblem:
    """A problem as fixed-pool functions: coarse segment, fine label, exact answer."""

    name: str
    walkers: Callable[[int], np.ndarray]
    segment: Callable[..., dict[str, np.ndarray]]
    label: Callable[..., dict[str, np.ndarray]]
    exact: Callable[[np.ndarray], np.ndarray]
    reference: Callable[[], tuple[np.ndarray, np.ndarray]]
    rare: Callable[[np.ndarray], np.ndarray] | None


def _problems() -> dict[str, PoolProblem]:
    from apps import landscapes, toy

    problems = {"muller_brown": PoolProblem(
        "muller_brown", toy.initial_walkers,
        functools.partial(toy.langevin, n_steps=10_000, stride=100),
        functools.partial(toy.smeared_energy, n_samples=2**14), toy.smeared_energy_exact,
        toy.reference, None)}
    for name in ("channel", "channel4d", "wells6d"):
        has_rare = landscapes.LANDSCAPES[name].rare_well >= 0
        problems[name] = PoolProblem(
            name, functools.partial(landscapes.initial_walkers, landscape=name),
            functools.partial(landscapes.sampler, landscape=name, n_steps=2000, stride=20),
            functools.partial(landscapes.smeared_energy, landscape=name, n_samples=2**13),
            functools.partial(landscapes.smeared_energy_exact, landscape=name),
            functools.partial(landscapes.reference, name),
            functools.partial(landscapes.in_rare_region, landscape=name) if has_rare
            else None)
    return problems


PROBLEM_NAMES = ("muller_brown", "channel", "channel4d", "wells6d")


def _policy(name: str) -> Any:
    """The policy a name stands for: ``default``, a registered name, or
    ``NAME:param=value`` (one int or float parameter, e.g. ``explore:fraction=0.5``)."""
    from learners.acquisition import acquisition_by_name, default_acquisition

    if name == "default":
        return default_acquisition()
    base, _, param = name.partition(":")
    if not param:
        return acquisition_by_name(base)
    key, equals, value = param.partition("=")
    try:
        number: float | None = int(value) if value.lstrip("-").isdigit() else float(value)
    except ValueError:
        number = None
    if not (key and equals) or number is None:
        raise ValueError(f"policy {name!r}: write NAME:param=number, e.g. explore:fraction=0.5")
    try:
        return acquisition_by_name(base, **{key: number})
    except TypeError as error:
        raise ValueError(f"policy {name!r}: {error}") from None


def coarse_pool(problem: PoolProblem, segments: int, seed: int) -> np.ndarray:
    """(WALKERS * segments * frames_per_segment, d) frames of walkers run segment by segment."""
    frames = []
    for walker, start in enumerate(problem.walkers(WALKERS)):
        x = np.asarray(start, dtype=np.float64)
        for segment in range(segments):
            out = problem.segment(x, seed=10_000 * seed + 100 * walker + segment)
            frames.append(out["x"])
            x = out["x"][-1]
    return np.concatenate(frames)


@functools.cache
def _rare_reference(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The rare region's test set: the points of a dense reference set (a 150 x 150 grid
    in 2-D, 30,000 uniform points otherwise) inside it, with their exact values; empty for
    problems without one. The same for every seed and policy."""
    problem = _problems()[name]
    if problem.rare is None:
        return np.zeros((0, 1)), np.zeros(0)
    X, F = problem.reference(resolution=150, n_points=30_000)
    inside = problem.rare(X)
    return X[inside], F[inside]


def _rmse(mean: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((mean - truth) ** 2)))


def run_one(task: tuple[str, str, int, dict[str, Any]]) -> dict[str, Any]:
    """One (problem, policy, seed) run: its curves, discovery and calibration."""
    import torch

    torch.set_num_threads(1)
    from learners import Recalibrated, default_learner, pool_loop

    name, policy, seed, settings = task
    problem = _problems()[name]
    pool = coarse_pool(problem, settings["segments"], seed)
    rng = np.random.default_rng(seed)
    test_index = np.sort(rng.choice(len(pool), size=settings["test_pool"], replace=False))
    candidates = np.delete(pool, test_index, axis=0)
    X_pool, F_pool = pool[test_index], problem.exact(pool[test_index])
    X_ref, F_ref = problem.reference()
    keep = np.random.default_rng(0).choice(len(X_ref), size=min(settings["uniform_points"],
                                                                len(X_ref)), replace=False)
    X_uni, F_uni = X_ref[keep], F_ref[keep]
    X_rare, F_rare = _rare_reference(name)
    index_of = {row.tobytes(): i for i, row in enumerate(candidates)}

    def label(X: np.ndarray) -> np.ndarray:
        return np.array([problem.label(row, seed=7919 * seed + index_of[row.tobytes()])
                         ["energy"][0] for row in X])

    learner = Recalibrated(default_learner())
    curves: dict[str, list[float]] = {"pool": [], "uniform": [], "rare": []}
    # per round: (raw mean, raw sd, recalibrated sd) over every candidate, to score the
    # next batch before it is labelled
    predicted: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def on_round(_: int, curve: Any) -> None:
        curves["pool"].append(_rmse(learner.posterior(X_pool).mean, F_pool))
        curves["uniform"].append(_rmse(learner.posterior(X_uni).mean, F_uni))
        if len(X_rare):
            curves["rare"].append(_rmse(learner.posterior(X_rare).mean, F_rare))
        raw = learner.learner.posterior(candidates)
        scaled = learner.posterior(candidates)
        predicted.append((raw.mean, np.sqrt(raw.variance + raw.noise_variance),
                          np.sqrt(scaled.variance + scaled.noise_variance)))

    started = time.time()
    curve = pool_loop(candidates, label, learner, _policy(policy),
                      batch_size=settings["batch_size"], budget=settings["budget"],
                      rng=seed, on_round=on_round)
    seconds = time.time() - started
    # prospective coverage: batch r+1 scored by the model of round r
    position = {int(i): k for k, i in enumerate(curve.labelled)}
    inside_raw, inside_cal = [], []
    for r, batch in enumerate(curve.chosen[1:]):
        mean, sd_raw, sd_cal = predicted[r]
        y = curve.y[[position[int(i)] for i in batch]]
        inside_raw.append(np.abs(y - mean[batch]) <= 1.6449 * sd_raw[batch])
        inside_cal.append(np.abs(y - mean[batch]) <= 1.6449 * sd_cal[batch])
    half = len(inside_raw) // 2
    rare_labels = (problem.rare(candidates[curve.labelled]) if problem.rare is not None
                   else np.zeros(len(curve.labelled), bool))
    hits = np.flatnonzero(rare_labels)
    return {"problem": name, "policy": policy, "seed": seed, "n_labels": curve.n_labels,
            "pool_rmse": curves["pool"], "uniform_rmse": curves["uniform"],
            "rare_rmse": curves["rare"],
            "first_rare": int(hits[0]) + 1 if hits.size else None,
            "rare_labels": int(hits.size),
            "pool_rare_fraction": (float(np.mean(problem.rare(pool)))
                                   if problem.rare is not None else None),
            "coverage_90_raw": float(np.mean(np.concatenate(inside_raw[half:]))),
            "coverage_90_recalibrated": float(np.mean(np.concatenate(inside_cal[half:]))),
            "fit_seconds": curve.fit_seconds, "seconds": seconds, "pool_size": len(pool)}


def _sims_to(n_labels: list[int], errors: list[float], level: float, censored_at: int
             ) -> int:
    for n, error in zip(n_labels, errors, strict=True):
        if error <= level:
            return int(n)
    return censored_at


def _at_budget(n_labels: list[int], errors: list[float], n: int) -> float:
    return float(errors[n_labels.index(n)])


def summarize(runs: list[dict[str, Any]], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Records per problem, metric, policy and level (or budget); see the module docstring."""
    budget, batch = settings["budget"], settings["batch_size"]
    censored_at = budget + batch
    records: list[dict[str, Any]] = []
    for problem in dict.fromkeys(r["problem"] for r in runs):
        mine = [r for r in runs if r["problem"] == problem]
        policies = list(dict.fromkeys(r["policy"] for r in mine))
        by_policy = {p: [r for r in mine if r["policy"] == p] for p in policies}

        def add(metric: str, level: str, values: dict[str, list[float]],
                lower_is_better: bool = True, censor: float | None = None,
                problem: str = problem) -> None:
            medians = {p: float(np.median(v)) for p, v in values.items()}
            for p, v in values.items():
                base, value = medians.get("random"), medians[p]
                ratio = None
                if base is not None and value > 0 and base > 0:
                    ratio = base / value if lower_is_better else value / base
                records.append({"problem": problem, "metric": metric, "level": level,
                                "policy": p, "per_seed": v, "median": value,
                                "censored": censor is not None and value >= censor,
                                "ratio_vs_random": ratio})

        metrics = ["pool", "uniform"] + (["rare"] if mine[0]["rare_rmse"] else [])
        for metric in metrics:
            key = f"{metric}_rmse"
            random_final = float(np.median([r[key][-1] for r in by_policy["random"]]))
            for multiple in LEVELS:
                target = multiple * random_final
                add(metric, f"sims_to_{multiple:g}x_random_final ({target:.3g})",
                    {p: [_sims_to(r["n_labels"], r[key], target, censored_at) for r in rs]
                     for p, rs in by_policy.items()}, censor=censored_at)
            curve_n = mine[0]["n_labels"]  # the same label counts in every run
            for n in dict.fromkeys(curve_n[int(np.searchsorted(curve_n, k))]
                                   for k in (budget // 3, 2 * budget // 3, budget)):
                add(metric, f"rmse_at_{n}",
                    {p: [_at_budget(r["n_labels"], r[key], n) for r in rs]
                     for p, rs in by_policy.items()})
        if mine[0]["first_rare"] is not None or mine[0]["pool_rare_fraction"] is not None:
            add("discovery", "first_rare_label",
                {p: [censored_at if r["first_rare"] is None else r["first_rare"] for r in rs]
                 for p, rs in by_policy.items()}, censor=censored_at)
            add("discovery", "rare_labels",
                {p: [r["rare_labels"] for r in rs] for p, rs in by_policy.items()},
                lower_is_better=False)
        for kind in ("raw", "recalibrated"):
            add("calibration", f"coverage_90_{kind}",
                {p: [r[f"coverage_90_{kind}"] for r in rs] for p, rs in by_policy.items()},
                lower_is_better=False)
    return records


def run(mode: str, seeds: int | None = None, problems: tuple[str, ...] = PROBLEM_NAMES,
        policies: tuple[str, ...] | None = None, processes: int = 2,
        json_path: Path | None = None) -> dict[str, Any]:
    """Every (problem, policy, seed) run on a process pool; the result (see the module
    docstring), also written to ``json_path``: the runs first, then with the summary."""
    settings = dict(SETTINGS[mode])
    if seeds is not None:
        settings["seeds"] = seeds
    if policies is not None:
        settings["policies"] = tuple(policies)
    if "random" not in settings["policies"]:
        raise ValueError("the policies must include 'random' (every ratio is against it)")
    tasks = [(problem, policy, seed, settings) for problem in problems
             for seed in range(settings["seeds"]) for policy in settings["policies"]]
    started = time.time()
    runs: list[dict[str, Any]] = []
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        for result in pool.imap(run_one, tasks):
            runs.append(result)
            print(f"policies: {result['problem']} {result['policy']} seed {result['seed']}: "
                  f"pool RMSE {result['pool_rmse'][-1]:.3g}, first rare "
                  f"{result['first_rare']}, {result['seconds']:.0f} s "
                  f"({len(runs)}/{len(tasks)}, {time.time() - started:.0f} s)", flush=True)
    from learners.acquisition import default_acquisition

    result = {"benchmark": "policies", "mode": mode,
              "default_policy": repr(default_acquisition()),
              "settings": {k: list(v) if isinstance(v, tuple) else v
                           for k, v in settings.items()},
              "levels": list(LEVELS), "wall_seconds": time.time() - started,
              "records": None, "curves": runs}
    if json_path is not None:  # the runs are kept even if the summary fails
        _write(json_path, result)
    result["records"] = summarize(runs, settings)
    if json_path is not None:
        _write(json_path, result)
    return result


def _write(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")


def table(result: dict[str, Any]) -> str:
    lines = []
    for problem in dict.fromkeys(r["problem"] for r in result["records"]):
        rows = [r for r in result["records"] if r["problem"] == problem]
        policies = list(dict.fromkeys(r["policy"] for r in rows))
        lines.append(f"\n{problem}: median of {result['settings']['seeds']} seeds "
                     "(ratio vs random; '>' = censored)")
        lines.append(f"{'metric':12s} {'level':34s} " + " ".join(f"{p:>16s}" for p in policies))
        for key in dict.fromkeys((r["metric"], r["level"]) for r in rows):
            cells = []
            for p in policies:
                r = next(x for x in rows if (x["metric"], x["level"], x["policy"]) == (*key, p))
                ratio = "" if r["ratio_vs_random"] is None else f" ({r['ratio_vs_random']:.2f})"
                cells.append(f"{'>' if r['censored'] else ''}{r['median']:.3g}{ratio}")
            lines.append(f"{key[0]:12s} {key[1]:34s} " + " ".join(f"{c:>16s}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--mode", choices=sorted(SETTINGS), help="overrides --quick")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--problems", help=f"comma-separated subset of {PROBLEM_NAMES}")
    parser.add_argument("--policies", help="comma-separated policy names (with random)")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    mode = args.mode or ("quick" if args.quick else "full")
    problems = tuple(args.problems.split(",")) if args.problems else PROBLEM_NAMES
    unknown = [p for p in problems if p not in PROBLEM_NAMES]
    if unknown:
        parser.error(f"unknown problems {unknown}; known: {', '.join(PROBLEM_NAMES)}")
    policies = tuple(args.policies.split(",")) if args.policies else None
    if policies is not None:
        try:
            for name in policies:
                _policy(name)
        except ValueError as error:
            parser.error(str(error))
    result = run(mode, args.seeds, problems, policies, args.processes, args.json)
    print(table(result))
    print(f"wall {result['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
