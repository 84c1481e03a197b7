"""``campaign.validate``: the smallest end-to-end run finds spec mistakes in seconds."""

import numpy as np
from conftest import tiny_campaign

from campaign.script import load_campaign
from campaign.validate import smallest_copy, validate


def always_raises(x, *, seed, **params):
    raise RuntimeError("solver not found")


def wrong_shape(x, *, seed, **params):
    return {"x": np.atleast_2d(x), "energy": np.zeros(3)}


def test_the_demo_validates_with_one_task_per_scale():
    report = validate(load_campaign("examples/muller_brown.py"))
    assert report.ok, report.problems
    assert report.task_counts == {"coarse": {"done": 1}, "fine": {"done": 1}}


def test_smallest_copy_keeps_the_science_and_shrinks_the_size():
    spec = tiny_campaign(mode="rounds")
    small = smallest_copy(spec)
    assert small.mode == "async" and small.budget.tasks == {"fine": 1, "coarse": 1}
    assert small.scales[0].walkers.shape == (1, 2) and small.promotions[0].batch_size == 1
    assert small.scales[0].app is spec.scales[0].app
    assert small.promotions[0].features is spec.promotions[0].features
    assert spec.promotions[0].batch_size == 4  # the original is untouched


def test_a_misspelled_quantity_is_one_problem(tmp_path):
    report = validate(tiny_campaign(promotion={"quantity": "enrgy"}), tmp_path / "run")
    assert not report.ok
    assert report.problems == ["promotion coarse-to-fine: quantity 'enrgy' is not an output "
                               "of scale 'fine' (outputs: energy, energy_stderr)"]


def test_a_misshapen_fine_result_and_a_failing_walker_are_named():
    report = validate(tiny_campaign(fine_app=wrong_shape))
    assert not report.ok and any("'fine'" in p and "bad result" in p for p in report.problems)
    spec = tiny_campaign()
    broken = spec.model_copy(update={"scales": [
        spec.scales[0].model_copy(update={"app": always_raises, "retries": 0}),
        spec.scales[1]]})
    report = validate(broken)
    assert not report.ok
    assert any("RuntimeError: solver not found" in p for p in report.problems)


def test_the_cli_validates_a_script_and_exits_1_on_a_problem(tmp_path):
    from typer.testing import CliRunner

    from campaign.cli import app

    runner = CliRunner()
    good = runner.invoke(app, ["validate", "examples/muller_brown.py"],
                         env={"COLUMNS": "300"})
    assert good.exit_code == 0, good.output
    assert "muller_brown: valid (coarse 100 rows, fine 1 rows" in good.output
    script = tmp_path / "bad.py"
    source = open("examples/muller_brown.py").read().replace('quantity="energy"',
                                                              'quantity="enrgy"')
    assert 'quantity="enrgy"' in source
    script.write_text(source)
    bad = runner.invoke(app, ["validate", str(script)], env={"COLUMNS": "300"})
    assert bad.exit_code == 1
    assert "problem: promotion coarse-to-fine: quantity 'enrgy'" in bad.output
