"""``campaign validate``: run a campaign at its smallest size on threads and say what
would fail before the real run spends anything."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from campaign.cli.terminal import console, fail, setup_logging


def validate(
    script: Annotated[Path, typer.Argument(help="Python file defining `campaign = Campaign(...)`")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the campaign at its smallest size on threads (one walker segment, one task per
    promoted scale) and say what would fail, before the real run spends anything."""
    from campaign.script import ScriptError, load_campaign
    from campaign.spec import SpecError
    from campaign.validate import validate as validate_spec

    setup_logging(verbose)
    try:
        spec = load_campaign(script)
    except (ScriptError, SpecError) as error:
        fail(str(error))
    report = validate_spec(spec)
    counts = ", ".join(f"{name} {report.rows.get(name, 0)} rows" for name in report.task_counts)
    if report.ok:
        console.print(f"{spec.name}: valid ({counts}; {report.wall_seconds:.1f} s)",
                      highlight=False, soft_wrap=True)
        return
    for problem in report.problems:
        console.print(f"[bold red]problem:[/] {problem}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)
