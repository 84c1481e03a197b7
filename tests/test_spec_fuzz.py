"""Fuzz the spec loader: any input gives a valid spec or one SpecError line, never
another exception (hypothesis)."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps import toy
from campaign import Budget, Campaign, Promotion, Scale, SpecError

anything = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 300), st.floats(allow_nan=True),
    st.text(max_size=12), st.lists(st.integers(-2, 2), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.sampled_from([toy.langevin, toy.positions, "exact_gp", "max_variance", "random",
                     np.zeros((2, 2)), np.full((1, 2), np.inf), print]),
)
names = st.one_of(st.sampled_from(["coarse", "fine", "mid", "2x", "", "a b"]), anything)


def build(fields: dict) -> None:
    try:
        Campaign(**fields)
    except SpecError as error:
        assert "\n" not in str(error) and str(error).startswith("invalid ")


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(scale_name=names, walkers=anything, params=anything, batch_size=anything,
       learner=anything, acquisition=anything, source=names, target=names,
       budget=st.dictionaries(names.filter(lambda n: isinstance(n, str) and n.isidentifier()),
                              anything, max_size=2),
       campaign_name=names)
def test_any_spec_is_valid_or_one_spec_error(scale_name, walkers, params, batch_size, learner,
                                             acquisition, source, target, budget,
                                             campaign_name):
    try:
        scales = [Scale(scale_name, app=toy.langevin, walkers=walkers, params=params),
                  Scale("fine", app=toy.smeared_energy)]
        promotion = Promotion(source=source, target=target, features=toy.positions,
                              learner=learner, acquisition=acquisition, batch_size=batch_size)
        spec_budget = Budget(**budget)
    except SpecError as error:
        assert "\n" not in str(error) and str(error).startswith("invalid ")
        return
    build({"name": campaign_name, "scales": scales, "promotions": [promotion],
           "budget": spec_budget})


@settings(max_examples=100, deadline=None, derandomize=True)
@given(fields=st.dictionaries(st.sampled_from(["name", "scales", "promotions", "budget",
                                               "seed", "extra"]), anything, max_size=5))
def test_any_top_level_fields_are_valid_or_one_spec_error(fields):
    build(fields)
