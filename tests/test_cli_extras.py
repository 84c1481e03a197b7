"""What a scientist sees and touches: --version and -h, the learner and policy lists,
`campaign export`, `campaign resume --budget`, one-line errors for a bad --out and for
misspelled spec fields, and a `campaign status` that does not pay for torch."""

from __future__ import annotations

import csv
import inspect
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from apps import toy
from campaign import Budget, Campaign, Promotion, Scale, SpecError
from campaign.cli import app
from campaign.cli.listings import first_sentence, parameters
from campaign.cli.runs import with_budget
from campaign.ledger import Ledger
from campaign.store import Rows, Store
from learners import LEARNERS, ExactGP
from learners.acquisition import ACQUISITIONS

runner = CliRunner()

SCRIPT = '''
"""A tiny round-locked campaign for the CLI tests."""
from apps import toy
from campaign import Budget, Campaign, Promotion, Scale
from learners import ExactGP
from learners.acquisition import MaxVariance

campaign = Campaign(
    name="extras",
    scales=[Scale("coarse", app=toy.langevin, params={"n_steps": 2000, "stride": 100},
                  walkers=toy.initial_walkers(2)),
            Scale("fine", app=toy.smeared_energy, params={"n_samples": 4096})],
    promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
                          learner=ExactGP(restarts=1, iterations=60),
                          acquisition=MaxVariance(), batch_size=4, quantity="energy")],
    budget=Budget(fine=4),
    mode="rounds",
)
'''


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "400"})


def one_error_line(result) -> str:
    """The CLI's error: exit 2, one `error:` line, no traceback."""
    assert result.exit_code == 2, result.stdout
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stdout
    assert "Traceback" not in result.stdout
    return lines[0]


@pytest.fixture(scope="module")
def script_run(tmp_path_factory) -> Path:
    """A finished run of SCRIPT (4 fine tasks) on threads, started by `campaign run`."""
    folder = tmp_path_factory.mktemp("extras")
    script = folder / "extras_campaign.py"
    script.write_text(SCRIPT)
    out = folder / "run"
    result = invoke("run", str(script), "--site", "threads", "--out", str(out), "--no-report")
    assert result.exit_code == 0, result.stdout
    return out


@pytest.fixture
def run_copy(script_run, tmp_path) -> Path:
    """A copy of the finished run that a test may change."""
    copy = tmp_path / "run"
    shutil.copytree(script_run, copy)
    return copy


def committed(run_dir: Path, scale: str):
    ledger = Ledger(run_dir / "ledger.sqlite", read_only=True)
    try:
        return Store(run_dir, ledger, read_only=True).read(scale), ledger.task_counts()
    finally:
        ledger.close()


# -- --version and -h -------------------------------------------------------------------
def test_version_prints_the_distribution_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"multiscale-campaign {metadata.version('multiscale-campaign')}"


def test_h_is_help_for_the_app_and_every_command():
    commands = sorted(typer.main.get_command(app).commands)
    assert {"run", "resume", "status", "report", "export", "learners", "policies",
            "sites"} <= set(commands)
    for args in ([], *([name] for name in commands)):
        short, long = invoke(*args, "-h"), invoke(*args, "--help")
        assert short.exit_code == 0 and long.exit_code == 0, (args, short.stdout)
        assert "Usage:" in short.stdout and short.stdout == long.stdout


# -- learners and policies --------------------------------------------------------------
def test_parameters_and_summary_come_from_signature_and_docstring():
    expected = inspect.signature(ExactGP).parameters["restarts"].default
    assert f"restarts={expected!r}" in parameters(ExactGP).split(", ")

    class Policy:
        """Pick the best of :class:`~learners.posterior.Posterior` draws, e.g. ``k``
        of them. Second sentence."""

        def __init__(self, beta, gamma=0.5, **extra):
            pass

    assert parameters(Policy) == "beta, gamma=0.5, **extra"
    assert first_sentence(Policy) == "Pick the best of Posterior draws, e.g. k of them."


@pytest.mark.parametrize(("command", "registry"),
                         [("learners", LEARNERS), ("policies", ACQUISITIONS)])
def test_lists_show_every_registered_name_with_its_defaults(command, registry):
    result = invoke(command)
    assert result.exit_code == 0, result.stdout
    for name, cls in registry.items():
        row = next((line for line in result.stdout.splitlines() if f" {name} " in line), None)
        assert row is not None, name
        assert cls.__name__ in row
        assert first_sentence(cls).split()[0] in row
        parameter = next((p for p in inspect.signature(cls).parameters.values()
                          if p.default is not p.empty), None)
        if parameter is not None:  # the first default is on the name's own line
            assert f"{parameter.name}=" in row


def test_sites_shows_each_sites_node_shape():
    from site_configs import describe_sites, node_shape

    result = invoke("sites")
    assert result.exit_code == 0, result.stdout
    assert "node (default)" in result.stdout
    lines = result.stdout.splitlines()
    for site in describe_sites():
        row = next((line for line in lines if line.startswith(f"│ {site['name']} ")), None)
        assert row is not None, site["name"]
        assert site["node"] == node_shape(site["name"]).describe()
        assert f"│ {site['node']} " in row, (site["name"], row)
    perlmutter = next(line for line in lines if line.startswith("│ perlmutter "))
    assert "│ 64 cores, 4 A100, 256 GB, 1 node per block " in perlmutter


# -- export -----------------------------------------------------------------------------
def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as handle:
        header, *rows = list(csv.reader(handle))
    return header, rows


def test_export_csv_rows_equal_the_store(script_run, tmp_path):
    for scale in ("coarse", "fine"):
        output = tmp_path / f"{scale}.csv"
        result = invoke("export", str(script_run), "--scale", scale, "--output", str(output))
        assert result.exit_code == 0, result.stdout
        data, _ = committed(script_run, scale)
        header, rows = read_csv(output)
        assert len(rows) == len(data) > 0
        table = {name: [row[i] for row in rows] for i, name in enumerate(header)}
        for d in range(data.x.shape[1]):
            np.testing.assert_array_equal(np.array(table[f"x_{d}"], float), data.x[:, d])
        for name, values in {**data.y, **data.meta}.items():
            np.testing.assert_array_equal(np.array(table[name], float), values)
        assert f"wrote {output} ({len(data)} rows of scale '{scale}')" in result.stdout
    assert "energy" in header and "task_id" in header


def test_export_default_output_is_named_after_run_and_scale(script_run, tmp_path,
                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("export", str(script_run), "--scale", "fine")
    assert result.exit_code == 0, result.stdout
    _, rows = read_csv(tmp_path / "run-fine.csv")
    assert len(rows) == 4


def test_export_netcdf_holds_the_same_values(script_run, tmp_path):
    xr = pytest.importorskip("xarray")
    output = tmp_path / "fine.nc"
    result = invoke("export", str(script_run), "--scale", "fine", "--format", "netcdf",
                    "-o", str(output))
    assert result.exit_code == 0, result.stdout
    data, _ = committed(script_run, "fine")
    with xr.open_dataset(output) as dataset:
        assert dataset.attrs["campaign"] == "extras" and dataset.attrs["scale"] == "fine"
        np.testing.assert_array_equal(dataset["x"].values, data.x)
        np.testing.assert_array_equal(dataset["energy"].values, data.y["energy"])
        np.testing.assert_array_equal(dataset["task_id"].values, data.meta["task_id"])
        assert dataset["energy"].dims == ("row",)


def test_export_does_not_write_the_run_directory(script_run, tmp_path):
    def snapshot() -> dict[str, float]:
        return {str(p.relative_to(script_run)): p.stat().st_mtime_ns
                for p in script_run.rglob("*")}

    before = snapshot()
    for fmt in ("csv", "netcdf"):
        result = invoke("export", str(script_run), "--scale", "coarse", "--format", fmt,
                        "-o", str(tmp_path / f"coarse.{fmt}"))
        assert result.exit_code == 0, result.stdout
    assert snapshot() == before


def test_export_unknown_scale_or_format_is_one_line(script_run, tmp_path):
    line = one_error_line(invoke("export", str(script_run), "--scale", "finest",
                                 "-o", str(tmp_path / "f.csv")))
    assert "no scale 'finest'" in line and line.endswith("scales: coarse, fine")
    line = one_error_line(invoke("export", str(script_run), "--scale", "fine",
                                 "--format", "parquet"))
    assert "--format must be one of csv, netcdf, got 'parquet'" in line
    line = one_error_line(invoke("export", str(tmp_path), "--scale", "fine"))
    assert "is not a campaign run directory" in line
    assert not (tmp_path / "f.csv").exists()


def test_export_netcdf_without_xarray_says_how_to_install(script_run, tmp_path,
                                                          monkeypatch):
    monkeypatch.setitem(sys.modules, "xarray", None)  # import xarray raises ImportError
    line = one_error_line(invoke("export", str(script_run), "--scale", "fine",
                                 "--format", "netcdf", "-o", str(tmp_path / "f.nc")))
    assert "pip install xarray" in line


@pytest.fixture
def shaped_run(tmp_path) -> Path:
    """A run directory whose scale has a (n, 2, 3) output and an output named `round`."""
    run = tmp_path / "shaped"
    run.mkdir()
    ledger = Ledger(run / "ledger.sqlite")
    store = Store(run, ledger)
    n = 3
    forces = np.arange(n * 6, dtype=np.float64).reshape(n, 2, 3) / 7
    store.commit("aa", Rows(x=np.arange(n * 2.0).reshape(n, 2),
                            y={"forces": forces, "round": np.array([9, 8, 7])},
                            meta=Rows.meta_for(task_id=2**40, rows=n)), outcomes=[])
    ledger.close()
    return run


def test_export_flattens_shaped_columns_and_separates_clashing_names(shaped_run, tmp_path):
    output = tmp_path / "aa.csv"
    result = invoke("export", str(shaped_run), "--scale", "aa", "-o", str(output))
    assert result.exit_code == 0, result.stdout
    header, rows = read_csv(output)
    assert header[:2] == ["x_0", "x_1"]
    assert [h for h in header if h.startswith("forces")] == [f"forces_{i}" for i in range(6)]
    assert "y_round" in header and "meta_round" in header and "round" not in header
    data, _ = committed(shaped_run, "aa")
    flat = np.array([[float(row[header.index(f"forces_{i}")]) for i in range(6)]
                     for row in rows])
    np.testing.assert_array_equal(flat, data.y["forces"].reshape(3, 6))
    assert [row[header.index("y_round")] for row in rows] == ["9", "8", "7"]
    assert {row[header.index("task_id")] for row in rows} == {str(2**40)}


def test_export_netcdf_keeps_shapes_and_refuses_what_netcdf3_cannot_hold(shaped_run,
                                                                         tmp_path,
                                                                         monkeypatch):
    pytest.importorskip("xarray")
    import campaign.export

    monkeypatch.setattr(campaign.export, "netcdf_engine", lambda: "scipy")
    line = one_error_line(invoke("export", str(shaped_run), "--scale", "aa", "-f", "netcdf",
                                 "-o", str(tmp_path / "aa.nc")))
    assert "'task_id' holds integers beyond 32 bits" in line and "netCDF4" in line


# -- status -----------------------------------------------------------------------------
def test_status_shows_rows_without_importing_torch(script_run):
    code = ("import sys; from typer.testing import CliRunner; from campaign.cli import app; "
            f"r = CliRunner().invoke(app, ['status', {str(script_run)!r}], "
            "env={'COLUMNS': '200'}); print(r.stdout); "
            "print('HEAVY', sorted(m for m in ('torch', 'parsl', 'gpytorch', 'matplotlib') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    fine = next(line for line in done.stdout.splitlines() if "│ fine" in line)
    assert fine.split("│")[2].strip() == "4"  # rows
    assert "HEAVY []" in done.stdout


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_help_and_version_import_no_heavy_library(args):
    code = ("import sys; from typer.testing import CliRunner; from campaign.cli import app; "
            f"r = CliRunner().invoke(app, {args!r}); assert r.exit_code == 0, r.stdout; "
            "print(sorted(m for m in ('torch', 'parsl', 'zarr', 'gpytorch', 'matplotlib', "
            "'MDAnalysis', 'learners') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- resume --budget --------------------------------------------------------------------
def test_resume_with_a_larger_budget_runs_more(run_copy):
    before, _ = committed(run_copy, "fine")
    assert len(before) == 4
    result = invoke("resume", str(run_copy), "--budget", "fine=8", "--no-report")
    assert result.exit_code == 0, result.stdout
    assert "task budget spent (fine=8)" in result.stdout
    after, counts = committed(run_copy, "fine")
    assert counts["fine"] == {"done": 8} and len(after) == 8
    np.testing.assert_array_equal(after.x[:4], before.x)  # the first 4 kept, not redone


@pytest.mark.parametrize(("value", "expected"), [
    ("fine=abc", "--budget fine=abc: must be an integer"),
    ("wall_time=soon", "--budget wall_time=soon: must be a number of seconds"),
    ("fine", "--budget must be SCALE=N"),
    ("fine=0", "tasks for scale 'fine' must be a positive integer"),
    ("finest=3", "budget names unknown scale 'finest'; did you mean 'fine'? scales: coarse, "
                 "fine"),
    ("rounds=0", "rounds: Input should be greater than or equal to 1"),
])
def test_resume_with_a_bad_budget_is_one_line_and_changes_nothing(run_copy, value, expected):
    _, counts = committed(run_copy, "fine")
    line = one_error_line(invoke("resume", str(run_copy), "--budget", value, "--no-report"))
    assert expected in line
    assert committed(run_copy, "fine")[1] == counts


def test_budget_changes_are_merged_and_none_lifts_a_limit():
    spec = Campaign(
        name="b", scales=[Scale("coarse", app=toy.langevin, walkers=toy.initial_walkers(1)),
                          Scale("fine", app=toy.smeared_energy)],
        promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
                              learner="exact_gp", acquisition="random", batch_size=2)],
        budget=Budget(fine=4, coarse=10, wall_time=60.0))
    changed = with_budget(spec, {"fine": 12, "coarse": None, "rounds": 3})
    assert isinstance(changed, Campaign)
    assert changed.budget.tasks == {"fine": 12}
    assert (changed.budget.rounds, changed.budget.wall_time) == (3, 60.0)
    assert spec.budget.tasks == {"fine": 4, "coarse": 10}  # the original is untouched
    with pytest.raises(SpecError, match="no budget ends the campaign"):
        with_budget(spec, {"fine": None, "wall_time": None})


# -- --out that is a file ---------------------------------------------------------------
def test_out_that_is_or_lies_under_a_file_is_one_line(tmp_path):
    script = tmp_path / "extras_campaign.py"
    script.write_text(SCRIPT)
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine\n")
    for out in (blocker, blocker / "run", blocker / "a" / "b"):
        line = one_error_line(invoke("run", str(script), "--site", "threads", "--out",
                                     str(out), "--no-report"))
        assert f"{blocker} is a file, not a directory" in line
    line = one_error_line(invoke("resume", str(blocker)))
    assert f"{blocker} is a file, not a run directory" in line
    assert blocker.read_text() == "mine\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_in_an_unwritable_folder_is_one_line(tmp_path):
    script = tmp_path / "extras_campaign.py"
    script.write_text(SCRIPT)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        line = one_error_line(invoke("run", str(script), "--site", "threads", "--out",
                                     str(locked / "run"), "--no-report"))
        assert f"{locked} is not writable" in line
    finally:
        locked.chmod(0o700)


# -- misspelled spec fields -------------------------------------------------------------
def promotion(**fields):
    base = dict(source="coarse", target="fine", features=toy.positions, learner="exact_gp",
                acquisition="random")
    return Promotion(**{**base, **fields})


def test_misspelled_field_is_named_with_the_closest_known_one():
    with pytest.raises(SpecError) as error:
        promotion(batchsize=8)
    message = str(error.value)
    assert message == ("invalid Promotion: batchsize: Extra inputs are not permitted "
                       "(unknown field 'batchsize'; did you mean 'batch_size'?)")
    with pytest.raises(SpecError, match=r"budjet.*did you mean 'budget'\?"):
        Campaign(name="x", scales=[Scale("a", app=toy.langevin, walkers=np.zeros((1, 2)))],
                 budjet=3)


def test_unknown_field_without_a_close_match_lists_the_fields():
    with pytest.raises(SpecError) as error:
        Scale("coarse", app=toy.langevin, colour="red")
    assert "unknown field 'colour'; fields: name, app, params," in str(error.value)


def test_large_inputs_are_never_printed_in_full():
    walkers = np.zeros((500, 3))
    with pytest.raises(SpecError) as error:
        Scale("a", app=toy.langevin, walker=walkers)
    assert "did you mean 'walkers'?" in str(error.value)
    assert "0., 0." not in str(error.value) and len(str(error.value)) < 160
    builds = [lambda: Scale("a", app="x" * 5000),
              lambda: Scale("a", app=toy.langevin, params=list(range(10_000))),
              lambda: Scale("a", app=toy.langevin, walkers=np.zeros(5000))]
    for build in builds:
        with pytest.raises(SpecError) as error:
            build()
        message = str(error.value)
        got = message[message.index("(got ") + 5:message.rindex(")")]
        assert "\n" not in message and len(got) <= 80, message
    assert "array of shape (5000,), float64" in message


def test_missing_field_does_not_dump_every_argument():
    with pytest.raises(SpecError) as error:
        promotion()
    assert str(error.value) == "invalid Promotion: batch_size: Field required"
