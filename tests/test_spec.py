"""Campaign spec validation: every bad field gives one clear line naming it."""

import numpy as np
import pytest

from campaign import Budget, Campaign, Promotion, Scale, SpecError
from learners import ExactGP
from learners.acquisition import MaxVariance, Random


def coarse_app(x, *, seed):
    return {"x": np.atleast_2d(x), "e": np.zeros(1)}


def fine_app(x, *, seed):
    return {"x": np.atleast_2d(x), "e": np.zeros(1)}


def features(x):
    return x


def promotion(**changes):
    fields = dict(source="coarse", target="fine", features=features, learner=ExactGP(),
                  acquisition=MaxVariance(), batch_size=4)
    fields.update(changes)
    return Promotion(**fields)


def scales():
    return [Scale("coarse", app=coarse_app, walkers=np.zeros((2, 2))), Scale("fine", app=fine_app)]


def campaign(**changes):
    fields = dict(name="toy", scales=scales(), promotions=[promotion()], budget=Budget(fine=8))
    fields.update(changes)
    return Campaign(**fields)


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_valid_spec_builds_and_describes_itself():
    spec = campaign()
    assert spec.scale("fine").executor_label == "sim-fine"
    assert spec.promotions[0].name == "coarse-to-fine"
    assert spec.promotions[0].seed_design_size == 4
    described = spec.describe()
    assert described["scales"][0]["app"].endswith("coarse_app")
    assert described["budget"]["tasks"] == {"fine": 8}


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: Scale("2bad", app=coarse_app), "name: must start with a letter"),
        (lambda: Scale("coarse", app=coarse_app, walkers=np.zeros(3)), "walkers: must be"),
        (lambda: Scale("coarse", app=coarse_app, walkers=[[np.nan, 0.0]]),
         "walkers: must be finite"),
        (lambda: Scale("coarse", app="not a function"), "app: Input should be callable"),
        (lambda: Scale("coarse", app=coarse_app, params={"seed": 3}), "params: 'seed' is set"),
        (lambda: Scale("coarse", app=coarse_app, colour="red"), "colour: Extra inputs"),
        (lambda: promotion(batch_size=0), "batch_size: Input should be greater than or equal to 1"),
        (lambda: promotion(learner=object()), "learner: must implement fit"),
        (lambda: promotion(acquisition=42), "acquisition: must implement select"),
        (lambda: promotion(acquisition="best"), "acquisition: unknown acquisition"),
        (lambda: promotion(learner="oracle"), "learner: unknown learner"),
        (lambda: Budget(fine=0), "tasks for scale 'fine' must be a positive integer"),
        (lambda: Budget(rounds=0), "rounds: Input should be greater than or equal to 1"),
        (lambda: campaign(name="has space"), "name: must start with a letter"),
        (lambda: campaign(promotions=[promotion(target="finest")]), "unknown scale 'finest'"),
        (lambda: campaign(promotions=[promotion(source="fine", target="coarse")]),
         "must be a cheaper (earlier) scale"),
        (lambda: campaign(scales=[*scales(), Scale("fine", app=fine_app)]),
         "scale names must be unique"),
        (lambda: campaign(scales=[*scales(), Scale("lonely", app=fine_app)]),
         "scale 'lonely' has no walkers and no promotion feeds it"),
        (lambda: campaign(budget=Budget(finest=3)), "budget names unknown scale 'finest'"),
        (lambda: campaign(budget=Budget(fine=80, wall_tme=600)),
         "budget names unknown scale 'wall_tme'; did you mean 'wall_time'? scales: coarse, "
         "fine; limits: rounds, wall_time, core_seconds"),
        (lambda: campaign(budget=Budget(fine=8, xyz=3)),
         "budget names unknown scale 'xyz'; scales: coarse, fine; limits: rounds"),
        (lambda: campaign(budget=Budget()), "no budget ends the campaign"),
        (lambda: campaign(scales=[]), "scales: List should have at least 1 item"),
    ],
)
def test_bad_field_gives_one_line_naming_it(build, expected):
    with pytest.raises(SpecError) as error:
        build()
    assert expected in one_line(error)


def test_spec_errors_are_value_errors():
    assert issubclass(SpecError, ValueError)


def test_budget_by_rounds_or_wall_time_is_enough():
    assert campaign(budget=Budget(rounds=3)).budget.rounds == 3
    assert campaign(budget=Budget(wall_time=5.0)).budget.wall_time == 5.0


def test_random_acquisition_and_mapping_accepted():
    spec = campaign(promotions=[promotion(acquisition=Random(), mapping=lambda x: x * 2)])
    assert spec.promotions[0].mapping(np.ones(2)).tolist() == [2.0, 2.0]
