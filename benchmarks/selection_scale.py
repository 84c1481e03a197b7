"""Selection and training at scale: a batch from 10^6 candidates, SVGP and ensemble fit times.

* Selection: greedy :class:`~learners.acquisition.MaxVariance` batch of k (``--picks``,
  default 100; the issue's goal is 4,096) from 10^6 candidates with 10 features, given an
  exact GP on 2,000 training points. Candidates and
  training points come from the same 10-D Gaussian mixture (a coarse scale's samples are
  clustered, not uniform). The exact GP's hyperparameters are fitted on a 400-point subset
  and then conditioned on all 2,000 points (``load_state_dict``), so the fit is not
  timed. Timed: ``learner.posterior(candidates)`` (lazy) plus ``select``. The batch carries
  the prefilter's certificate (``certified``: provably the exact greedy batch) or not.
  Goal: at most 10 s and bounded memory (peak resident memory is reported). On a shared
  machine the wall time depends on the load: the CPU time of the process (all threads)
  and the 1-minute load average are reported with it.
* Quality of the prefiltered batch (``--quality``): on a pool small enough for the exact
  greedy over all of it (40,000 candidates, 500 training points), the summed posterior
  variance over the pool after conditioning on the picks, prefiltered batch vs exact
  greedy batch (ratio >= 1; 1 is no loss), with the prefilter at the same share of the
  batch as in the 4,096-pick run (k / prefilter = 0.41).
* SVGP: :class:`~learners.sparse_gp.SparseGP` fit on 20,000 points (6 features).
* Deep ensemble: :class:`~learners.ensemble.DeepEnsemble` fit on 5,000 points (6 features).

Usage::

    python -m benchmarks.selection_scale [--json PATH] [--candidates N] [--train M]
                                         [--picks K] [--quality] [--selection-only]
                                         [--profile PATH]

With ``--json`` an existing file is updated: the selection lands under
``selection_k<K>`` (and under ``selection`` for the default k=100), other sections stay.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learners import DeepEnsemble, ExactGP, SparseGP
from learners.acquisition import Fantasies, MaxVariance

logger = logging.getLogger("benchmarks.selection_scale")


def _mixture(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    centers = np.random.default_rng(123).uniform(-2.0, 2.0, size=(5, d))
    labels = rng.integers(0, len(centers), size=n)
    return centers[labels] + 0.7 * rng.standard_normal((n, d))


def _truth(X: np.ndarray) -> np.ndarray:
    return np.sin(X).sum(axis=1) + 0.1 * (X**2).sum(axis=1)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _model(n_train: int, d: int, rng: np.random.Generator, seed: int) -> ExactGP:
    """An exact GP on ``n_train`` mixture points, hyperparameters fitted on 400 of them."""
    X_train = _mixture(n_train, d, rng)
    y_train = _truth(X_train)
    subset = min(400, n_train)
    state = ExactGP(restarts=0, iterations=50, seed=seed).fit(
        X_train[:subset], y_train[:subset]).state_dict()
    # Same hyperparameters, conditioned on all training points (standardization kept).
    state["x_train"], state["y_train"] = X_train, y_train
    return ExactGP().load_state_dict(state)


def selection(n_candidates: int = 10**6, n_train: int = 2000, d: int = 10, k: int = 100,
              seed: int = 0, profile: Path | None = None) -> dict[str, Any]:
    """Time a greedy max-variance batch of ``k`` from ``n_candidates`` (see module doc);
    with ``profile``, under cProfile on the process CPU clock, top functions written there."""
    rng = np.random.default_rng(seed)
    gp = _model(n_train, d, rng, seed)
    candidates = _mixture(n_candidates, d, rng)
    rss_before = _peak_rss_mb()
    policy = MaxVariance()
    profiler = cProfile.Profile(time.process_time) if profile else None
    started, cpu_started = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    posterior = gp.posterior(candidates)
    chosen = policy.select(posterior, k, np.empty(0, dtype=np.int64), rng)
    seconds = time.perf_counter() - started
    if profiler:
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumtime").print_stats(25)
        profile.write_text(text.getvalue())
    return {"n_candidates": n_candidates, "n_train": n_train, "features": d, "k": k,
            "seconds": seconds, "cpu_seconds": time.process_time() - cpu_started,
            "certified": bool(policy.certified_), "profiled": profile is not None,
            "n_scored": int(policy.n_scored_), "n_chosen": int(len(chosen)),
            "distinct": int(len(set(chosen.tolist()))),
            "peak_rss_mb": _peak_rss_mb(), "peak_rss_growth_mb": _peak_rss_mb() - rss_before,
            "candidates_mb": candidates.nbytes / 2**20}


def quality(n_candidates: int = 40_000, n_train: int = 500, d: int = 10, k: int = 512,
            prefilter: int = 1250, seed: int = 0) -> dict[str, Any]:
    """Summed pool variance after a prefiltered batch vs after the exact greedy batch."""
    rng = np.random.default_rng(seed)
    gp = _model(n_train, d, rng, seed)
    posterior = gp.posterior(_mixture(n_candidates, d, rng))
    none = np.empty(0, dtype=np.int64)
    batches, seconds = {}, {}
    for name, policy in (("exact", MaxVariance(exact_limit=n_candidates)),
                         ("prefiltered", MaxVariance(prefilter=prefilter,
                                                     exact_limit=n_candidates - 1))):
        started = time.perf_counter()
        batches[name] = policy.select(posterior, k, none, rng)
        seconds[name] = time.perf_counter() - started
    before = float(posterior.variance.sum())
    after = {}
    for name, batch in batches.items():
        fantasies = Fantasies(posterior, k)
        fantasies.add_many(batch)
        after[name] = float(fantasies.variance.sum())
    return {"n_candidates": n_candidates, "n_train": n_train, "features": d, "k": k,
            "prefilter": prefilter, "summed_variance_before": before,
            "summed_variance_exact": after["exact"],
            "summed_variance_prefiltered": after["prefiltered"],
            "ratio_prefiltered_to_exact": after["prefiltered"] / after["exact"],
            "reduction_share": (before - after["prefiltered"]) / (before - after["exact"]),
            "shared_picks": len(set(batches["exact"].tolist())
                                & set(batches["prefiltered"].tolist())),
            "seconds_exact": seconds["exact"], "seconds_prefiltered": seconds["prefiltered"]}


def svgp_fit(n: int = 20_000, d: int = 6, seed: int = 0, **params: Any) -> dict[str, Any]:
    """Time a :class:`SparseGP` fit on ``n`` points; test RMSE on 2,000 fresh points."""
    rng = np.random.default_rng(seed)
    X, X_test = _mixture(n, d, rng), _mixture(2000, d, rng)
    started = time.perf_counter()
    model = SparseGP(seed=seed, **params).fit(X, _truth(X))
    seconds = time.perf_counter() - started
    rmse = float(np.sqrt(np.mean((model.posterior(X_test).mean - _truth(X_test)) ** 2)))
    return {"n": n, "features": d, "seconds": seconds, "test_rmse": rmse,
            "target_sd": float(np.std(_truth(X_test))), "params": model.get_params()}


def ensemble_fit(n: int = 5000, d: int = 6, seed: int = 0, **params: Any) -> dict[str, Any]:
    """Time a :class:`DeepEnsemble` fit on ``n`` points; test RMSE on 2,000 fresh points."""
    rng = np.random.default_rng(seed)
    X, X_test = _mixture(n, d, rng), _mixture(2000, d, rng)
    started = time.perf_counter()
    model = DeepEnsemble(seed=seed, **params).fit(X, _truth(X))
    seconds = time.perf_counter() - started
    rmse = float(np.sqrt(np.mean((model.posterior(X_test).mean - _truth(X_test)) ** 2)))
    return {"n": n, "features": d, "seconds": seconds, "test_rmse": rmse,
            "target_sd": float(np.std(_truth(X_test))), "params": model.get_params()}


def main(argv: list[str] | None = None) -> None:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="write (update) the results here")
    parser.add_argument("--candidates", type=int, default=10**6)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--picks", type=int, default=100, help="batch size k")
    parser.add_argument("--quality", action="store_true",
                        help="also compare the prefiltered batch with the exact one")
    parser.add_argument("--selection-only", action="store_true",
                        help="skip the SVGP and ensemble fits")
    parser.add_argument("--profile", type=Path,
                        help="profile the selection (CPU clock) and write it here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    report: dict[str, Any] = {}
    if args.json and args.json.exists():
        report = json.loads(args.json.read_text())
    s = selection(args.candidates, args.train, k=args.picks, profile=args.profile)
    s["load_average_1min"] = os.getloadavg()[0]
    report[f"selection_k{args.picks}"] = s
    if args.picks == 100:
        report["selection"] = s
    print(f"max-variance batch of {s['k']} from {s['n_candidates']:,} candidates "
          f"({s['features']} features, {s['n_train']:,} training points): {s['seconds']:.2f} s "
          f"(goal <= 10 s), certified exact: {s['certified']}, exact variances computed "
          f"for {s['n_scored']:,}, CPU {s['cpu_seconds']:.2f} s (all threads), "
          f"peak RSS {s['peak_rss_mb']:.0f} MB "
          f"(candidates {s['candidates_mb']:.0f} MB), load average {s['load_average_1min']:.1f}")
    if args.quality:
        q = report["quality"] = quality()
        print(f"prefiltered batch of {q['k']} from {q['n_candidates']:,} (prefilter "
              f"{q['prefilter']:,}): summed pool variance {q['summed_variance_prefiltered']:.4g} "
              f"vs exact greedy {q['summed_variance_exact']:.4g} (ratio "
              f"{q['ratio_prefiltered_to_exact']:.4f}; before {q['summed_variance_before']:.4g},"
              f" reduction share {q['reduction_share']:.4f}), {q['shared_picks']} shared picks")
    if not args.selection_only:
        report["svgp"] = svgp_fit()
        v = report["svgp"]
        print(f"SVGP fit on {v['n']:,} points ({v['features']} features): "
              f"{v['seconds']:.1f} s, test RMSE {v['test_rmse']:.3g} "
              f"(target sd {v['target_sd']:.3g})")
        report["ensemble"] = ensemble_fit()
        e = report["ensemble"]
        print(f"deep ensemble fit on {e['n']:,} points ({e['features']} features): "
              f"{e['seconds']:.1f} s, test RMSE {e['test_rmse']:.3g} "
              f"(target sd {e['target_sd']:.3g})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
