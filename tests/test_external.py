"""Tests of external executables as scales (apps.external)."""

from __future__ import annotations

import math
import os
import pickle
import re
import sys
import textwrap
import threading
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from apps import toy
from apps.external import (
    MULLER_BROWN,
    ExternalError,
    ExternalProgram,
    ExternalTimeout,
    InputError,
    OutputError,
    external_app,
    format_value,
    parse_key_values,
    render,
)

ROOT = Path(__file__).resolve().parents[1]
MB_TEMPLATE = "x = $x0\ny = $x1\n"


def script(tmp_path: Path, name: str, body: str) -> Path:
    """An executable POSIX sh script in tmp_path."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def running(pid: int) -> bool:
    """Whether pid is a live process (a zombie left to a non-reaping init is not)."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc").is_dir():
        try:
            text = stat.read_text()
        except FileNotFoundError:
            return False
        return text[text.rindex(")") + 2] not in "ZX"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def group_members(group: int) -> list[int]:
    """Live processes of a process group (Linux /proc; empty elsewhere)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        if fields[0] not in ("Z", "X") and int(fields[2]) == group:
            members.append(int(stat.parent.name))
    return members


def mb_reference(x: float, y: float) -> tuple[float, float, float]:
    """The example program's arithmetic in Python floats, in the same order."""
    energy = gx = gy = 0.0
    for A, a, b, c, x0, y0 in zip((-200.0, -100.0, -170.0, 15.0), (-1.0, -1.0, -6.5, 0.7),
                                  (0.0, 0.0, 11.0, 0.6), (-10.0, -10.0, -6.5, 0.7),
                                  (1.0, 0.0, -0.5, -1.0), (0.0, 0.5, 1.5, 1.0), strict=True):
        dx, dy = x - x0, y - y0
        e = A * math.exp(a * dx * dx + b * dx * dy + c * dy * dy)
        energy += e
        gx += e * (2 * a * dx + b * dy)
        gy += e * (b * dx + 2 * c * dy)
    return energy, gx, gy


# -- rendering ------------------------------------------------------------------------

def test_floats_are_written_so_they_read_back_exactly():
    assert format_value(np.float64(0.5)) == "0.5"
    assert format_value(np.float32(0.1)) == repr(float(np.float32(0.1)))
    assert format_value(np.float16(1.5)) == "1.5"
    assert format_value(np.int64(7)) == "7" and format_value(3) == "3"
    assert format_value(np.array([[1.0, 2.5], [np.float64(3), -0.0]])) == "1.0 2.5\n3.0 -0.0"
    assert format_value([np.float64(0.25), 1]) == "0.25 1.0"
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.standard_normal(500) * 10.0 ** rng.integers(-300, 300, 500),
                             [0.1, 1 / 3, 5e-324, -1e-300, 1.7976931348623157e308, 2**53 + 1]])
    text = render("v = $v", v=values)
    assert "np." not in text and "float64" not in text
    read = np.array([float(token) for token in text.removeprefix("v = ").split()])
    assert np.array_equal(read.view(np.int64), values.view(np.int64))  # bit for bit


@pytest.mark.parametrize("value, message", [
    (np.float64("nan"), "not finite"), (math.inf, "not finite"),
    (np.array([1.0, np.nan]), r"v\[1\] is not finite"), (True, "bool"),
    (1 + 2j, "cannot write a complex"), ({"a": 1}, "cannot write a dict"),
    (np.zeros((2, 2, 2)), "1-D or 2-D"), (["a", "b"], "real numbers"),
])
def test_values_without_an_exact_text_are_rejected(value, message):
    with pytest.raises(InputError, match=message):
        render("v = $v", v=value)


def test_template_fields_must_be_provided_and_well_formed():
    with pytest.raises(InputError, match=r"field\(s\) 'width' not provided; given: x"):
        render("x = $x\nw = ${width}\n", x=1.0)
    with pytest.raises(InputError, match="starts no field at character 4"):
        render("x = $1", x=1.0)
    assert render("cost = $$5, x = $x", x=0.5) == "cost = $5, x = 0.5"


def test_app_rejects_bad_inputs_before_running(tmp_path):
    app = external_app(["false"], template="x = $x\nw = $width\n", outputs=["e"],
                       workdir_root=tmp_path)
    with pytest.raises(InputError, match="x is not finite"):
        app(np.array([np.nan, 1.0]), seed=0, width=1.0)
    with pytest.raises(InputError, match="one configuration"):
        app(np.zeros((2, 2)), seed=0, width=1.0)
    with pytest.raises(InputError, match="'width' not provided"):
        app(np.zeros(2), seed=0)
    with pytest.raises(InputError, match="width is not finite"):
        app(np.zeros(2), seed=0, width=np.float64("inf"))
    with pytest.raises(InputError, match="'widht' not used by the template"):
        app(np.zeros(2), seed=0, width=1.0, widht=2.0)
    with pytest.raises(InputError, match="clash"):
        app(np.zeros(2), seed=0, width=1.0, x0=2.0)
    assert not any(tmp_path.iterdir())  # nothing ran, no directory was made
    with pytest.raises(ValueError, match="non-empty sequence"):
        external_app("prog", template="", outputs=["e"])
    with pytest.raises(ValueError, match="timeout must be > 0"):
        external_app(["prog"], template="", outputs=["e"], timeout=0)


def test_input_file_round_trips_exactly_through_a_program(tmp_path):
    x = np.array([np.float64(0.1), 1 / 3, -1e-300, 5e-324, np.nextafter(1.0, 2.0)])
    app = external_app(["cp", "input.txt", "output.txt"], name="copy", workdir_root=tmp_path,
                       template="x = $x\nwidth = $width\nn = $n\nseed = $seed\n",
                       outputs=["width", "n", "seed"])
    result = app(x, seed=12, width=np.float64(0.5), n=np.int32(4))
    (workdir,) = tmp_path.iterdir()
    text = (workdir / "input.txt").read_text()
    assert "np." not in text and "width = 0.5\n" in text
    assert np.array_equal(parse_key_values(workdir / "input.txt", ["x"])["x"], x)
    assert result["x"].shape == (1, 5) and np.array_equal(result["x"][0], x)
    assert result["width"].tolist() == [0.5] and result["n"].tolist() == [4.0]
    assert result["seed"].tolist() == [12.0]


# -- the example program --------------------------------------------------------------

def test_example_program_matches_the_python_reference_exactly(tmp_path):
    assert os.access(MULLER_BROWN, os.X_OK), "apps/data/muller_brown.sh must be executable"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "data/*" in pyproject["tool"]["setuptools"]["package-data"]["apps"]
    app = external_app([MULLER_BROWN, "input.txt", "output.txt"], name="muller_brown",
                       template=MB_TEMPLATE, outputs=["energy", "gx", "gy"],
                       workdir_root=tmp_path, timeout=10)
    rng = np.random.default_rng(1)
    points = np.vstack([toy.MINIMA, [[0.1, 1 / 3], [5e-324, -0.0]],
                        rng.uniform([-1.5, -0.5], [1.2, 2.0], (5, 2))])
    for seed, point in enumerate(points):
        result = app(point, seed=seed)
        (workdir,) = tmp_path.glob(f"task-{seed}-*")
        echoed = parse_key_values(workdir / "output.txt", ["x", "y"])
        assert (echoed["x"], echoed["y"]) == (point[0], point[1])  # the program read x exactly
        expected = mb_reference(float(point[0]), float(point[1]))
        assert (result["energy"][0], result["gx"][0], result["gy"][0]) == expected
        np.testing.assert_allclose(result["energy"], toy.muller_brown(point[None]), rtol=1e-12)
        np.testing.assert_allclose(np.concatenate([result["gx"], result["gy"]]),
                                   toy.muller_brown_gradient(point[None])[0],
                                   rtol=1e-10, atol=1e-9)
    assert result["x"].tolist() == [points[-1].tolist()]


def test_example_program_refuses_an_input_it_cannot_read(tmp_path):
    app = external_app([MULLER_BROWN], name="muller_brown", template="x = np.float64($x0)\n",
                       outputs=["energy"], workdir_root=tmp_path)
    with pytest.raises(ExternalError) as caught:
        app(np.array([0.5, 0.5]), seed=3)
    message = str(caught.value)
    assert "'muller_brown' exited with code 2" in message
    assert '"x" is not a number: "np.float64(0.5)"' in message
    assert not list(tmp_path.glob("task-3-*/output.txt"))


# -- failures -------------------------------------------------------------------------

def test_nonzero_exit_names_program_code_workdir_and_stderr(tmp_path):
    program = script(tmp_path, "solver", """\
        echo "step 1 ok"
        for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22; do
            echo "warning $i" >&2
        done
        echo "fatal: matrix is singular" >&2
        exit 3
        """)
    app = external_app([program], template="x = $x\n", outputs=["e"],
                       workdir_root=tmp_path / "work")
    with pytest.raises(ExternalError) as caught:
        app(np.array([1.0]), seed=5)
    error = caught.value
    workdir = Path(error.workdir)
    assert workdir.parent == tmp_path / "work" and workdir.name.startswith("task-5-")
    message = str(error)
    assert message.startswith(f"'solver' exited with code 3 (workdir {workdir}); "
                              "last lines of stderr:")
    assert message.endswith("fatal: matrix is singular") and "warning 22" in message
    assert "warning 2\n" not in message  # only the last 20 lines
    assert (workdir / "stdout.txt").read_text() == "step 1 ok\n"
    assert "fatal" in (workdir / "stderr.txt").read_text()
    assert (workdir / "input.txt").read_text() == "x = 1.0\n"
    assert pickle.loads(pickle.dumps(error)).args == error.args  # crosses HTEX intact


def test_signal_death_and_missing_program_are_reported(tmp_path):
    program = script(tmp_path, "crasher", "echo 'about to crash' >&2\nkill -SEGV $$\n")
    app = external_app([program], template="", outputs=["e"], workdir_root=tmp_path / "w")
    with pytest.raises(ExternalError,
                       match=r"(?s)'crasher' was killed by SIGSEGV .*about to crash"):
        app(np.zeros(1), seed=0)
    missing = external_app([tmp_path / "no-such-program"], template="", outputs=["e"],
                           workdir_root=tmp_path / "w")
    with pytest.raises(ExternalError, match="(?s)'no-such-program' could not start .*No such file"):
        missing(np.zeros(1), seed=0)


SLEEPER = """\
    echo $$ > leader.pid
    ( {trap} sh -c 'echo $$ > grandchild.pid; exec sleep 30' ) &
    echo $! > child.pid
    sleep 30
    """


@pytest.mark.parametrize("trap, stopped_by", [("", "SIGTERM"), ("trap '' TERM;", "SIGKILL")])
def test_timeout_kills_the_whole_process_group(tmp_path, trap, stopped_by):
    program = script(tmp_path, "sleeper", SLEEPER.format(trap=trap))
    timeout, grace = 1.0, 1.0
    app = external_app([program], template="", outputs=["e"], workdir_root=tmp_path / "w",
                       timeout=timeout, grace=grace)
    started = time.monotonic()
    with pytest.raises(ExternalTimeout) as caught:
        app(np.zeros(1), seed=0)
    elapsed = time.monotonic() - started
    workdir = Path(caught.value.workdir)
    assert str(caught.value) == (f"'sleeper' ran past 1 s (killed with {stopped_by}; "
                                 f"workdir {workdir})")
    assert timeout <= elapsed < timeout + grace + 2.5  # 2.5: a busy machine
    if stopped_by == "SIGKILL":
        assert elapsed >= timeout + grace  # SIGTERM was ignored for the grace period
    pids = {name: int((workdir / f"{name}.pid").read_text()) for name in
            ("leader", "child", "grandchild")}
    assert not [name for name, pid in pids.items() if running(pid)]
    if Path("/proc").is_dir():
        assert group_members(pids["leader"]) == []


def test_parsl_walltime_interrupting_the_call_stops_the_program(tmp_path):
    from parsl.app.errors import AppTimeout
    from parsl.app.python import timeout as parsl_walltime

    program = script(tmp_path, "sleeper", SLEEPER.format(trap=""))
    app = external_app([program], template="", outputs=["e"], workdir_root=tmp_path / "w",
                       grace=1.0)  # no timeout of its own: only Parsl's walltime
    raised: list[BaseException] = []

    def task() -> None:
        try:
            parsl_walltime(app, 1.0)(np.zeros(1), seed=0)
        except BaseException as error:  # noqa: BLE001 - the test inspects it
            raised.append(error)

    started = time.monotonic()
    worker = threading.Thread(target=task)
    worker.start()
    worker.join(10)
    assert not worker.is_alive() and time.monotonic() - started < 1.0 + 1.0 + 2.5
    assert len(raised) == 1 and isinstance(raised[0], AppTimeout)
    (workdir,) = (tmp_path / "w").iterdir()
    for name in ("leader", "child", "grandchild"):
        assert not running(int((workdir / f"{name}.pid").read_text())), name


def test_processes_left_behind_after_exit_are_stopped(tmp_path):
    program = script(tmp_path, "leaky", """\
        sleep 30 &
        echo $! > orphan.pid
        echo "e = 1.5" > output.txt
        """)
    app = external_app([program], template="", outputs=["e"], workdir_root=tmp_path / "w",
                       grace=1.0)
    started = time.monotonic()
    assert app(np.zeros(1), seed=0)["e"].tolist() == [1.5]
    assert time.monotonic() - started < 3
    (workdir,) = (tmp_path / "w").iterdir()
    assert not running(int((workdir / "orphan.pid").read_text()))


# -- outputs --------------------------------------------------------------------------

def test_parse_key_values_reads_numbers_and_fails_loudly(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("# results\nenergy = -1.25\nforces = 1 2.5D+00 -3e-2\nstatus = ok\n"
                    "free text line\nbad = nan\n")
    values = parse_key_values(path, ["energy", "forces"])
    assert values["energy"] == -1.25
    assert values["forces"].tolist() == [1.0, 2.5, -0.03]
    with pytest.raises(OutputError, match=rf"^{re.escape(str(path))}: missing 'work' "
                                          r"\(found: energy, forces, status, bad\)"):
        parse_key_values(path, ["energy", "work"])
    with pytest.raises(OutputError, match=rf"{re.escape(str(path))} line 6: 'bad' = 'nan' "
                                          "is not finite"):
        parse_key_values(path, ["bad"])
    with pytest.raises(OutputError, match="line 4: 'status' = 'ok' is not a number"):
        parse_key_values(path, ["status"])
    path.write_text("e = 1\ne = 2\nf =\n")
    with pytest.raises(OutputError, match="line 2: 'e' given twice"):
        parse_key_values(path, ["e"])
    with pytest.raises(OutputError, match="line 3: 'f' has no value"):
        parse_key_values(path, ["f"])
    with pytest.raises(OutputError, match="output file not found"):
        parse_key_values(tmp_path / "absent.txt", ["e"])


def test_missing_or_nan_outputs_fail_the_call(tmp_path):
    nan = external_app(["sh", "-c", "echo 'energy = NaN' > output.txt"], name="nan_writer",
                       template="", outputs=["energy"], workdir_root=tmp_path / "w")
    with pytest.raises(OutputError, match=r"output.txt line 1: 'energy' = 'NaN' is not finite"):
        nan(np.zeros(1), seed=0)
    silent = external_app(["sh", "-c", "echo done"], name="silent", template="",
                          outputs=["energy"], workdir_root=tmp_path / "w")
    with pytest.raises(OutputError, match=r"'silent' exited 0 but wrote no output.txt "
                                          r"\(workdir .*\); last lines of stdout:\n  done"):
        silent(np.zeros(1), seed=0)
    partial = external_app(["sh", "-c", "echo 'gx = 1' > output.txt"], name="partial",
                           template="", outputs=["energy", "gx"], workdir_root=tmp_path / "w")
    with pytest.raises(OutputError, match="missing 'energy' \\(found: gx\\)"):
        partial(np.zeros(1), seed=0)


# -- work directories -----------------------------------------------------------------

def test_work_directory_is_fresh_per_attempt(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = external_app(["sh", "-c", 'ls > listing.txt; echo "n = $(wc -l < listing.txt)" '
                                    '> output.txt; echo "d = $PWD" >> output.txt'],
                       name="lister", template="x = $x\nwhere = $workdir\n", outputs=["n"],
                       env={"LC_ALL": "C"})
    monkeypatch.chdir(ROOT)  # the root was resolved when the app was made
    assert app.workdir_root == tmp_path / "artifacts" / "lister"
    app(np.array([1.0]), seed=4)
    (workdir,) = app.workdir_root.iterdir()
    assert re.fullmatch(r"task-4-[0-9a-f]{12}", workdir.name)
    assert f"where = {workdir}\n" in (workdir / "input.txt").read_text()
    assert (workdir / "listing.txt").read_text().split() == ["input.txt", "listing.txt",
                                                             "stderr.txt", "stdout.txt"]
    (workdir / "stale.txt").write_text("from an earlier attempt")
    app(np.array([1.0]), seed=4)  # same seed and input: the same directory, emptied first
    assert not (workdir / "stale.txt").exists()
    app(np.array([1.0]), seed=5)
    app(np.array([2.0]), seed=4)
    assert len(list(app.workdir_root.iterdir())) == 3
    throwaway = external_app(["sh", "-c", "echo 'n = 1' > output.txt"], name="throwaway",
                             template="", outputs=["n"], workdir_root=tmp_path / "t",
                             keep_workdir=False)
    throwaway(np.zeros(1), seed=0)
    assert list((tmp_path / "t").iterdir()) == []


def test_relative_program_path_is_resolved_when_the_app_is_made(tmp_path, monkeypatch):
    (tmp_path / "bin").mkdir()
    script(tmp_path / "bin", "prog", "echo 'n = 2' > output.txt\n")
    monkeypatch.chdir(tmp_path)
    app = external_app(["bin/prog"], template="", outputs=["n"], workdir_root="w")
    monkeypatch.chdir(ROOT)
    assert app.command == [str(tmp_path / "bin" / "prog")] and app.name == "prog"
    assert app(np.zeros(1), seed=0)["n"].tolist() == [2.0]


def test_app_pickles_for_remote_workers(tmp_path):
    app = external_app([MULLER_BROWN], name="muller_brown", template=MB_TEMPLATE,
                       outputs=["energy"], workdir_root=tmp_path, timeout=5)
    copy = pickle.loads(pickle.dumps(app))
    assert isinstance(copy, ExternalProgram) and repr(copy) == repr(app)
    assert copy(toy.MINIMA[0], seed=0)["energy"][0] == mb_reference(*toy.MINIMA[0].tolist())[0]


# -- campaigns and docs ---------------------------------------------------------------

def test_campaign_with_an_external_fine_scale_on_threads(tmp_path):
    from campaign import Budget, Campaign, Promotion, Scale
    from learners import ExactGP
    from learners.acquisition import MaxVariance

    fine = external_app([MULLER_BROWN, "input.txt", "output.txt"], name="muller_brown",
                        template=MB_TEMPLATE, outputs=["energy", "gx", "gy"],
                        workdir_root=tmp_path / "artifacts", timeout=10)
    campaign = Campaign(
        name="external",
        scales=[Scale("coarse", app=toy.langevin, params={"n_steps": 1000, "stride": 100},
                      walkers=toy.initial_walkers(2)),
                Scale("fine", app=fine)],
        promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
                              learner=ExactGP(restarts=1, iterations=30),
                              acquisition=MaxVariance(), batch_size=3, quantity="energy")],
        budget=Budget(fine=6, coarse=4),
    )
    summary = campaign.run(site="threads", out=tmp_path / "run")
    assert summary.rows["fine"] == 6 and not summary.failed
    assert not any(counts.get("quarantined") for counts in summary.task_counts.values())
    assert len(list((tmp_path / "artifacts").glob("task-*/output.txt"))) == 6

    import zarr

    store = zarr.open_group(str(tmp_path / "run" / "store.zarr"), mode="r")
    x, energy = store["fine/x"][:], store["fine/y/energy"][:]
    assert sorted(store["fine/y"].array_keys()) == ["energy", "gx", "gy"]
    assert [e for e in energy] == [mb_reference(*row)[0] for row in x.tolist()]


def test_example_script_and_doc_examples_run(tmp_path, monkeypatch):
    from campaign.script import load_campaign

    doc = (ROOT / "docs" / "external.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    example = (ROOT / "examples" / "external_scale.py").read_text()
    fine_scale = next(block for block in blocks if "muller_brown = external_app(" in block)
    assert fine_scale.split("\n", 2)[2] in example  # the doc shows the example's own code
    monkeypatch.chdir(tmp_path)  # their work directories are relative
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/external.md", "exec"), namespace)  # noqa: S102 - our docs
    assert namespace["paraboloid"](np.array([1.0, 2.0]), seed=0, curvature=2.0)["energy"] == 10
    energy = namespace["muller_brown"](toy.MINIMA[0], seed=0)["energy"]
    assert energy.tolist() == [mb_reference(*toy.MINIMA[0].tolist())[0]]
    frames = namespace["frames"](np.array([0.25, 0.5]), seed=1)
    assert frames["x"].tolist() == [[0.25, 0.5], [0.5, 0.25]]
    assert frames["energy"].tolist() == [1.5, 2.5]
    assert (tmp_path / "runs" / "artifacts" / "muller_brown").is_dir()

    sys.modules.pop("external_scale", None)
    try:
        spec = load_campaign(ROOT / "examples" / "external_scale.py")
    finally:
        sys.modules.pop("external_scale", None)
    app = spec.scale("fine").app
    assert isinstance(app, ExternalProgram) and app.command[0] == str(MULLER_BROWN)
    assert app.workdir_root == tmp_path / "runs" / "artifacts" / "muller_brown"
    assert spec.promotions[0].quantity == "energy"
