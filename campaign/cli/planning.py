"""``campaign plan``: run a campaign script on a simulated site (``campaign.plan``) and
print, and write as JSON, what an allocation of these nodes for these hours would give."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from campaign.cli.runs import parse_site_params
from campaign.cli.terminal import console, fail, setup_logging


def parse_nodes(pairs: list[str]) -> dict[str, int]:
    """``LABEL=N`` (``sim-fine=64``, or a scale name ``fine=64``) -> nodes per label."""
    nodes: dict[str, int] = {}
    for pair in pairs:
        label, sep, value = pair.partition("=")
        if not sep or not value.strip().isdigit() or int(value) < 1:
            fail(f"--nodes must be LABEL=N with N >= 1 (e.g. sim-fine=64), got '{pair}'")
        label = label.strip()
        nodes[label if label.startswith("sim-") or label == "train" else f"sim-{label}"] = int(
            value)
    return nodes


def plan(
    script: Annotated[Path, typer.Argument(help="Python file defining `campaign = Campaign(...)`")],
    site: Annotated[str, typer.Option(help="site whose node layout to simulate")] = "local",
    hours: Annotated[float, typer.Option(help="length of the allocation (virtual hours)")] = 1.0,
    nodes: Annotated[list[str] | None, typer.Option(
        help="LABEL=N nodes per executor (sim-fine=64 or fine=64; default 1 each)")] = None,
    durations: Annotated[list[str] | None, typer.Option(
        help="SCALE=MODEL (fixed:S, lognormal:MEAN,CV), a JSON file, or a run directory "
             "to replay; default: each app's measured time here")] = None,
    duration_scale: Annotated[float, typer.Option(
        help="multiply replayed durations (a run directory) by this")] = 1.0,
    site_param: Annotated[list[str] | None, typer.Option(help="KEY=VALUE for the site")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the plan here")] = None,
    out: Annotated[Path | None, typer.Option(
        help="run directory of the simulated run (default: a temporary folder)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Simulate the campaign on the site's layout for --hours on a virtual clock (the real
    engine, learners and selection; task durations from --durations) and print the tasks,
    node-hours, utilization, driver time and decision latency it would have."""
    from campaign.durations import parse_durations
    from campaign.plan import plan as run_plan
    from campaign.plan import plan_table, simulated_workers_from, site_workers_per_node, write_plan
    from campaign.script import ScriptError, load_campaign
    from campaign.spec import SpecError
    from site_configs import UnknownSiteError, UnknownSiteParameterError

    setup_logging(verbose)
    if not hours > 0:
        fail(f"--hours must be > 0, got {hours}")
    try:
        spec = load_campaign(script)
        models: dict[str, Any] = {}
        for source in durations or []:
            models.update(parse_durations(source, scale=duration_scale))
        per_node = site_workers_per_node(spec, site, parse_site_params(site_param or []))
    except (ScriptError, SpecError, UnknownSiteError, UnknownSiteParameterError, ValueError,
            FileNotFoundError) as error:
        fail(str(error))
    unknown = sorted(set(models) - {scale.name for scale in spec.scales})
    if unknown:
        fail(f"--durations names unknown scale(s) {', '.join(unknown)}; the campaign's scales "
             f"are {', '.join(s.name for s in spec.scales)}")
    given = parse_nodes(nodes or [])
    labels = {s.executor_label for s in spec.scales} | {"train"}
    if set(given) - labels:
        fail(f"--nodes names unknown executor(s) {', '.join(sorted(set(given) - labels))}; "
             f"known: {', '.join(sorted(labels))}")
    workers = simulated_workers_from(per_node, given)
    run_dir = out or Path(tempfile.mkdtemp(prefix="campaign-plan-"))
    console.print(f"simulating {spec.name} on {site} for {hours:g} h: "
                  + ", ".join(f"{label} {count} workers" for label, count in workers.items()),
                  highlight=False, soft_wrap=True)
    result = run_plan(spec, workers=workers, hours=hours, durations=models, out=run_dir,
                      per_node=per_node)
    result["site"] = site
    console.print(plan_table(result), highlight=False, soft_wrap=True)
    if json_path is not None:
        write_plan(result, json_path)
        console.print(f"plan written to {json_path}", highlight=False)
    if result["stop_reason"].startswith("interrupted"):
        raise typer.Exit(code=130)
