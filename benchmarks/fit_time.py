"""Fit time of the surrogates, cold and warm, and the selection time of LocalOutlier.

The problem is :mod:`benchmarks.selection_scale`'s: 6 features drawn from a mixture of
five Gaussians, target ``sum(sin x) + 0.1 |x|^2`` without noise, test RMSE on 2,000 fresh
points from the same mixture. For each size n, a learner is fitted on n points (``cold``:
a fresh object), then the same object is refitted after 10% more points arrive
(``warm``: 1.1 n points, what an active-learning round does), and, as the accuracy
reference of the warm fit, a fresh object is fitted on the 1.1 n points (``cold`` with
``n_train`` 1.1 n; skipped for the learners and sizes in ``skip_reference``). Learners,
on one torch thread:

- ``ExactGP``: defaults (2 random restarts on a cold fit, none on a warm one) but with
  ``max_fit_points=None``, the hyperparameters fitted on all rows as before. Capped at
  ``cap`` seconds through ``max_fit_seconds`` so that the 5,000-point fit ends; a capped
  fit is reported as ``> seconds`` (``stopped_early``: it had not converged when the cap
  stopped it), its RMSE is that of the best hyperparameters reached.
- ``ExactGP(max_fit_seconds=B)``: the fit-time budget (also ``max_fit_points=None``).
- ``ExactGP(warm_restarts=2)``, warm only, at the sizes in ``old_warm``: the refit as it
  was before ``warm_restarts`` existed (the warm start plus 2 random restarts), from the
  same cold fit.
- ``DeepEnsemble``: defaults (cold: at most 1,500 steps; warm: at most 300; early
  stopping on a 10% held-out split per member from 100 points on).
- ``SparseGP``: defaults (300 Adam steps; a cold fit first fits an exact GP on 512
  points), for comparison at sizes where the exact GP is slow.

``steps`` counts optimizer work: marginal-likelihood evaluations (each a Cholesky of the
n x n covariance and its gradient) for ``ExactGP``, Adam steps for the others.

Selection: a greedy batch of ``k`` from a pool of ``pool`` candidates (6 features, the
same mixture) against ``known`` training points, ``LocalOutlier()`` (incremental LOF
update per pick) versus ``LocalOutlier(incremental=False)`` (scikit-learn's LOF refitted
at every pick), with whether the two batches are identical.

Records: ``fits``: ``{"learner", "n", "n_train", "fit", "seconds", "steps", "rmse",
"stopped_early", "warm_started"}``; ``selection``: ``{"policy", "pool", "known", "k",
"seconds", "same_picks"}``.

Scaling (``scaling`` records): the default learner (:func:`learners.default_learner`,
a :class:`~learners.ScalableGP`) at each size in ``scaling_sizes``: its regime, fit
seconds, the median seconds to condition a batch of 8 new points into it (over
``condition_repeats`` batches), the peak resident memory of this process after the fit
(``ru_maxrss``: a high-water mark over the whole run so far, so it never goes down), the
test RMSE, and beside it the test RMSE of the full exact fit (``ExactGP(max_fit_points=
None)``, hyperparameters on all n rows) at the sizes in ``full_exact`` and the seconds of
one float64 Cholesky of an n x n covariance (numpy, one thread) at the sizes in
``cholesky_sizes``: the floor under any exact fit. At the sizes in ``compare`` the
learner of the other regime is fitted too (``other``: the sparse GP where the default is
exact, the subset-fit exact GP where it is sparse), which is how the crossover between the
regimes is measured.

Quick mode: n = 100 and 300, no SparseGP, a 1 s budget, a 60 s cap, a 2,000-point pool;
scaling at n = 300 and 1,000 (the full exact fit at 300, a Cholesky at 1,000).

Run: ``python -m benchmarks.fit_time [--quick] [--json PATH] [--only scaling]``; set
``OPENBLAS_NUM_THREADS=1`` (or the BLAS's equivalent) for one-thread numpy figures.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.selection_scale import _mixture, _truth

logger = logging.getLogger("benchmarks.fit_time")

FULL = {"sizes": [100, 1000, 5000], "budget": 10.0, "cap": 600.0, "pool": 20_000,
        "known": 500, "k": 32, "features": 6, "old_warm": [100, 1000],
        "skip_reference": {"ExactGP": [5000]},
        "scaling_sizes": [1000, 5000, 20_000, 100_000], "full_exact": [1000, 5000],
        "cholesky_sizes": [5000, 20_000], "condition_repeats": 5, "compare": [5000, 20_000]}
QUICK = {"sizes": [100, 300], "budget": 1.0, "cap": 60.0, "pool": 2_000, "known": 100,
         "k": 32, "features": 6, "old_warm": [300], "skip_reference": {},
         "names": ["ExactGP", "ExactGP(max_fit_seconds=1)", "DeepEnsemble"],
         "scaling_sizes": [300, 1000], "full_exact": [300], "cholesky_sizes": [1000],
         "condition_repeats": 3, "compare": []}
BATCH = 8  # points conditioned at once
GROWTH = 1.1  # a warm refit sees 10% more points
N_TEST = 2000


def learners(settings: dict[str, Any]) -> dict[str, Any]:
    """Name -> factory of a fresh learner, as benchmarked."""
    from learners import DeepEnsemble, ExactGP, SparseGP

    return {
        "ExactGP": lambda: ExactGP(max_fit_seconds=settings["cap"], max_fit_points=None),
        f"ExactGP(max_fit_seconds={settings['budget']:g})":
            lambda: ExactGP(max_fit_seconds=settings["budget"], max_fit_points=None),
        "DeepEnsemble": DeepEnsemble,
        "SparseGP": SparseGP,
    }


def _steps(learner: Any) -> int:
    for name in ("n_evaluations_", "n_steps_"):
        if hasattr(learner, name):
            return int(getattr(learner, name))
    return int(learner.steps)  # SparseGP runs all its Adam steps


def fit_record(name: str, learner: Any, fit: str, n: int, X: np.ndarray, y: np.ndarray,
               X_test: np.ndarray, y_test: np.ndarray) -> dict[str, Any]:
    """Fit ``learner`` on (X, y), time it, and score it on the test points."""
    started = time.perf_counter()
    learner.fit(X, y)
    seconds = time.perf_counter() - started
    rmse = float(np.sqrt(np.mean((learner.posterior(X_test).mean - y_test) ** 2)))
    record = {"learner": name, "n": n, "n_train": len(X), "fit": fit, "seconds": seconds,
              "steps": _steps(learner), "rmse": rmse,
              "stopped_early": bool(getattr(learner, "stopped_early_", False)),
              "warm_started": bool(getattr(learner, "warm_started_", fit == "warm"))}
    logger.info("%s n=%d %s: %.2f s, %d steps, rmse %.4g%s", name, len(X), fit, seconds,
                record["steps"], rmse, " (stopped early)" if record["stopped_early"] else "")
    return record


def warm_up(settings: dict[str, Any]) -> None:
    """One tiny fit per learner, so that one-time costs (imports, first torch calls) are
    not in the first figure."""
    rng = np.random.default_rng(1)
    X = _mixture(30, settings["features"], rng)
    for factory in learners(settings).values():
        factory().fit(X, _truth(X))


def fits(settings: dict[str, Any], names: list[str] | None = None) -> list[dict[str, Any]]:
    """Cold and warm fit records for every learner and size."""
    records = []
    factories = learners(settings)
    warm_up(settings)
    for n in settings["sizes"]:
        rng = np.random.default_rng(n)
        X = _mixture(int(round(GROWTH * n)), settings["features"], rng)
        y = _truth(X)
        X_test = _mixture(N_TEST, settings["features"], rng)
        y_test = _truth(X_test)
        for name, factory in factories.items():
            if names is not None and name not in names:
                continue
            learner = factory()
            records.append(fit_record(name, learner, "cold", n, X[:n], y[:n], X_test, y_test))
            if name == "ExactGP" and n in settings.get("old_warm", ()):
                old = copy.deepcopy(learner)
                old.warm_restarts = old.restarts
                records.append(fit_record(f"ExactGP(warm_restarts={old.restarts})", old, "warm",
                                          n, X, y, X_test, y_test))
            records.append(fit_record(name, learner, "warm", n, X, y, X_test, y_test))
            if n not in settings.get("skip_reference", {}).get(name, ()):
                records.append(fit_record(name, factory(), "cold", n, X, y, X_test, y_test))
    return records


def selection(settings: dict[str, Any], seed: int = 0) -> list[dict[str, Any]]:
    """LocalOutlier batch time, incremental versus refit, on one pool."""
    from learners.acquisition import LocalOutlier
    from learners.posterior import SampledPosterior

    rng = np.random.default_rng(seed)
    pool = _mixture(settings["pool"], settings["features"], rng)
    known = _mixture(settings["known"], settings["features"], rng)
    posterior = SampledPosterior(np.zeros((2, len(pool))), 0.0, X=pool, X_train=known,
                                 gaussian=True)
    chosen, records = {}, []
    for policy in (LocalOutlier(), LocalOutlier(incremental=False)):
        started = time.perf_counter()
        chosen[policy.incremental] = policy.select(posterior, settings["k"],
                                                   np.empty(0, dtype=np.int64), rng)
        records.append({"policy": repr(policy), "pool": settings["pool"],
                        "known": settings["known"], "k": settings["k"],
                        "seconds": time.perf_counter() - started})
    same = bool(np.array_equal(chosen[True], chosen[False]))
    for record in records:
        record["same_picks"] = same
    return records


def cholesky_seconds(n: int, features: int, seed: int = 0) -> float:
    """Seconds of one float64 Cholesky of an n x n Matern 5/2 covariance (+ noise)."""
    from learners.kernels import Kernel

    X = _mixture(n, features, np.random.default_rng(seed))
    K = Kernel("matern52", np.full(features, 2.0), 1.0)(X, X)
    K[np.diag_indices_from(K)] += 1e-4
    started = time.perf_counter()
    np.linalg.cholesky(K)
    return time.perf_counter() - started


def _peak_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _scaling_data(n: int, features: int, repeats: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The scaling section's data at size n: training rows (n plus the batches to
    condition on, at least 1.1 n), their targets, and the test set, seeded by n."""
    rng = np.random.default_rng(n)
    X = _mixture(max(int(round(GROWTH * n)), n + BATCH * repeats), features, rng)
    X_test = _mixture(N_TEST, features, rng)
    return X, _truth(X), X_test, _truth(X_test)


def scaling(settings: dict[str, Any], on_record: Any = None) -> list[dict[str, Any]]:
    """Default learner per size: regime, fit and condition seconds, memory, RMSE, and the
    full exact fit and one Cholesky beside it (module docstring). The data of size n are
    those of :func:`fits` at n (the first n of its 1.1 n points, the same test set);
    ``on_record(records)`` is called after each size."""
    from learners import ExactGP, default_learner

    records = []
    features = settings["features"]
    for n in settings.get("scaling_sizes", []):
        X, y, X_test, y_test = _scaling_data(n, features, settings["condition_repeats"])
        learner = default_learner()
        started = time.perf_counter()
        learner.fit(X[:n], y[:n])
        fit_seconds = time.perf_counter() - started
        rmse = float(np.sqrt(np.mean((learner.posterior(X_test).mean - y_test) ** 2)))
        condition = []
        for i in range(settings["condition_repeats"]):
            rows = slice(n + BATCH * i, n + BATCH * (i + 1))
            began = time.perf_counter()
            learner.condition(X[rows], y[rows])
            condition.append(time.perf_counter() - began)
        record = {"n": n, "learner": repr(learner), **learner.regime_,
                  "fit_seconds": fit_seconds, "condition_seconds": float(np.median(condition)),
                  "condition_seconds_all": condition, "peak_mib": _peak_mib(), "rmse": rmse}
        logger.info("default n=%d (%s): fit %.1f s, condition %.1f ms, rmse %.4g", n,
                    record["regime"], fit_seconds, 1e3 * record["condition_seconds"], rmse)
        del learner
        if n in settings.get("compare", []):  # the other regime's learner at this n
            from learners import SparseGP

            other = (SparseGP(n_inducing=512) if record["regime"] == "exact"
                     else ExactGP(max_fit_points=record["max_fit_points"]))
            started = time.perf_counter()
            other.fit(X[:n], y[:n])
            record["other"] = {
                "learner": repr(other), "fit_seconds": time.perf_counter() - started,
                "rmse": float(np.sqrt(np.mean((other.posterior(X_test).mean - y_test) ** 2))),
                "peak_mib": _peak_mib()}
            logger.info("other regime n=%d %r: %.1f s, rmse %.4g", n, other,
                        record["other"]["fit_seconds"], record["other"]["rmse"])
            del other
        if n in settings.get("cholesky_sizes", []):
            record["cholesky_seconds"] = cholesky_seconds(n, features)
        records.append(record)
        if on_record is not None:
            on_record(records)
    for record in records:  # last: the full exact fits are the slowest part
        n = record["n"]
        if n not in settings.get("full_exact", []):
            continue
        X, y, X_test, y_test = _scaling_data(n, features, settings["condition_repeats"])
        if n in settings.get("full_exact", []):
            full = ExactGP(max_fit_points=None, max_fit_seconds=settings["cap"])
            started = time.perf_counter()
            full.fit(X[:n], y[:n])
            record["full_exact_seconds"] = time.perf_counter() - started
            record["full_exact_stopped_early"] = bool(full.stopped_early_)
            record["full_exact_rmse"] = float(np.sqrt(np.mean(
                (full.posterior(X_test).mean - y_test) ** 2)))
            logger.info("full exact n=%d: %.1f s, rmse %.4g", n, record["full_exact_seconds"],
                        record["full_exact_rmse"])
            del full
        if on_record is not None:
            on_record(records)
    return records


def scaling_markdown(records: list[dict[str, Any]]) -> str:
    """The scaling records as the Markdown table of docs/benchmarks.md."""
    lines = ["| n | default regime | fit s | condition 8 ms | peak MiB | RMSE | full exact fit "
             "s (RMSE) | other regime: learner, fit s (RMSE) | one Cholesky s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: r["n"]):
        regime = (f"exact, hyperparameters on {r['n_fit_points']:,}" if r["regime"] == "exact"
                  else f"sparse, {r['n_inducing']} inducing")
        full = "not run"
        if "full_exact_seconds" in r:
            mark = "> " if r["full_exact_stopped_early"] else ""
            full = f"{mark}{r['full_exact_seconds']:.0f} ({r['full_exact_rmse']:.4f})"
        other = ("not run" if "other" not in r else
                 f"{r['other']['learner']}, {r['other']['fit_seconds']:.1f} "
                 f"({r['other']['rmse']:.4f})")
        chol = f"{r['cholesky_seconds']:.1f}" if "cholesky_seconds" in r else "not run"
        lines.append(f"| {r['n']:,} | {regime} | {r['fit_seconds']:.1f} | "
                     f"{1e3 * r['condition_seconds']:.1f} | {r['peak_mib']:,.0f} | "
                     f"{r['rmse']:.4f} | {full} | {other} | {chol} |")
    return "\n".join(lines)


def table(report: dict[str, Any]) -> str:
    """The fit records as a text table, then the selection records."""
    lines = [f"{'learner':28s}{'n':>6s}{'fit':>6s}{'seconds':>10s}{'steps':>7s}{'rmse':>9s}"]
    for r in report["fits"]:
        # A default fit stopped by the cap had not converged: it needs longer than that.
        seconds = (f"> {r['seconds']:.0f}" if r["learner"] == "ExactGP" and r["stopped_early"]
                   else f"{r['seconds']:.2f}")
        lines.append(f"{r['learner']:28s}{r['n_train']:6d}{r['fit']:>6s}{seconds:>10s}"
                     f"{r['steps']:7d}{r['rmse']:9.4f}" + ("  stopped early"
                                                         if r["stopped_early"] else ""))
    lines.append("")
    for r in report.get("scaling", []):
        extra = ""
        if "full_exact_rmse" in r:
            extra += (f", full exact fit {r['full_exact_seconds']:.1f} s rmse "
                      f"{r['full_exact_rmse']:.4f}")
        if "cholesky_seconds" in r:
            extra += f", one Cholesky {r['cholesky_seconds']:.2f} s"
        if "other" in r:
            extra += (f"; {r['other']['learner']} {r['other']['fit_seconds']:.1f} s rmse "
                      f"{r['other']['rmse']:.4f}")
        lines.append(f"default n={r['n']:,} {r['regime']}: fit {r['fit_seconds']:.1f} s, "
                     f"condition 8 {1e3 * r['condition_seconds']:.1f} ms, peak "
                     f"{r['peak_mib']:.0f} MiB, rmse {r['rmse']:.4f}{extra}")
    lines.append("")
    for r in report.get("selection", []):
        lines.append(f"{r['policy']:40s} batch of {r['k']} from {r['pool']:,} "
                     f"({r['known']} known): {r['seconds']:.2f} s, same picks: {r['same_picks']}")
    return "\n".join(lines)


def run(settings: dict[str, Any], names: list[str] | None = None,
        only: str | None = None, on_record: Any = None) -> dict[str, Any]:
    """The whole benchmark at ``settings`` on one torch thread (``only="scaling"``: the
    scaling records alone)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if only == "scaling":
            return {"benchmark": "fit_time", "settings": settings, "fits": [],
                    "scaling": scaling(settings, on_record)}
        return {"benchmark": "fit_time", "settings": settings,
                "fits": fits(settings, names or settings.get("names")),
                "selection": selection(settings), "scaling": scaling(settings)}
    finally:
        torch.set_num_threads(previous)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="n = 100 and 300, no SparseGP, a 2,000-point pool (< 60 s)")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--only", choices=["scaling"], help="run one part only")
    parser.add_argument("--sizes", type=int, nargs="+", help="scaling sizes to run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.perf_counter()
    settings = dict(QUICK if args.quick else FULL)
    if args.sizes:
        settings["scaling_sizes"] = args.sizes
    def partial(records: list[dict[str, Any]]) -> None:  # keep what finished so far
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"benchmark": "fit_time", "settings": settings,
                                             "partial": True, "scaling": records}, indent=1))

    report = run(settings, only=args.only, on_record=partial)
    report["quick"] = args.quick
    report["seconds"] = time.perf_counter() - started
    print(table(report))
    print(f"total {report['seconds']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
