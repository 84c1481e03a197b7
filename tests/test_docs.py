"""The examples in docstrings, the README and docs/ run; the commands they show exist."""

import doctest
import importlib
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Every module listed here must hold at least one docstring example (checked below).
DOCUMENTED = ["campaign", "campaign.spec", "campaign.spec_errors", "campaign.store",
              "campaign.lock", "campaign.task", "campaign.ledger_schema",
              "campaign.signals", "campaign.validate", "campaign.clock", "campaign.durations",
              "campaign.plan", "campaign.site_render", "campaign.failures", "campaign.resources",
              "learners", "learners.acquisition",
              "learners.gp", "learners.posterior", "learners.monitor", "learners.pool",
              "learners.gradient_gp", "learners.recalibration", "learners.deep_kernel",
              "apps.external", "apps.md",
              "site_configs"]


@pytest.mark.parametrize("module_name", DOCUMENTED)
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    failures, attempted = doctest.testmod(module, optionflags=flags)
    assert attempted > 0, f"{module_name} has no docstring example: add one or unlist it"
    assert failures == 0


def test_readme_campaign_example_builds():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    example = next(block for block in blocks if "Campaign(" in block)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["campaign"].promotions[0].batch_size == 8


def test_readme_names_the_two_commands_first():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block


def test_examples_are_short_scripts():
    for script in (ROOT / "examples").glob("*.py"):
        lines = [line for line in script.read_text().splitlines() if line.strip()]
        assert len(lines) <= 120, script


# -- every code example in README.md and docs/*.md runs ------------------------------------
#
# Each ```python block runs on its own (a fresh namespace, __name__ "docs_example") in a
# fresh working directory that holds a copy of a small real run at runs/mb: the demo
# campaign of examples/muller_brown.py, cut down (2 walkers, 12 fine tasks, cheap apps),
# run once per session on the threads site. A block that cannot run here is preceded by
# `<!-- not run: REASON -->`; the reason must be given. Blocks of existing pages that
# would need a cluster run against a stand-in named in STAND_INS instead. A block marked
# `<!-- file: NAME -->` is a file the reader saves (the quick start's campaign script):
# it runs like the others, and test_quickstart_campaign_through_its_commands saves it and
# runs the page's commands on it.

DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!--(?P<marker>[^>]*)-->[ \t]*\n)?```(?P<lang>[\w-]*)\n(?P<code>.*?)```",
                   flags=re.S)
NOT_RUN = re.compile(r"^\s*not run:\s*(?P<reason>\S.*?)\s*$", flags=re.S)


def doc_blocks(lang: str) -> list[tuple[str, int, str, str | None]]:
    """(page, line, code, marker) of every ```lang block of the documentation."""
    found = []
    for page in DOC_PAGES:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            if match["lang"] == lang:
                line = text.count("\n", 0, match.start("code")) + 1
                found.append((str(page.relative_to(ROOT)), line, match["code"],
                              match["marker"]))
    return found


PYTHON_BLOCKS = doc_blocks("python")


class SiteStandIn:
    """Stands for a campaign in docs/sites.md: ``run`` builds the Parsl config of the
    site it names through the real factory (``address`` given, since this machine has
    none of the cluster's interfaces) instead of submitting jobs, so the block's site,
    parameters and overrides are checked."""

    def __init__(self, scales: list[str]) -> None:
        self.scales = scales
        self.configs: list = []

    def run(self, site: str = "local", out: str | None = None, **params):
        from site_configs import get_config

        params.setdefault("address", "10.11.12.13")
        config = get_config(site, scales=self.scales, run_dir=str(Path(out or "runs") /
                                                                   "parsl"), **params)
        self.configs.append(config)
        return config


STAND_INS = {"docs/sites.md": lambda: {"campaign": SiteStandIn(scales=["aa", "cg"])}}


def make_docs_run(run_dir: Path) -> None:
    """The demo campaign of examples/muller_brown.py at a test's size, into run_dir."""
    from functools import partial

    from apps import toy
    from campaign.engine import Engine
    from campaign.script import load_campaign
    from campaign.spec import Budget
    from learners import ExactGP

    sys.modules.pop("muller_brown", None)
    try:
        spec = load_campaign(ROOT / "examples" / "muller_brown.py")
    finally:
        sys.modules.pop("muller_brown", None)
    coarse, fine = spec.scale("coarse"), spec.scale("fine")
    fields = {name: getattr(spec, name) for name in type(spec).model_fields}
    fields.update(
        scales=[coarse.model_copy(update={"params": {"n_steps": 2000, "stride": 100},
                                          "walkers": coarse.walkers[:2]}),
                fine.model_copy(update={"params": {"n_samples": 4096}})],
        promotions=[spec.promotions[0].model_copy(update={
            "batch_size": 4, "learner": ExactGP(restarts=1, iterations=60),
            "reference": partial(toy.reference, resolution=25)})],
        budget=Budget(fine=12, coarse=8))
    summary = Engine(type(spec)(**fields), run_dir, site="threads").run()
    assert summary.rows["fine"] == 12, summary


@pytest.fixture(scope="session")
def docs_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("docs-run") / "mb"
    make_docs_run(run_dir)
    return run_dir


@pytest.mark.parametrize(("page", "line", "code", "marker"), PYTHON_BLOCKS,
                         ids=[f"{page}:{line}" for page, line, _, _ in PYTHON_BLOCKS])
def test_doc_python_block_runs(page, line, code, marker, docs_run, tmp_path, monkeypatch):
    if marker is not None and NOT_RUN.match(marker):
        pytest.skip(f"{page}:{line} not run: {NOT_RUN.match(marker)['reason']}")
    shutil.copytree(docs_run, tmp_path / "runs" / "mb")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "docs_example", **STAND_INS.get(page, dict)()}
    source = "\n" * (line - 1) + code  # tracebacks point at the page's own line numbers
    exec(compile(source, str(ROOT / page), "exec"), namespace)  # noqa: S102 - our docs


def test_unrun_blocks_say_why_and_are_rare():
    markers = [(page, line, marker) for page, line, _, marker in PYTHON_BLOCKS if marker]
    for page, line, marker in markers:
        if "not run" in marker:
            assert NOT_RUN.match(marker), f"{page}:{line}: write <!-- not run: REASON -->"
    unrun = [m for m in markers if NOT_RUN.match(m[2])]
    assert len(unrun) <= max(1, len(PYTHON_BLOCKS) // 10), unrun
    assert len(PYTHON_BLOCKS) >= 10  # the pages keep their examples


def test_the_docs_run_is_the_demo_campaign(docs_run):
    from campaign.ledger import Ledger

    ledger = Ledger(docs_run / "ledger.sqlite", read_only=True)
    try:
        assert ledger.fact("name") == "muller_brown"
        assert ledger.committed_rows("fine") == 12
    finally:
        ledger.close()


# -- commands the docs show exist ---------------------------------------------------------

COMMAND = re.compile(r"(?:^|[\s;`(])campaign ([a-z][a-z-]*)((?:[ \t]+[^\s;#`|&)]+)*)")


def shown_commands() -> list[tuple[str, str, list[str]]]:
    """(where, subcommand, options) for every `campaign X ...` in a bash block, and every
    `campaign X` in inline code, of the documentation."""
    shown = []
    for page, line, code, _ in doc_blocks("bash"):
        for offset, text in enumerate(code.splitlines()):
            text = text.split("#", 1)[0]
            for match in COMMAND.finditer(text):
                options = [t.split("=", 1)[0] for t in match[2].split() if t.startswith("--")]
                shown.append((f"{page}:{line + offset}", match[1], options))
    for page in DOC_PAGES:
        for inline in re.findall(r"`(campaign [a-z][^`]*)`", page.read_text()):
            words = inline.split()
            options = [t.split("=", 1)[0] for t in words[2:] if t.startswith("--")]
            shown.append((str(page.relative_to(ROOT)), words[1], options))
    return shown


def test_every_campaign_command_shown_exists_with_its_options():
    import typer.main

    from campaign.cli import app

    group = typer.main.get_command(app)
    shown = shown_commands()
    assert {name for _, name, _ in shown} >= {"run", "resume", "status", "report", "export",
                                              "validate", "sites", "learners", "policies"}
    for where, name, options in shown:
        assert name in group.commands, f"{where}: `campaign {name}` is not a command"
        known = {"--help", "-h"}
        for param in group.commands[name].params:
            known.update(param.opts)
            known.update(param.secondary_opts)
        for option in options:
            assert option in known, f"{where}: `campaign {name}` has no option {option}"


def test_every_subcommand_help_exits_zero():
    from typer.testing import CliRunner

    from campaign.cli import app

    runner = CliRunner()
    for name in sorted({name for _, name, _ in shown_commands()}):
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)


def test_make_targets_and_benchmark_modules_shown_exist():
    makefile = (ROOT / "Makefile").read_text()
    text = "\n".join(page.read_text() for page in DOC_PAGES)
    for target in set(re.findall(r"\bmake ([a-z]+)\b", text)):
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"no make target {target}"
    for module in set(re.findall(r"python -m benchmarks\.(\w+)", text)):
        folder = ROOT / "benchmarks"
        assert ((folder / f"{module}.py").is_file()
                or (folder / module / "__main__.py").is_file()), module


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of a page."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", page.read_text(), flags=re.S),
                          flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_doc_links_point_at_files_and_headings():
    for page in DOC_PAGES:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text()):
            if "://" in target:
                continue
            linked = page.parent / target if target else page
            assert linked.exists(), f"{page.name}: broken link {target}"
            if anchor and linked.suffix == ".md":
                assert anchor in anchors(linked), f"{page.name}: no heading #{anchor} in {target}"


def test_index_lists_every_page():
    index = (ROOT / "docs" / "index.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "index.md":
            assert f"({page.name})" in index, f"docs/index.md does not list {page.name}"
    readme = (ROOT / "README.md").read_text()
    assert "docs/index.md" in readme


# -- the start-up figures ------------------------------------------------------------------


def test_startup_benchmark_runs(tmp_path):
    from benchmarks import startup

    report = startup.main(["--repeats", "1", "--only", "help,status",
                           "--json", str(tmp_path / "startup.json")])
    records = {r["command"]: r for r in report["records"]}
    assert set(records) == {"python", "help", "status"}
    for r in records.values():
        assert r["runs"] and r["min_seconds"] <= r["median_seconds"]
    assert records["help"]["argv"] == ["campaign", "--help"]
    assert "torch" not in records["status"]["imports"]
    assert (tmp_path / "startup.json").is_file()


def test_startup_figures_in_the_docs_are_the_json():
    import json

    figures = json.loads((ROOT / "docs" / "results" / "startup.json").read_text())
    cli = (ROOT / "docs" / "cli.md").read_text()
    assert "docs/results/startup.json" in cli and "python -m benchmarks.startup" in cli
    rows = {line.split("`")[1]: line for line in cli.splitlines() if line.startswith("| `")}
    for record in figures["records"]:
        row = rows[" ".join(record["argv"])]
        cells = [cell.strip() for cell in row.split("|")]
        assert cells[2:4] == [f"{record['median_seconds']:.2f}", f"{record['min_seconds']:.2f}"]
        if record["imports"] is not None:
            assert set(cells[4].replace("none", "").replace(",", " ").split()) == set(
                record["imports"]), record["command"]


# -- the quick start's own campaign, through the commands it shows -------------------------


def file_block(name: str) -> str:
    """The block that a page marks `<!-- file: NAME -->` (the file a reader saves)."""
    found = [code for _, _, code, marker in PYTHON_BLOCKS
             if marker and marker.strip() == f"file: {name}"]
    assert len(found) == 1, f"one block must be marked <!-- file: {name} -->"
    return found[0]


@pytest.mark.slow
def test_quickstart_campaign_through_its_commands(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from campaign.cli import app

    (tmp_path / "my_campaign.py").write_text(file_block("my_campaign.py"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def campaign(*args: str) -> str:
        result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
        assert result.exit_code == 0, (args, result.output)
        return result.output

    sys.modules.pop("my_campaign", None)
    try:
        assert "my_campaign: valid" in campaign("validate", "my_campaign.py")
        # the page runs it on `local`; threads is the same engine without worker processes
        campaign("run", "my_campaign.py", "--site", "threads", "--out", "runs/mine",
                 "--no-report")
        assert "task budget spent (fine=24)" in campaign("status", "runs/mine")
        record = json.loads(campaign("status", "runs/mine", "--json", "--watch"))
        assert record["rows"]["fine"] == 24 and record["state"] == "stopped"
        campaign("export", "runs/mine", "--scale", "fine", "--format", "csv",
                 "--output", "fine.csv")
        assert len((tmp_path / "fine.csv").read_text().splitlines()) == 25
        campaign("export", "runs/mine", "--scale", "fine", "--format", "netcdf")
        assert (tmp_path / "mine-fine.nc").is_file()
        campaign("resume", "runs/mine", "--budget", "fine=32", "--no-report")
        record = json.loads(campaign("status", "runs/mine", "--json"))
        assert record["rows"]["fine"] == 32 and record["resumed"] == 1
    finally:
        sys.modules.pop("my_campaign", None)
