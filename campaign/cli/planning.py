"""``campaign plan``, and ``campaign run --simulate``: a campaign script on a simulated
site (``campaign.simulated``) with a real site's layout. ``plan`` prints, and writes as
JSON, what an allocation of these nodes for these hours would give (``campaign.plan``)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from campaign.cli.options import parse_site_params
from campaign.cli.terminal import console, fail, setup_logging

NodesOption = Annotated[list[str] | None, typer.Option(
    help="LABEL=N nodes per executor (sim-fine=64 or fine=64; default 1 each)")]
DurationsOption = Annotated[list[str] | None, typer.Option(
    help="SCALE=MODEL (fixed:S, lognormal:MEAN,CV), a JSON file, or a run directory "
         "to replay; a scale left out is assumed 600 s for the finest, 10x shorter "
         "per coarser scale")]
StandInOption = Annotated[list[str] | None, typer.Option(
    "--stand-in", help="SCALE=surrogate (the promoted quantity drawn from the surrogate), "
                       "SCALE=replay:RUN_DIR (an earlier run's outputs) or SCALE=real: "
                       "what answers for the app (a dry run unless real)")]
CheapOption = Annotated[float, typer.Option(
    help="a scale whose real app call takes more CPU seconds than this here is stood in "
         "after it (a dry run); 0 or less: every app runs for real")]


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


def parse_stand_ins(spec: Any, pairs: list[str]) -> tuple[dict[str, Any], set[str]]:
    """``SCALE=surrogate|replay:RUN_DIR|real`` -> (stand-ins, scales that run for real)."""
    from campaign.stand_ins import SurrogateDraw, recorded_from_run

    names = {scale.name for scale in spec.scales}
    targets = {promotion.target for promotion in spec.promotions}
    stand_ins: dict[str, Any] = {}
    real: set[str] = set()
    for pair in pairs:
        name, sep, kind = (part.strip() for part in pair.partition("="))
        if not sep or name not in names:
            fail(f"--stand-in must be SCALE=surrogate|replay:RUN_DIR|real for a scale of the "
                 f"campaign ({', '.join(sorted(names))}), got '{pair}'")
        if kind == "real":
            real.add(name)
        elif kind == "surrogate":
            if name not in targets:
                fail(f"--stand-in {pair}: scale '{name}' is no promotion's target, so no "
                     "surrogate predicts it; use replay:RUN_DIR")
            stand_ins[name] = SurrogateDraw()
        elif kind.startswith("replay:"):
            try:
                stand_ins[name] = recorded_from_run(kind.removeprefix("replay:"), name)
            except (FileNotFoundError, ValueError) as error:
                fail(f"--stand-in {pair}: {error}")
        else:
            fail(f"--stand-in {pair}: write surrogate, replay:RUN_DIR or real")
    return stand_ins, real


def simulated_site(spec: Any, site: str, site_params: dict[str, Any], nodes: list[str],
                   durations: list[str], duration_scale: float
                   ) -> tuple[dict[str, int], dict[str, int], dict[str, Any]]:
    """(workers per label, workers per node, duration models) for ``spec`` on ``site``'s
    layout with ``nodes``."""
    from campaign.durations import parse_durations
    from campaign.plan import simulated_workers_from, site_workers_per_node
    from site_configs import UnknownSiteError, UnknownSiteParameterError

    models: dict[str, Any] = {}
    try:
        for source in durations:
            models.update(parse_durations(source, scale=duration_scale))
        per_node = site_workers_per_node(spec, site, site_params)
    except (UnknownSiteError, UnknownSiteParameterError, ValueError,
            FileNotFoundError) as error:
        fail(str(error))
    unknown = sorted(set(models) - {scale.name for scale in spec.scales})
    if unknown:
        fail(f"--durations names unknown scale(s) {', '.join(unknown)}; the campaign's scales "
             f"are {', '.join(s.name for s in spec.scales)}")
    given = parse_nodes(nodes)
    labels = {s.executor_label for s in spec.scales} | {"train"}
    if set(given) - labels:
        fail(f"--nodes names unknown executor(s) {', '.join(sorted(set(given) - labels))}; "
             f"known: {', '.join(sorted(labels))}")
    return simulated_workers_from(per_node, given), per_node, models


def simulation_maker(site: str, site_params: dict[str, Any], nodes: list[str],
                     durations: list[str], stand_ins: list[str], cheap_seconds: float
                     ) -> Callable[[Any], Any]:
    """``campaign run --simulate``: ``spec -> campaign.simulated.Simulation`` on ``site``'s
    layout (durations a scale is not given are assumed, as a plan does)."""
    def make(spec: Any) -> Any:
        from campaign.durations import assumed_durations
        from campaign.simulated import Simulation

        workers, _, models = simulated_site(spec, site, site_params, nodes, durations, 1.0)
        outputs, real = parse_stand_ins(spec, stand_ins)
        assumed = assumed_durations([scale.name for scale in spec.scales])
        for name in assumed.keys() - models.keys():
            console.print(f"{name} durations assumed: {assumed[name].describe()} "
                          "(give --durations)", highlight=False)
        options = {"site": site, "site_params": site_params, "nodes": nodes,
                   "durations": durations, "stand_ins": stand_ins,
                   "cheap_seconds": cheap_seconds}
        return Simulation(workers=workers, durations={**assumed, **models}, outputs=outputs,
                          cheap_seconds=cheap_seconds if cheap_seconds > 0 else None,
                          real_apps=real, options=options)
    return make


def plan(
    script: Annotated[Path, typer.Argument(help="Python file defining `campaign = Campaign(...)`")],
    site: Annotated[str, typer.Option(help="site whose node layout to simulate")] = "local",
    hours: Annotated[float, typer.Option(help="length of the allocation (virtual hours)")] = 1.0,
    nodes: NodesOption = None,
    durations: DurationsOption = None,
    stand_in: StandInOption = None,
    cheap_seconds: CheapOption = 0.1,
    references: Annotated[bool, typer.Option(
        help="measure the surrogates' reference errors (their CPU is charged)")] = False,
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
    from campaign.plan import plan as run_plan
    from campaign.plan import plan_table, write_plan
    from campaign.script import ScriptError, load_campaign
    from campaign.spec import SpecError

    setup_logging(verbose)
    if not hours > 0:
        fail(f"--hours must be > 0, got {hours}")
    try:
        spec = load_campaign(script)
    except (ScriptError, SpecError) as error:
        fail(str(error))
    workers, per_node, models = simulated_site(spec, site, parse_site_params(site_param or []),
                                               nodes or [], durations or [], duration_scale)
    outputs, real = parse_stand_ins(spec, stand_in or [])
    run_dir = out or Path(tempfile.mkdtemp(prefix="campaign-plan-"))
    console.print(f"simulating {spec.name} on {site} for {hours:g} h: "
                  + ", ".join(f"{label} {count} workers" for label, count in workers.items()),
                  highlight=False, soft_wrap=True)
    result = run_plan(spec, workers=workers, hours=hours, durations=models, out=run_dir,
                      per_node=per_node, outputs=outputs, references=references,
                      cheap_seconds=cheap_seconds if cheap_seconds > 0 else None,
                      real_apps=real, site=site)
    console.print(plan_table(result), highlight=False, soft_wrap=True)
    if json_path is not None:
        write_plan(result, json_path)
        console.print(f"plan written to {json_path}", highlight=False)
    if result["stop_reason"].startswith("interrupted"):
        raise typer.Exit(code=130)
