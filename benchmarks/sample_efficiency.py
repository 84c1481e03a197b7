"""Sample efficiency on the built-in Müller-Brown problem: fine simulations to a target error.

For each selection policy and seed, the demo campaign runs through the real engine
(threads site, its own run directory) until the fine budget is spent. After every round
the surrogate is scored against exact values, and we count the fine simulations it took
to reach the target RMSE. Two error metrics, named because they answer different
questions (DESIGN):

* ``uniform``: RMSE over a regular grid of the thermally accessible region (the
  reference of the campaign; what "learn the landscape" means). Headline metric.
* ``pool``: RMSE over the coarse candidates the walkers produced (where the coarse
  scale goes), 2,000 of them drawn once per run. Random selection follows this density.

Usage::

    python -m benchmarks.sample_efficiency [--quick] [--json PATH] [--seeds N]

Prints a table and writes JSON (``results``: one record per policy with ``problem``,
``policy``, ``seeds``, ``sims_to_target``, ``ratio_vs_random``). A run that never reaches
the target within the budget counts as ``budget + batch`` (a lower bound) and is flagged.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from apps import toy
from campaign import Budget, Campaign, Promotion, Scale
from campaign.ledger import Ledger
from campaign.store import Store
from learners import ExactGP
from learners.acquisition import ACQUISITIONS

PROBLEM = "muller_brown"
SETTINGS = {
    # target: 2 energy units = 1.6% of the smeared energy's range (-140 .. -15) over the region
    "full": {"target_rmse": 2.0, "budget": 200, "seeds": 5, "walkers": 4, "batch_size": 8,
             "n_samples": 2**17},
    "quick": {"target_rmse": 5.0, "budget": 96, "seeds": 5, "walkers": 4, "batch_size": 8,
              "n_samples": 2**14},
}
POLICIES = ("random", "max_variance")


def build_campaign(policy: str, seed: int, settings: dict[str, Any]) -> Campaign:
    """The demo campaign with ``policy`` and ``seed``; everything else fixed."""
    return Campaign(
        name=f"bench_{policy}",
        scales=[
            Scale("coarse", app=toy.langevin, walkers=toy.initial_walkers(settings["walkers"])),
            Scale("fine", app=toy.smeared_energy, params={"n_samples": settings["n_samples"]}),
        ],
        promotions=[Promotion(
            source="coarse", target="fine", features=toy.positions,
            learner=ExactGP(seed=seed), acquisition=ACQUISITIONS[policy](),
            batch_size=settings["batch_size"], quantity="energy", reference=toy.reference)],
        budget=Budget(fine=settings["budget"]),
        seed=seed,
    )


def score_run(run_dir: Path, seed: int) -> dict[str, Any]:
    """Learning curves (n_train, uniform RMSE, pool RMSE) of one finished run."""
    ledger = Ledger(run_dir / "ledger.sqlite")
    store = Store(run_dir, ledger, read_only=True)
    pool = store.read("coarse").x
    rng = np.random.default_rng(seed)
    pool_points = pool[rng.choice(len(pool), size=min(2000, len(pool)), replace=False)]
    pool_truth = toy.smeared_energy_exact(pool_points)
    n_train, uniform, pooled = [], [], []
    for record in ledger.rounds("coarse-to-fine"):
        if not record.get("n_train"):
            continue
        learner = ExactGP().load_state_dict(
            store.load_model("coarse-to-fine", record["round"]))
        error = learner.posterior(pool_points).mean - pool_truth
        n_train.append(record["n_train"])
        uniform.append(record["reference_rmse"])
        pooled.append(float(np.sqrt(np.mean(error**2))))
    ledger.close()
    return {"n_train": n_train, "uniform_rmse": uniform, "pool_rmse": pooled}


def sims_to_target(n_train: list[int], errors: list[float], target: float,
                   censored_at: int) -> tuple[int, bool]:
    """(first n with error <= target, reached?); ``censored_at`` when never reached."""
    for n, error in zip(n_train, errors, strict=True):
        if error <= target:
            return int(n), True
    return censored_at, False


def run(mode: str, seeds: int | None = None, policies: tuple[str, ...] = POLICIES
        ) -> dict[str, Any]:
    settings = dict(SETTINGS[mode])
    if seeds is not None:
        settings["seeds"] = seeds
    censored_at = settings["budget"] + settings["batch_size"]
    runs: dict[str, list[dict[str, Any]]] = {policy: [] for policy in policies}
    with tempfile.TemporaryDirectory(prefix="sample-efficiency-") as scratch:
        for seed in range(settings["seeds"]):
            for policy in policies:
                started = time.time()
                run_dir = Path(scratch) / f"{policy}-{seed}"
                build_campaign(policy, seed, settings).run(site="threads", out=run_dir)
                curves = score_run(run_dir, seed)
                curves["seconds"] = time.time() - started
                runs[policy].append(curves)
                logging.getLogger("benchmarks.sample_efficiency").info(
                    "%s seed %d: final uniform RMSE %.3g, pool RMSE %.3g (%.1f s)", policy, seed,
                    curves["uniform_rmse"][-1], curves["pool_rmse"][-1], curves["seconds"])
    results = []
    for metric in ("uniform", "pool"):
        medians: dict[str, float] = {}
        for policy in policies:
            reached = [sims_to_target(c["n_train"], c[f"{metric}_rmse"],
                                      settings["target_rmse"], censored_at)
                       for c in runs[policy]]
            counts = [n for n, _ in reached]
            medians[policy] = float(np.median(counts))
            results.append({
                "problem": PROBLEM, "metric": metric, "policy": policy,
                "seeds": list(range(settings["seeds"])),
                "sims_to_target": counts,
                "reached": [ok for _, ok in reached],
                "median": medians[policy],
                "spread": [float(np.min(counts)), float(np.max(counts))],
                "final_rmse_median": float(np.median([c[f"{metric}_rmse"][-1]
                                                      for c in runs[policy]])),
                "seconds_median": float(np.median([c["seconds"] for c in runs[policy]])),
            })
        for record in results:
            if record["metric"] == metric:
                record["ratio_vs_random"] = (medians["random"] / record["median"]
                                             if "random" in medians else None)
    return {"problem": PROBLEM, "mode": mode, "settings": settings,
            "error_metrics": {
                "uniform": "RMSE vs exact smeared energy on the 75x75 grid where V < -20",
                "pool": "RMSE vs exact smeared energy at 2,000 coarse candidates of the run"},
            "results": results, "curves": runs}


def table(report: dict[str, Any]) -> str:
    settings = report["settings"]
    lines = [f"problem {report['problem']} ({report['mode']}): fine sims to reach RMSE <= "
             f"{settings['target_rmse']} (budget {settings['budget']}, batch "
             f"{settings['batch_size']}, {settings['seeds']} seeds; '>' = not reached)",
             f"{'metric':8} {'policy':14} {'median':>7} {'min':>5} {'max':>5} "
             f"{'vs random':>9} {'final rmse':>10}  per seed"]
    for r in report["results"]:
        per_seed = " ".join(f"{'' if ok else '>'}{n}" for n, ok in
                            zip(r["sims_to_target"], r["reached"], strict=True))
        ratio = "" if r["ratio_vs_random"] is None else f"{r['ratio_vs_random']:.2f}x"
        lines.append(f"{r['metric']:8} {r['policy']:14} {r['median']:7.0f} {r['spread'][0]:5.0f} "
                     f"{r['spread'][1]:5.0f} {ratio:>9} {r['final_rmse_median']:10.3g}  "
                     f"{per_seed}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller budget, looser target")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--seeds", type=int, help="number of seeds (default 5)")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.addFilter(lambda record: record.name.startswith("benchmarks")
                      or record.levelno >= logging.WARNING)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        handlers=[handler])
    started = time.time()
    report = run("quick" if args.quick else "full", seeds=args.seeds)
    report["wall_seconds"] = time.time() - started
    print(table(report))
    print(f"wall time {report['wall_seconds']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
