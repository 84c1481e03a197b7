"""The ``campaign`` command: run, resume, demo, status, report, export, and the lists of
sites, learners and policies. The CLI owns the terminal: library code logs, this module
prints. Every error is one line and a non-zero exit.

Heavy libraries (torch through ``learners``, Parsl, matplotlib) are imported inside the
commands that need them, so ``--help``, ``--version`` and ``status`` start quickly."""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer

from campaign.cli import checks, listings, planning, results, runs, state
from campaign.cli.terminal import console

__all__ = ["app"]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Active-learning multiscale simulation campaigns.")
DISTRIBUTION = "multiscale-campaign"


def _version(value: bool) -> None:
    if value:
        try:
            found = metadata.version(DISTRIBUTION)
        except metadata.PackageNotFoundError:
            found = "unknown (not installed: pip install -e .)"
        console.print(f"{DISTRIBUTION} {found}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="print the installed version and exit")] = False,
) -> None:
    """Active-learning multiscale simulation campaigns."""


for command in (runs.run, runs.resume, runs.demo, state.status, results.report,
                results.export, listings.learners, listings.policies, listings.sites,
                checks.validate, planning.plan):
    app.command()(command)
