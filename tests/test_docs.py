"""The examples in docstrings and in the README run."""

import doctest
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Every module listed here must hold at least one docstring example (checked below).
DOCUMENTED = ["campaign", "campaign.spec", "campaign.store", "campaign.lock", "campaign.task",
              "campaign.signals", "campaign.validate", "learners", "learners.acquisition",
              "learners.gp", "learners.posterior", "learners.monitor", "learners.pool",
              "apps.external", "site_configs"]


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
