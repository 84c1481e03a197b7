"""The spec's stopping rules, checked against the in-memory state.

Owns: what the rules read (each promotion's model and the features of its candidates,
copied on the steering thread) and whether, for every promotion, one of them fires.
The check may run on the model thread: it reads only its inputs and the state's
counts and round records, never the store or the ledger.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from campaign.spec import CampaignSpec
from campaign.state import CampaignState


def rule_inputs(state: CampaignState,
                before_round: int | None) -> list[tuple[Any, np.ndarray]]:
    """Steering thread: per promotion, its model and its candidates' features (a copy)."""
    inputs = []
    for held in state.promotions:
        candidates = state.candidates(held, before_round=before_round)
        features = (held.features.values[candidates]
                    if held.features is not None and len(candidates) else np.zeros((0, 0)))
        inputs.append((held.learner if held.fitted else None, features))
    return inputs


def rules_reason(spec: CampaignSpec, state: CampaignState,
                 inputs: list[tuple[Any, np.ndarray]], elapsed: float,
                 round_index: int | None = None) -> tuple[str, list[str]]:
    """('stopping rule ...', the rules that fired) if, for every promotion, one of
    the spec's stopping rules fires; ('', []) otherwise."""
    from learners.stopping import StoppingState, first_to_fire

    done = {name: held.tasks.get("done", 0) for name, held in state.scales.items()}
    budget: dict[str, int | None] = {s.name: spec.budget.tasks.get(s.name)
                                     for s in spec.scales}
    reasons = []
    for index, held in enumerate(state.promotions or [None]):
        posterior, heldout = None, []
        if held is not None:
            records = ([held.records[r] for r in sorted(held.records)]
                       if spec.mode == "rounds" else [held.last_record])
            heldout = [r["prospective_rmse"] for r in records
                       if r.get("prospective_rmse") is not None]
            learner, features = inputs[index]
            if learner is not None and len(features):
                posterior = learner.posterior(features)
        rounds = round_index - 1 if round_index is not None else (
            held.generation if held is not None else 0)
        check = StoppingState(round=rounds, n_simulations=done, budget=budget,
                              posterior=posterior, heldout_rmse=heldout,
                              elapsed_seconds=elapsed)
        fired = first_to_fire(spec.stopping, check)
        if fired is None:
            return "", []
        reasons.append(f"{type(fired[0]).__name__}: {fired[1]}")
    return "stopping rule " + "; ".join(reasons), reasons
