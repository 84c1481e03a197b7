"""What the distribution installs: only the project's own top-level packages (not the
generic ``benchmarks``, which would clash with a user's own), and every third-party
library the installed packages import is declared."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from fnmatch import fnmatch
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "multiscale-campaign"
PACKAGES = {"campaign", "apps", "learners", "site_configs"}
# imported only inside a function that says how to install it when it is missing
# xarray: optional reader; PeptideBuilder, Bio: only apps/data/build_deca_alanine.py
# (the shipped PDBs' one-time generator; `pip install -e .[structures]`)
OPTIONAL = {"xarray", "PeptideBuilder", "Bio"}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def included(name: str) -> bool:
    patterns = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    return any(fnmatch(name, pattern) for pattern in patterns)


def test_benchmarks_is_not_an_installed_top_level_package():
    assert not included("benchmarks") and not included("benchmarks.throughput")
    assert all(included(name) for name in PACKAGES)
    installed = set(metadata.distribution(DISTRIBUTION).read_text("top_level.txt").split())
    assert "benchmarks" not in installed, "reinstall: pip install -e . --no-deps"
    assert installed == PACKAGES


def test_benchmarks_run_from_the_checkout():
    import benchmarks  # tests/ run from the repository root (pytest pythonpath = ".")

    assert Path(benchmarks.__file__).resolve().parent == ROOT / "benchmarks"


def imported_libraries() -> dict[str, str]:
    """Top-level names the installed packages import absolutely -> a file importing it."""
    found: dict[str, str] = {}
    for package in sorted(PACKAGES):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return {name: path for name, path in found.items()
            if name not in sys.stdlib_module_names and name not in PACKAGES
            and name != "__future__"}


def normalized(requirement: str) -> str:
    return re.split(r"[ ;<>=!~\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_every_imported_library_is_declared():
    declared = {normalized(r) for r in pyproject()["project"]["dependencies"]}
    providers = metadata.packages_distributions()
    missing = {}
    for name, path in imported_libraries().items():
        if name in OPTIONAL:
            continue
        distributions = {d.lower().replace("_", "-") for d in providers.get(name, [name])}
        if not distributions & declared:
            missing[name] = path
    assert not missing, f"imported but not in [project] dependencies: {missing}"
    assert {"pyyaml", "psutil"} <= declared
