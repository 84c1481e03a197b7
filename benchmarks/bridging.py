"""Scale-bridging benchmark on deca-alanine: learned backmapping and latent-space selection.

    python -m benchmarks.bridging [--quick] [--json PATH] [--processes 2]

Two studies, each over several seeds:

* **backmapping**: AA trajectories (amber14 + OBC2, 4 fs with hydrogen mass
  repartitioning) from the helix and the extended structure give (CG, AA) pairs: the CA
  beads of each frame and its atoms. The learned backmapper
  (``apps.backmap.LearnedBackmapper``) is fitted on the training trajectories' pairs;
  both it and the template method (``apps.backmap.Backmapper``: the helix template placed
  rigidly on the beads, then a restrained minimization) rebuild the atoms of held-out
  frames from independent trajectories. Reported per method: heavy-atom RMSD to the true
  frame, bond and angle deviations, clashes, minimization iterations to a stable start,
  and the fraction of short AA runs from the rebuilt structures that fail.
* **selection**: a pool of CG frames from walkers of the force-matched CG model
  (``apps.peptide.load_cg_model``, started extended) is labelled on demand by AA windows
  (:func:`apps.bridging.aa_from_cg`, with the seed's learned backmapper): the quantity is
  the window's helicity. Each method picks AA simulations in batches
  (``learners.pool_loop``); reported: AA simulations until the first rare (helical)
  result, and until the surrogate's error on a held-out set of pool frames reaches
  random's error at the full budget (a target that cannot be tuned). Methods: the
  DeepDriveMD rule (local outlier factor) and the MuMMI rule (farthest point) in the
  latent space of an autoencoder on CA distances (``apps.latent.LatentFeatures``,
  fitted on the pool), the same rules on hand-picked features (sin/cos of the CA
  pseudo-dihedrals), a GP's integrated variance in each space, and random.

Output: a table, and JSON records ``{"study", "method", "metric", "value", "baseline",
"ratio_vs_random", ...}`` (baseline = the template method for backmapping, random for
selection). Within a run, each pool frame's AA window runs once and its label is shared by
every method (:class:`Labels`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import numpy as np

SETTINGS: dict[str, dict[str, Any]] = {
    "quick": {"seeds": 3, "train_ps": 6.0, "test_ps": 1.0, "frame_ps": 0.2,
              "pool_walkers": 4, "pool_frames": 240, "pool_stride": 500, "test_frames": 12,
              "budget": 20, "batch_size": 4,
              "selection_methods": ("latent", "dihedrals", "random")},
    "full": {"seeds": 3, "train_ps": 20.0, "test_ps": 4.0, "frame_ps": 0.2,
             "pool_walkers": 4, "pool_frames": 480, "pool_stride": 500, "test_frames": 32,
             "budget": 48, "batch_size": 4,
             "selection_methods": ("latent", "latent_farthest", "latent_gp", "dihedrals",
                                   "dihedrals_farthest", "random")},
    # a smoke test of the whole pipeline (tests/test_bridging_benchmark.py), not a result
    "tiny": {"seeds": 1, "train_ps": 1.0, "test_ps": 0.4, "frame_ps": 0.2,
             "pool_walkers": 2, "pool_frames": 24, "pool_stride": 100, "test_frames": 4,
             "budget": 8, "batch_size": 4,
             "selection_methods": ("latent", "dihedrals", "random")},
}
# The rare state: a window in which, on average, at least half of the 8 inner residues are
# helical (the usual helix-coil cut). Fixed before the runs reported in docs/bridging.md,
# after a first quick run at 0.75 (>= 6 of 8) found it in 1 of 223 labelled frames.
RARE_HELICITY = 0.5
AA_STEPS_PER_PS = 250  # 4 fs steps
FAIL_CHECK_STEPS = 250  # 1 ps of AA MD from each rebuilt structure


def _set_threads() -> None:
    import torch

    torch.set_num_threads(1)


# -- backmapping study ---------------------------------------------------------------------
def _trajectory(task: tuple[str, int, float, float]) -> dict[str, np.ndarray]:
    """AA frames of one trajectory: (F, N, 3) positions and their CA beads (F, B, 3)."""
    _set_threads()
    from apps.peptide import EXTENDED_PDB, HELIX_PDB, aa_window, ca_map

    start, seed, length_ps, frame_ps = task
    structure = HELIX_PDB if start == "helix" else EXTENDED_PDB
    stride = int(round(frame_ps * AA_STEPS_PER_PS))
    out = aa_window(np.zeros(0), seed=seed, structure=structure,
                    n_steps=int(length_ps * AA_STEPS_PER_PS), stride=stride,
                    equilibration=stride)
    beads = ca_map()
    aa = np.asarray(out["aa_frames"][0]).reshape(-1, beads.n_atoms, 3)
    return {"aa": aa, "cg": np.stack([beads.positions(frame) for frame in aa])}


def _quality_task(task: tuple[str, np.ndarray, np.ndarray, dict[str, Any] | None, int]
                  ) -> dict[str, Any]:
    """Rebuild one held-out frame with one method, score it, and run 1 ps of AA MD."""
    _set_threads()
    from apps.backmap import backmap_quality
    from apps.bridging import backmapper_from
    from apps.peptide import HELIX_PDB, aa_window

    method, cg, truth, params, seed = task
    # unfitted, the learned backmapper is the template method (rigid helix + minimization)
    backmapper = backmapper_from(params if method == "learned" else None)
    rebuilt, info = backmapper.backmap(cg[None])
    quality = {key: float(np.asarray(value)[0])
               for key, value in backmap_quality(rebuilt, truth[None], HELIX_PDB).items()}
    # the structure the minimization started from: what the method itself predicted
    start = (backmapper.predict(cg[None])[0] if info[0]["method"] == "learned"
             else backmapper.template.place(cg)[None])
    raw = backmap_quality(start, truth[None], HELIX_PDB)
    quality["clashes_before_minimization"] = float(raw["clashes"][0])
    quality["heavy_atom_rmsd_before_minimization"] = float(raw["heavy_atom_rmsd"][0])
    quality["energy_before_minimization"] = float(info[0]["energy_before"])
    try:
        run = aa_window(rebuilt.reshape(-1), seed=seed, n_steps=FAIL_CHECK_STEPS,
                        equilibration=0, stride=FAIL_CHECK_STEPS)
        failed = not bool(np.all(np.isfinite(run["energy"])))
    except (FloatingPointError, ArithmeticError, RuntimeError, ValueError):
        # an OpenMM blow-up (NaN coordinates) is what a failed AA start looks like
        failed = True
    return {"method": method, **quality,
            "minimization_steps": float(info[0]["minimization_steps"]),
            "used_learned": float(info[0]["method"] == "learned"), "failed": float(failed)}


def backmapping_study(settings: dict[str, Any], seed: int, pool: Any
                      ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-frame quality of both methods on held-out frames; returns (rows, params)."""
    from apps.bridging import learned_backmapper

    train_tasks = [(start, 1000 * seed + k, settings["train_ps"], settings["frame_ps"])
                   for k, start in enumerate(("helix", "extended"))]
    test_tasks = [(start, 1000 * seed + 500 + k, settings["test_ps"], settings["frame_ps"])
                  for k, start in enumerate(("helix", "extended"))]
    trajectories = pool.map(_trajectory, train_tasks + test_tasks)
    train, test = trajectories[:2], trajectories[2:]
    started = time.time()
    learned = learned_backmapper(seed=seed).fit(np.concatenate([t["cg"] for t in train]),
                                                np.concatenate([t["aa"] for t in train]))
    fit_seconds = time.time() - started
    params = learned.to_params()
    cg = np.concatenate([t["cg"] for t in test])
    aa = np.concatenate([t["aa"] for t in test])
    tasks = [(method, cg[i], aa[i], params if method == "learned" else None,
              90_000 + 1000 * seed + i) for i in range(len(cg))
             for method in ("learned", "template")]
    rows = pool.map(_quality_task, tasks)
    return rows, {"params": params, "fit_seconds": fit_seconds,
                  "n_train_frames": int(sum(len(t["cg"]) for t in train)),
                  "n_test_frames": int(len(cg))}


# -- selection study -----------------------------------------------------------------------
def _label_task(task: tuple[int, np.ndarray, dict[str, Any], int]) -> tuple[int, float]:
    _set_threads()
    from apps.bridging import aa_from_cg

    index, row, params, seed = task
    out = aa_from_cg(row, seed=seed, backmapper=params)
    return index, float(out["helicity"][0])


class Labels:
    """AA helicity of pool frames, computed on demand on a process pool and kept."""

    def __init__(self, rows: np.ndarray, params: dict[str, Any], seed: int, pool: Any):
        self.rows = rows
        self.params = params
        self.seed = seed
        self.pool = pool
        self.values: dict[int, float] = {}

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        todo = [int(i) for i in indices if int(i) not in self.values]
        tasks = [(i, self.rows[i], self.params, 50_000 + 7919 * self.seed + i) for i in todo]
        for index, value in self.pool.map(_label_task, tasks):
            self.values[index] = value
        return np.array([self.values[int(i)] for i in indices])


def _method(name: str) -> tuple[str, Any, Any]:
    """(feature space, learner, acquisition) of a selection method."""
    from learners import ExactGP
    from learners.acquisition import FarthestPoint, IntegratedVariance, LocalOutlier, Random

    space = "latent" if name.startswith("latent") else (
        "dihedrals" if name.startswith("dihedrals") else "dihedrals")
    if name == "random":
        acquisition: Any = Random()
    elif name.endswith("_farthest"):
        acquisition = FarthestPoint()
    elif name.endswith("_gp"):
        acquisition = IntegratedVariance()
    else:
        acquisition = LocalOutlier()
    return space, ExactGP(), acquisition


def selection_study(settings: dict[str, Any], seed: int, params: dict[str, Any], pool: Any
                    ) -> dict[str, Any]:
    """Every selection method on one seed's CG pool; returns its curves and counts."""
    from apps.latent import LatentFeatures
    from apps.peptide import ca_dihedrals, cg_pool, load_cg_model
    from learners import pool_loop

    rng = np.random.default_rng(seed)
    per_walker = settings["pool_frames"] // settings["pool_walkers"]
    frames = cg_pool(load_cg_model(), n_walkers=settings["pool_walkers"],
                     n_steps=per_walker * settings["pool_stride"],
                     stride=settings["pool_stride"], seed=100 * seed)
    test_index = np.sort(rng.choice(len(frames), size=settings["test_frames"],
                                    replace=False))
    candidate = np.setdiff1d(np.arange(len(frames)), test_index)
    labels = Labels(frames, params, seed, pool)
    y_test = labels(test_index)
    angles = ca_dihedrals(frames)
    spaces = {"dihedrals": np.concatenate([np.sin(angles), np.cos(angles)], axis=1),
              "latent": LatentFeatures(frames.shape[1] // 6, seed=seed).refit(frames)(frames)}
    results: dict[str, Any] = {}
    for name in settings["selection_methods"]:
        space, learner, acquisition = _method(name)
        X = spaces[space]

        def label(X_chosen: np.ndarray, X: np.ndarray = X) -> np.ndarray:
            # pool_loop passes feature rows; find them in the candidate rows
            lookup = {X[i].tobytes(): i for i in candidate}
            return labels(np.array([lookup[row.tobytes()] for row in X_chosen]))

        started = time.time()
        curve = pool_loop(X[candidate], label, learner, acquisition,
                          batch_size=settings["batch_size"], budget=settings["budget"],
                          test=(X[test_index], y_test), rng=seed)
        chosen = candidate[curve.labelled]
        helical = np.flatnonzero(curve.y >= RARE_HELICITY)
        results[name] = {
            "n_labels": curve.n_labels, "rmse": curve.rmse,
            "first_rare": int(helical[0] + 1) if len(helical) else None,
            "rare_fraction": float(np.mean(curve.y >= RARE_HELICITY)),
            "chosen": chosen.tolist(), "helicity": curve.y.tolist(),
            "seconds": time.time() - started}
    labelled = np.array(sorted(labels.values))
    pool_values = np.array([labels.values[i] for i in labelled])
    results["_pool"] = {"n_frames": int(len(frames)), "aa_windows": int(len(labelled)),
                        "test_rare_fraction": float(np.mean(y_test >= RARE_HELICITY)),
                        "labelled_rare_fraction": float(np.mean(pool_values >= RARE_HELICITY))}
    return results


# -- summary -------------------------------------------------------------------------------
def _sims_to(n_labels: list[int], rmse: list[float], target: float) -> int | None:
    for n, error in zip(n_labels, rmse, strict=True):
        if error <= target:
            return int(n)
    return None


def _median_censored(values: list[int | None], censor: int) -> tuple[float, bool]:
    """Median where None (never reached) counts as more than ``censor``."""
    filled = [censor + 1 if v is None else v for v in values]
    median = float(np.median(filled))
    return median, median > censor


def summarize(backmap_rows: list[list[dict[str, Any]]], selections: list[dict[str, Any]],
              settings: dict[str, Any]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    metrics = ("heavy_atom_rmsd", "bond_deviation", "angle_deviation", "clashes",
               "minimization_steps", "failed", "heavy_atom_rmsd_before_minimization",
               "clashes_before_minimization", "energy_before_minimization")
    per_method: dict[str, dict[str, list[float]]] = {}
    for seed_rows in backmap_rows:
        for method in ("learned", "template"):
            rows = [r for r in seed_rows if r["method"] == method]
            for metric in metrics:
                per_method.setdefault(method, {}).setdefault(metric, []).append(
                    float(np.mean([r[metric] for r in rows])))
    for method, values in per_method.items():
        for metric in metrics:
            value = float(np.median(values[metric]))
            baseline = float(np.median(per_method["template"][metric]))
            records.append({"study": "backmapping", "method": method,
                            "metric": metric if metric != "failed" else "failed_fraction",
                            "value": value, "baseline": baseline,
                            "ratio_vs_template": (baseline / value if value > 0 and baseline > 0
                                                  else None),
                            "ratio_vs_random": None, "per_seed": values[metric]})
    budget = settings["budget"]
    target = float(np.median([s["random"]["rmse"][-1] for s in selections]))
    random_rare, _ = _median_censored([s["random"]["first_rare"] for s in selections], budget)
    random_target, _ = _median_censored(
        [_sims_to(s["random"]["n_labels"], s["random"]["rmse"], target) for s in selections],
        budget)
    for name in settings["selection_methods"]:
        rare = [s[name]["first_rare"] for s in selections]
        to_target = [_sims_to(s[name]["n_labels"], s[name]["rmse"], target)
                     for s in selections]
        for metric, values, baseline in (("sims_to_rare_state", rare, random_rare),
                                         ("sims_to_random_final_error", to_target,
                                          random_target)):
            value, censored = _median_censored(values, budget)
            records.append({"study": "selection", "method": name, "metric": metric,
                            "value": value, "censored": censored, "baseline": baseline,
                            "ratio_vs_random": baseline / value, "per_seed": values,
                            "target_rmse": target if "error" in metric else None})
        finals = [s[name]["rmse"][-1] for s in selections]
        records.append({"study": "selection", "method": name, "metric": "final_rmse",
                        "value": float(np.median(finals)), "baseline": target,
                        "ratio_vs_random": target / float(np.median(finals)),
                        "per_seed": finals})
    return records


def run(mode: str, seeds: int | None, processes: int) -> dict[str, Any]:
    settings = dict(SETTINGS[mode])
    if seeds is not None:
        settings["seeds"] = seeds
    started = time.time()
    backmap_rows, selections, fits = [], [], []
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        for seed in range(settings["seeds"]):
            rows, fit = backmapping_study(settings, seed, pool)
            backmap_rows.append(rows)
            fits.append({k: v for k, v in fit.items() if k != "params"})
            print(f"bridging: seed {seed} backmapping done, {time.time() - started:.0f} s",
                  flush=True)
            selections.append(selection_study(settings, seed, fit["params"], pool))
            print(f"bridging: seed {seed} selection done, {time.time() - started:.0f} s",
                  flush=True)
    return {"benchmark": "bridging", "mode": mode,
            "settings": {k: list(v) if isinstance(v, tuple) else v
                         for k, v in settings.items()},
            "rare_helicity": RARE_HELICITY, "wall_seconds": time.time() - started,
            "backmapper_fits": fits,
            "pools": [s["_pool"] for s in selections],
            "curves": [{name: {"n_labels": s[name]["n_labels"], "rmse": s[name]["rmse"],
                               "first_rare": s[name]["first_rare"],
                               "helicity": s[name]["helicity"]}
                        for name in settings["selection_methods"]} for s in selections],
            "records": summarize(backmap_rows, selections, settings)}


def table(result: dict[str, Any]) -> str:
    lines = [f"{'study':12s} {'method':20s} {'metric':28s} {'value':>9s} {'baseline':>9s} "
             f"{'ratio':>7s}"]
    for r in result["records"]:
        ratio = r.get("ratio_vs_random") if r["study"] == "selection" else r.get(
            "ratio_vs_template")
        value = (">" if r.get("censored") else "") + f"{r['value']:.3g}"
        lines.append(f"{r['study']:12s} {r['method']:20s} {r['metric']:28s} {value:>9s} "
                     f"{r['baseline']:9.3g} {'-' if ratio is None else f'{ratio:.2f}':>7s}")
    lines.append("ratio: baseline / value (>1 is better than the template method or random); "
                 "'>' = the median seed never reached it within the budget")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--mode", choices=sorted(SETTINGS), help="overrides --quick")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    _set_threads()
    mode = args.mode or ("quick" if args.quick else "full")
    result = run(mode, args.seeds, args.processes)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    print(f"wall {result['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
