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
                               "of scale 'fine' (outputs: energy, energy_stderr); did you mean "
                               "'energy'?"]


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


def test_validate_site_renders_each_batch_script_without_submitting(tmp_path, monkeypatch):
    """The provider's own code writes the script; its command runner only records."""
    import subprocess

    from typer.testing import CliRunner

    from campaign.cli import app

    started = []
    real_popen = subprocess.Popen

    def recording_popen(command, *args, **kwargs):
        started.append(str(command))
        return real_popen(command, *args, **kwargs)

    out = tmp_path / "site"
    monkeypatch.setattr(subprocess, "Popen", recording_popen)  # sbatch would start one
    from campaign.site_render import render_site

    rendering = render_site("slurm", ["coarse", "fine"], out,
                            {"account": "proj1", "partition": "debug", "walltime": "00:30:00"})
    monkeypatch.undo()
    assert not [c for c in started if "sbatch" in c]  # (Parsl's SlurmProvider runs sacct)
    assert [e.label for e in rendering.executors] == ["sim-coarse", "sim-fine", "train"]
    for executor in rendering.executors:
        assert executor.problem is None and executor.script.is_file()
        assert executor.script.parent == out / "submit_scripts"
        assert executor.commands == [f"sbatch {executor.script}"]
        text = executor.script.read_text()
        assert "#SBATCH --account=proj1" in text and "#SBATCH --partition=debug" in text
        assert "#SBATCH --time=30" in text
        assert any("process_worker_pool" in line for line in executor.launch_lines)
        assert any(line.startswith("srun") for line in executor.launch_lines)
    assert "SlurmProvider" in rendering.config_file.read_text()

    result = CliRunner().invoke(app, [
        "validate", "examples/muller_brown.py", "--site", "slurm", "--site-param",
        "account=proj1", "--out", str(tmp_path / "cli")], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "nothing submitted" in result.output and "would run: sbatch " in result.output
    assert "#SBATCH --account=proj1" in result.output
    assert "muller_brown: valid" in result.output  # the smallest run still runs after it


def test_validate_site_names_a_misspelled_parameter(tmp_path):
    from typer.testing import CliRunner

    from campaign.cli import app

    result = CliRunner().invoke(app, [
        "validate", "examples/muller_brown.py", "--site", "pbs", "--site-param", "acount=x",
        "--out", str(tmp_path / "site")], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "did you mean 'account'?" in result.output and "known parameters:" in result.output


def test_validate_site_local_has_no_batch_script(tmp_path):
    from campaign.site_render import render_site

    rendering = render_site("local", ["coarse", "fine"], tmp_path)
    assert all(e.script is None and e.problem is None for e in rendering.executors)
    assert all(any("process_worker_pool" in line for line in e.launch_lines)
               for e in rendering.executors)
    assert not (tmp_path / "submit_scripts").exists()


def _muller_brown_with_fine(tmp_path, resources: str):
    """examples/muller_brown.py with the fine scale asking for ``resources``."""
    source = open("examples/muller_brown.py").read()
    plain = 'Scale("fine", app=toy.smeared_energy)'
    assert plain in source
    script = tmp_path / "asks.py"
    script.write_text("from campaign.resources import Resources\n" + source.replace(
        plain, f'Scale("fine", app=toy.smeared_energy, resources={resources})'))
    return script


def test_validate_site_refuses_more_gpus_than_the_node_has(tmp_path):
    """8 GPUs per task on Perlmutter's 4-GPU node: one line naming the scale, what it
    asked and the node; exit 2 before anything is rendered or run."""
    from typer.testing import CliRunner

    from campaign.cli import app

    script = _muller_brown_with_fine(tmp_path, "Resources(gpus=8)")
    result = CliRunner().invoke(app, [
        "validate", str(script), "--site", "perlmutter", "--site-param", "account=m1",
        "--out", str(tmp_path / "site")], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: scale 'fine' asks for gpus=8")
    assert "the node has 4" in lines[0] and "64 cores, 4 A100" in lines[0]
    assert not (tmp_path / "site").exists()


def test_validate_site_accepts_a_fitting_request_and_renders_it(tmp_path):
    from typer.testing import CliRunner

    from campaign.cli import app
    from campaign.resources import Resources
    from site_configs import check_resources

    assert check_resources("perlmutter", {"fine": Resources(gpus=4)}) == []
    script = _muller_brown_with_fine(tmp_path, "Resources(gpus=4)")
    result = CliRunner().invoke(app, [
        "validate", str(script), "--site", "perlmutter", "--site-param", "account=m1",
        "--site-param", "address=127.0.0.1", "--out", str(tmp_path / "site")],
        env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "error:" not in result.output and "nothing submitted" in result.output
    config = (tmp_path / "site" / "parsl-config.txt").read_text()
    assert "available_accelerators=['0,1,2,3']" in config  # the site mapped the 4 GPUs


def test_validate_site_names_a_misspelled_parameter_before_checking_resources(tmp_path):
    from typer.testing import CliRunner

    from campaign.cli import app

    script = _muller_brown_with_fine(tmp_path, "Resources(gpus=8)")
    result = CliRunner().invoke(app, [
        "validate", str(script), "--site", "perlmutter", "--site-param", "gpus_per_nod=8",
        "--out", str(tmp_path / "site")], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "did you mean 'gpus_per_node'?" in result.output
