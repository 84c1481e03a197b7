"""FES benchmark: AA umbrella windows to a free-energy surface of alanine dipeptide.

The reference is ``apps/data/alanine_fes_reference.json`` (MBAR over a 24 x 24 grid
of 10 ps windows, ``python -m benchmarks.fes_reference``). The error of a reconstruction
is its RMSE (kJ/mol) against the reference on the grid bins with reference F <= 20 kJ/mol,
after removing the mean difference there (F is defined up to a constant).

Policies, all with windows of the same length (``apps.fes.FES_WINDOW``: 4 ps after 1 ps
of equilibration, k = 200 kJ/(mol rad^2)):

- ``learner``: a ``learners.GradientGP`` (periodic, on the windows' mean forces) chooses
  batches from a pool of CG frames by ``IntegratedVariance`` (pool-weighted, conditioned
  on the batch's pending windows);
- ``learner_low``: the same with ``IntegratedVariance(below=...)``: variance integrated
  only over pool points whose predicted F is within ``below`` of the lowest;
- ``random``: random CG frames, the same GP;
- ``farthest``: farthest-point CG frames in (sin, cos) of (phi, psi) (MuMMI's rule), the
  same GP;
- ``grid``: the classical baseline, a uniform n x n grid of windows (n = 4, 6, 8, 12, 24:
  the first 4 ps of the reference windows, so at equal window length) integrated by
  least squares (``benchmarks.fes_reference.fourier_fes``); ``grid_gp`` is the same
  windows through the GradientGP.

The pool: CG frames of the prior CG model (four Langevin walkers, the alanine example's
5-bead model with no dihedral correction, so it visits the whole torus), each backmapped
(template + restrained minimization) and run once through the AA window, so policies
differ only in which frames they choose (look-ups). Per seed every policy starts from the
same ``batch`` random frames. Recorded per policy (median over seeds): windows to reach
4.184 kJ/mol (1 kcal/mol) and 2 kJ/mol (a run that never does counts as ``budget +
batch`` and is flagged ``censored``), ratios against the grid and random, the basin free
energies against the reference, the 90% interval coverage on the region's grid bins at the
end (intervals of F minus its region mean; also with the reference's MBAR uncertainty
added, and against the least-squares reconstruction of the same reference windows), the
prospective calibration of the predicted gradients (each batch's measured mean forces
against the model fitted before it; the last 10 batches), AA core-seconds, and the CG
model's own FES
error when its dihedral correction is force-matched to the bead forces of the windows
chosen so far (learner vs random).

Usage::

    python -m benchmarks.fes [--quick] [--json PATH] [--seeds N] [--processes 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from apps.fes import aligned_rmse

__all__ = ["aligned_rmse", "relative_coverage", "windows_to"]

TARGETS = {"windows_to_1kcal": 4.184, "windows_to_2kj": 2.0}
SETTINGS = {
    "full": {"pool": 400, "budget": 120, "batch": 4, "seeds": 5, "below": 30.0,
             "pools": ["prior", "fitted"]},
    "quick": {"pool": 160, "budget": 48, "batch": 4, "seeds": 3, "below": 30.0,
              "pools": ["prior"]},
}
GRID_SIZES = (4, 6, 8, 12, 24)
FITTED_FROM = 40  # prior-pool windows the "fitted" CG pool's model is force-matched to
CG_ORDER = 4  # Fourier order of the CG model's dihedral correction in the feedback study


def relative_coverage(posterior: Any, reference: np.ndarray, level: float = 0.9,
                      extra_variance: np.ndarray | float = 0.0) -> float:
    """Fraction of points whose reference value lies in the central ``level`` interval of
    ``F - mean(F)`` over the points (posterior over exactly those points); with
    ``extra_variance`` (e.g. the reference's own squared uncertainty) added to each
    point's variance."""
    from scipy.stats import norm

    n = posterior.n
    C = posterior.covariance(np.arange(n))
    row_mean = C.mean(axis=1)
    variance = np.diag(C) - 2 * row_mean + C.mean() + extra_variance
    estimate = posterior.mean - posterior.mean.mean()
    truth = reference - reference.mean()
    z = np.abs(estimate - truth) / np.sqrt(np.maximum(variance, 1e-12))
    return float(np.mean(z <= norm.ppf(0.5 + level / 2)))


def windows_to(curve: list[tuple[int, float]], target: float) -> int | None:
    """First window count whose error is <= target (None if never)."""
    for count, error in curve:
        if error <= target:
            return count
    return None


# -- the pool ----------------------------------------------------------------------------
def _pool_window(task: tuple[int, np.ndarray, int]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from apps.fes import alanine_backmapper, alanine_beads, fes_window

    index, row, seed = task
    beads = alanine_beads()
    backmapper = alanine_backmapper()
    started = time.time()
    aa = backmapper(row)
    out = fes_window(aa.ravel(), seed=seed, bead_weights=beads.position_weights,
                     bead_force_weights=beads.force_weights)
    return {"index": index, "window": out["gradient_window"][0],
            "centre": out["restraint_centre"][0],
            "bead_positions": out["bead_positions"][0].astype(np.float32),
            "bead_forces": out["bead_forces"][0].astype(np.float32),
            "seconds": time.time() - started}


def _fitted_cg_frames(prior_pool: dict[str, np.ndarray], n_frames: int, seed: int
                      ) -> np.ndarray:
    """Frames of a CG model force-matched to ``FITTED_FROM`` random windows of the prior
    pool: four walkers started in four basins (alpha_R, PPII, C5, alpha_L), so the pool
    follows where a refined CG model goes, as in a campaign."""
    from apps import cg
    from apps.fes import alanine_backmapper, alanine_beads

    beads = alanine_beads()
    rng = np.random.default_rng(seed + 1)
    fit_rows = rng.choice(len(prior_pool["centre"]), size=FITTED_FROM, replace=False)
    positions = prior_pool["bead_positions"][fit_rows].reshape(-1, beads.n_beads, 3)
    forces = prior_pool["bead_forces"][fit_rows].reshape(-1, beads.n_beads, 3)
    backmapper = alanine_backmapper()
    starts = [beads.positions(backmapper.template_at(np.radians(angles)))
              for angles in ((-70, -30), (-70, 145), (-150, 155), (60, 35))]
    prior = cg.chain_force_field(beads.masses, starts[0], order=CG_ORDER, names=beads.names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = cg.fit_force_matching(prior, positions.astype(np.float64),
                                       forces.astype(np.float64))
    per_walker = -(-n_frames // 4)
    rows = []
    for w, start in enumerate(starts):
        walker = cg.initial_walkers(start, beads.masses, 1, seed=seed * 10 + w)[0]
        out = cg.langevin(walker, seed=seed * 100 + w, force_field=fitted.to_params(),
                          n_steps=2000 * per_walker, stride=2000)
        rows.append(out["x"])
    return np.concatenate(rows)[:n_frames]


def build_pool(n_frames: int, seed: int, processes: int, cache: Path,
               cg_model: str = "prior") -> dict[str, np.ndarray]:
    """CG frames and one AA window each (cached per settings).

    ``cg_model="prior"``: frames of the prior CG model (no dihedral correction: the whole
    torus); ``"fitted"``: frames of the CG model force-matched to windows of the prior
    pool (:func:`_fitted_cg_frames`; the prior pool is built first)."""
    from benchmarks.molecular import _cg_frames, _load_example

    cache.mkdir(parents=True, exist_ok=True)
    suffix = "" if cg_model == "prior" else f"_{cg_model}"
    path = cache / f"pool_{n_frames}_{seed}{suffix}.npz"
    if path.exists():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    if cg_model == "prior":
        frames = _cg_frames(_load_example(), n_frames, seed)
    else:
        frames = _fitted_cg_frames(build_pool(n_frames, seed, processes, cache), n_frames,
                                   seed)
    base = 70_000 if cg_model == "prior" else 570_000
    tasks = [(i, frames[i, :15], base + 13 * i + seed) for i in range(len(frames))]
    started = time.time()
    results: list[dict[str, Any]] = [{}] * len(tasks)
    print(f"fes: {len(tasks)} {cg_model} pool windows on {processes} processes", flush=True)
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        for done, result in enumerate(pool.imap_unordered(_pool_window, tasks), 1):
            results[result["index"]] = result
            if done % 40 == 0 or done == len(tasks):
                print(f"  {done}/{len(tasks)} windows, {time.time() - started:.0f} s",
                      flush=True)
    data = {key: np.stack([r[key] for r in results]) for key in
            ("window", "centre", "bead_positions", "bead_forces", "seconds")}
    data["frames"] = frames
    np.savez(path, **data)
    return data


# -- one policy on one seed ----------------------------------------------------------------
def _embed(angles: np.ndarray) -> np.ndarray:
    return np.hstack([np.sin(angles), np.cos(angles)])


def run_policy(policy: str, pool: dict[str, np.ndarray], reference: dict[str, Any],
               settings: dict[str, Any], seed: int, cg_every: int = 0) -> dict[str, Any]:
    """Learning curve of one policy: ``{"curve": [(windows, rmse)], "final": {...}}``."""
    from apps.fes import reference_grid
    from learners import GradientGP
    from learners.acquisition import FarthestPoint, IntegratedVariance
    from learners.posterior import IndependentPosterior

    rng = np.random.default_rng(seed)
    centres = pool["centre"]
    windows = pool["window"]
    n = len(centres)
    batch, budget = settings["batch"], settings["budget"]
    grid_points, fes_ref, region = reference_grid(reference)
    chosen = list(rng.choice(n, size=batch, replace=False))
    curve, cg_curve = [], []
    gradient_z: list[np.ndarray] = []  # prospective: each batch against the model before it
    learner = GradientGP()
    acquisition = {"learner": IntegratedVariance(),
                   "learner_low": IntegratedVariance(below=settings["below"])}.get(policy)
    while True:
        learner.fit(centres[chosen], windows[chosen])
        estimate = learner.posterior(grid_points).mean
        curve.append((len(chosen), aligned_rmse(estimate, fes_ref, region)))
        if cg_every and (len(curve) % cg_every == 0 or len(chosen) >= budget):
            cg_curve.append((len(chosen), _cg_fes_error(pool, chosen, grid_points, fes_ref,
                                                        region)))
        if len(chosen) >= budget:
            break
        free = np.setdiff1d(np.arange(n), chosen)
        k = min(batch, budget - len(chosen))
        if policy == "random":
            picks = list(rng.choice(free, size=k, replace=False))
        elif policy == "farthest":
            embedded = _embed(centres)
            posterior = IndependentPosterior(np.zeros(n), np.ones(n), X=embedded)
            picks = [int(p) for p in FarthestPoint().select(posterior, k, np.array(chosen), rng)]
        else:
            posterior = learner.posterior(centres)
            picks = [int(p) for p in acquisition.select(posterior, k, np.array(chosen), rng)]
        predicted, measured = learner.observation_posterior(centres[picks], windows[picks])
        gradient_z.append((measured - predicted.mean) / np.sqrt(predicted.variance))
        chosen.extend(picks)
    final = learner.posterior(grid_points[region])
    late = np.concatenate(gradient_z[-10:]) if gradient_z else np.zeros(0)
    fourier = reference["fes_fourier"].ravel()[region]
    basins = _basin_errors(learner.posterior(grid_points).mean, reference)
    reference_sd = reference["fes_uncertainty"].ravel()[region]
    return {"curve": curve, "cg_curve": cg_curve, "chosen": [int(c) for c in chosen],
            "coverage_90": relative_coverage(final, fes_ref[region]),
            "coverage_90_with_reference_error": relative_coverage(
                final, fes_ref[region], extra_variance=reference_sd**2),
            "coverage_90_vs_least_squares_reference": relative_coverage(final, fourier),
            "gradient_coverage_90_late": float(np.mean(np.abs(late) <= 1.6448536269514722)),
            "gradient_z_std_late": float(np.std(late)),
            "basin_max_error": basins["max_error"], "basins": basins["basins"],
            "core_seconds": float(pool["seconds"][chosen].sum())}


def _basin_errors(estimate: np.ndarray, reference: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.fes_reference import basin_table

    n = len(reference["centres"])
    mine = basin_table(estimate.reshape(n, n) - estimate.min())
    ref = reference["basins"]
    errors = {name: mine[name]["F"] - ref[name]["F"] for name in ref
              if ref[name]["local_minimum"]}
    return {"basins": {name: {"F": mine[name]["F"], "reference_F": ref[name]["F"],
                              "error": errors[name]} for name in errors},
            "max_error": float(max(abs(e) for e in errors.values()))}


def _cg_fes_error(pool: dict[str, np.ndarray], chosen: list[int], grid_points: np.ndarray,
                  fes_ref: np.ndarray, region: np.ndarray) -> float:
    """The CG model's FES error after force matching to the chosen windows' bead forces."""
    from apps.fes import cg_model_fes

    fes = cg_model_fes(pool["bead_positions"][chosen], pool["bead_forces"][chosen],
                       grid_points, CG_ORDER)
    return aligned_rmse(fes, fes_ref, region)


def grid_baseline(reference: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """Uniform n x n sub-grids of the reference windows' first 4 ps: least squares
    (``grid``) and the GradientGP (``grid_gp``) errors against the reference."""
    from apps.fes import reference_grid
    from benchmarks.fes_reference import fourier_fes
    from learners import GradientGP

    points, fes_ref, region = reference_grid(reference)
    full = len(reference["centres"])
    w = reference["windows"]
    out: dict[str, list[tuple[int, float]]] = {"grid": [], "grid_gp": []}
    for size in GRID_SIZES:
        step = full // size
        index_1d = np.arange(step // 2, full, step)[:size]
        rows = np.array([i * full + j for i in index_1d for j in index_1d])
        where, force, stderr = (w["short_location"][rows], w["short_mean_force"][rows],
                                w["short_stderr"][rows])
        order = min((size - 1) // 2, 8)
        ls = fourier_fes(where, force, order, points, weights=1 / np.maximum(stderr, 1e-3) ** 2)
        out["grid"].append((len(rows), aligned_rmse(ls, fes_ref, region)))
        gp = GradientGP().fit(w["centre"][rows], np.hstack([force, stderr, where]))
        out["grid_gp"].append((len(rows), aligned_rmse(gp.posterior(points).mean, fes_ref,
                                                       region)))
    return out


def _count(curve: list[tuple[int, float]], target: float, censor: int) -> tuple[int, bool]:
    reached = windows_to(curve, target)
    return (censor, True) if reached is None else (reached, False)


POLICIES = ("learner", "learner_low", "random", "farthest")


def _policy_job(job: tuple[str, str, int, dict[str, Any], str]) -> dict[str, Any]:
    """One (pool, policy, seed) run in a worker process (the pool is read from the cache)."""
    import torch

    torch.set_num_threads(1)
    from benchmarks.fes_reference import load_reference

    pool_name, policy, seed, settings, cache = job
    pool = build_pool(settings["pool"], 0, 1, Path(cache), cg_model=pool_name)
    cg_every = 3 if policy in ("learner", "random") else 0
    return run_policy(policy, pool, load_reference(), settings, seed, cg_every=cg_every)


def _summarize(per_policy: dict[str, list[dict[str, Any]]], censor: int, pool_name: str
               ) -> list[dict[str, Any]]:
    entries = []
    for policy, results in per_policy.items():
        entry: dict[str, Any] = {"policy": policy, "pool": pool_name}
        for key, target in TARGETS.items():
            counts = [_count(r["curve"], target, censor) for r in results]
            entry[key] = float(np.median([c for c, _ in counts]))
            entry[f"{key}_per_seed"] = [c for c, _ in counts]
            entry[f"{key}_censored"] = [bool(flag) for _, flag in counts]
        entry["final_rmse_median"] = float(np.median([r["curve"][-1][1] for r in results]))
        entry["coverage_90_median"] = float(np.median([r["coverage_90"] for r in results]))
        entry["coverage_90_per_seed"] = [r["coverage_90"] for r in results]
        for key in ("coverage_90_with_reference_error", "coverage_90_vs_least_squares_reference",
                    "gradient_coverage_90_late", "gradient_z_std_late"):
            entry[f"{key}_median"] = float(np.median([r[key] for r in results]))
        entry["basin_max_error_median"] = float(np.median([r["basin_max_error"]
                                                           for r in results]))
        entry["aa_core_seconds_median"] = float(np.median([r["core_seconds"] for r in results]))
        entry["curves"] = [r["curve"] for r in results]
        if results[0]["cg_curve"]:
            entry["cg_fes_curves"] = [r["cg_curve"] for r in results]
            entry["cg_fes_final_median"] = float(np.median([r["cg_curve"][-1][1]
                                                            for r in results]))
        entry["basins_seed0"] = results[0]["basins"]
        entries.append(entry)
    return entries


def run(mode: str, seeds: int | None, processes: int, cache: Path) -> dict[str, Any]:
    from benchmarks.fes_reference import load_reference

    settings = dict(SETTINGS[mode])
    if seeds is not None:
        settings["seeds"] = seeds
    started = time.time()
    reference = load_reference()
    censor = settings["budget"] + settings["batch"]
    records: list[dict[str, Any]] = []
    pools: dict[str, Any] = {}
    for pool_name in settings["pools"]:
        building = time.time()
        pool = build_pool(settings["pool"], 0, processes, cache, cg_model=pool_name)
        pools[pool_name] = {"build_seconds": time.time() - building,
                            "core_seconds": float(pool["seconds"].sum()),
                            "window_seconds_median": float(np.median(pool["seconds"])),
                            "frames": int(len(pool["centre"]))}
        per_policy: dict[str, list[dict[str, Any]]] = {p: [] for p in POLICIES}
        jobs = [(pool_name, policy, seed, settings, str(cache)) for policy in POLICIES
                for seed in range(settings["seeds"])]
        with multiprocessing.get_context("spawn").Pool(processes) as workers:
            for (_, policy, seed, _, _), result in zip(
                    jobs, workers.imap(_policy_job, jobs), strict=True):
                per_policy[policy].append(result)
                print(f"  {pool_name} pool, {policy:12s} seed {seed}: final rmse "
                      f"{result['curve'][-1][1]:.2f} kJ/mol at {result['curve'][-1][0]} "
                      f"windows, coverage {result['coverage_90']:.2f}, basins max error "
                      f"{result['basin_max_error']:.2f}", flush=True)
        records.extend(_summarize(per_policy, censor, pool_name))
    for name, curve in grid_baseline(reference).items():
        entry: dict[str, Any] = {"policy": name, "pool": "reference grid", "curve": curve}
        for key, target in TARGETS.items():
            count, censored = _count(curve, target, GRID_SIZES[-1] ** 2 + 1)
            entry[key] = float(count)
            entry[f"{key}_censored"] = censored
        entry["final_rmse_median"] = float(curve[-1][1])
        records.append(entry)
    grid = next(r for r in records if r["policy"] == "grid")
    for entry in records:
        random = next((r for r in records if r["policy"] == "random"
                       and r["pool"] == entry["pool"]), None)
        entry["ratio_vs_grid"] = float(grid["windows_to_1kcal"] / entry["windows_to_1kcal"])
        for key, label in (("windows_to_1kcal", "ratio_vs_random"),
                           ("windows_to_2kj", "ratio_vs_random_2kj")):
            entry[label] = (None if random is None else
                            float(random[key] / entry[key]))
    return {"mode": mode, "settings": settings, "pools": pools,
            "wall_seconds": time.time() - started, "grid_sizes": list(GRID_SIZES),
            "targets_kj": TARGETS,
            "reference": {"path": "apps/data/alanine_fes_reference.json",
                          "mbar_vs_fourier_rmse_region":
                              reference["mbar_vs_fourier_rmse_region"]},
            "records": records}


def _table(result: dict[str, Any]) -> str:
    def flag(r: dict[str, Any], key: str) -> str:
        censored = r.get(f"{key}_censored")
        censored = any(censored) if isinstance(censored, list) else censored
        return (">" if censored else "") + f"{r[key]:.0f}"

    def number(value: Any, width: int, digits: int = 2) -> str:
        return f"{'-':>{width}s}" if value is None else f"{value:{width}.{digits}f}"

    lines = [f"{'pool':15s} {'policy':12s} {'to 4.2 kJ':>10s} {'to 2 kJ':>8s} {'vs grid':>8s} "
             f"{'vs random':>9s} {'final':>6s} {'cov90':>6s} {'basins':>7s} {'CG FES':>7s}"]
    for r in result["records"]:
        lines.append(f"{r['pool']:15s} {r['policy']:12s} {flag(r, 'windows_to_1kcal'):>10s} "
                     f"{flag(r, 'windows_to_2kj'):>8s} {number(r['ratio_vs_grid'], 8)} "
                     f"{number(r['ratio_vs_random'], 9)} {number(r['final_rmse_median'], 6)} "
                     f"{number(r.get('coverage_90_median'), 6)} "
                     f"{number(r.get('basin_max_error_median'), 7)} "
                     f"{number(r.get('cg_fes_final_median'), 7, 1)}")
    lines.append("windows to a target: median over seeds ('>' some seed never reached it); "
                 "final: RMSE kJ/mol at the budget; basins: largest basin F error kJ/mol; "
                 "CG FES: the force-matched CG model's FES RMSE at the budget")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("runs/fes_benchmark_cache"))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    result = run("quick" if args.quick else "full", args.seeds, args.processes, args.cache)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(_table(result))
    pools = ", ".join(f"{name} pool {p['build_seconds']:.0f} s"
                      for name, p in result["pools"].items())
    print(f"wall {result['wall_seconds']:.0f} s ({pools})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
