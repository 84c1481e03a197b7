"""``campaign validate``: run a campaign at its smallest size on threads and say what
would fail before the real run spends anything; with ``--site``, first refuse a scale's
resource request the site's node cannot meet, then render the site's Parsl config and
each executor's batch script without submitting (:mod:`campaign.site_render`)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from campaign.cli.runs import SiteParamOption, parse_site_params
from campaign.cli.terminal import console, fail, setup_logging


def validate(
    script: Annotated[Path, typer.Argument(help="Python file defining `campaign = Campaign(...)`")],
    site: Annotated[str | None, typer.Option(
        help="also render this site's Parsl config and batch scripts, submitting nothing")
    ] = None,
    site_param: SiteParamOption = None,
    out: Annotated[Path | None, typer.Option(
        help="folder for the rendered site (default: a new temporary folder, kept)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the campaign at its smallest size on threads (one walker segment, one task per
    promoted scale) and say what would fail, before the real run spends anything."""
    from campaign.script import ScriptError, load_campaign
    from campaign.spec import SpecError
    from campaign.validate import validate as validate_spec

    setup_logging(verbose)
    params = parse_site_params(site_param or [])
    try:
        spec = load_campaign(script)
    except (ScriptError, SpecError) as error:
        fail(str(error))
    if site is not None:
        check_site_resources(site, spec.scales, params)
        print_site(site, spec.scales, params, out)
    elif params:
        fail("--site-param needs --site")
    report = validate_spec(spec)
    counts = ", ".join(f"{name} {report.rows.get(name, 0)} rows" for name in report.task_counts)
    if report.ok:
        console.print(f"{spec.name}: valid ({counts}; {report.wall_seconds:.1f} s)",
                      highlight=False, soft_wrap=True)
        return
    for problem in report.problems:
        console.print(f"[bold red]problem:[/] {problem}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def check_site_resources(site: str, scales: list[Any], params: dict[str, Any]) -> None:
    """Exit 2 with one line per scale whose resources the site's node cannot meet (the
    scale, what it asked, what the node offers); a one-line exit for an unknown site."""
    from site_configs import UnknownSiteError, UnknownSiteParameterError, check_resources

    try:
        problems = check_resources(site, scales, **params)
    except (UnknownSiteError, UnknownSiteParameterError, ValueError) as error:
        fail(str(error))
    if not problems:
        return
    for problem in problems:
        console.print(f"[bold red]error:[/] {escape(problem)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def print_site(site: str, scales: list[Any], params: dict[str, Any], out: Path | None) -> None:
    """Render ``site`` for the spec's ``scales`` (names and resources) into ``out`` and
    print where each piece is and how workers start; a one-line exit for an unknown site
    or parameter."""
    from campaign.site_render import render_site
    from site_configs import UnknownSiteError, UnknownSiteParameterError

    folder = out or Path(tempfile.mkdtemp(prefix="campaign-site-"))
    try:
        rendering = render_site(site, [scale.name for scale in scales], folder, params,
                                {scale.name: scale.resources for scale in scales})
    except (UnknownSiteError, UnknownSiteParameterError, ValueError) as error:
        fail(str(error))
    say = lambda text: console.print(text, highlight=False, soft_wrap=True)  # noqa: E731
    say(f"site {site}: Parsl config written to {rendering.config_file} (nothing submitted; "
        "values Parsl sets when an executor starts, such as ports, read <name>)")
    for executor in rendering.executors:
        head = f"[bold]{executor.label}[/] ({executor.provider})"
        if executor.problem:
            say(f"{head}: [bold red]cannot render:[/] {escape(executor.problem)}")
            continue
        if executor.script is not None:
            would = f"; would run: {executor.commands[0]}" if executor.commands else ""
            say(f"{head}: batch script {executor.script}{escape(would)}")
            for line in executor.directives:
                say(f"    {escape(line)}")
        else:
            say(f"{head}: no batch script (workers start on this host)")
        for line in executor.launch_lines:
            say(f"    {escape(line)}")
