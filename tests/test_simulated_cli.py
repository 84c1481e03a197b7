"""``campaign run --site simulated`` (and ``--simulate`` on a named site's layout): the real
engine on a virtual clock into a real run directory that ``status`` and ``report`` read."""

import json
import sqlite3

from test_cli_extras import SCRIPT as EXTRAS_SCRIPT
from typer.testing import CliRunner

from campaign.cli import app

runner = CliRunner()

# test_cli_extras' tiny campaign, async, with a coarse budget too
SCRIPT = (EXTRAS_SCRIPT.replace('name="extras"', 'name="simcli"')
          .replace('budget=Budget(fine=4),\n    mode="rounds",',
                   'budget=Budget(fine=8, coarse=12),\n    seed=0,'))
assert 'name="simcli"' in SCRIPT and "Budget(fine=8, coarse=12)" in SCRIPT


def invoke(*args):
    return runner.invoke(app, list(args), env={"COLUMNS": "300"})


def run_simulated(script, out, *extra):
    """``campaign run`` on the simulated site with 600 s fine and 30 s coarse tasks."""
    return invoke("run", str(script), "--site", "simulated", "--out", str(out),
                  "--durations", "fine=fixed:600", "--durations", "coarse=fixed:30", *extra)


def facts(run_dir):
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    try:
        return {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM facts")}
    finally:
        db.close()


def test_run_on_the_simulated_site_writes_a_run_that_status_and_report_read(tmp_path):
    script = tmp_path / "simcli.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    result = run_simulated(script, out, "--no-live")
    assert result.exit_code == 0, result.output
    recorded = facts(out)
    assert recorded["site"] == "simulated:local" and recorded["dry_run"] is False
    assert recorded["simulated"]["durations"] == {"coarse": "fixed 30 s", "fine": "fixed 600 s"}
    # virtual time: 8 fine tasks of 600 s on the local layout's 2 fine workers
    assert recorded["wall_seconds"] >= 4 * 600
    status = invoke("status", str(out))
    assert status.exit_code == 0, status.output
    assert "fine" in status.output
    assert "simulated site" in status.output and "DRY RUN" not in status.output
    summary = json.loads((out / "summary.json").read_text())  # the report, from the run
    assert summary["dry_run"] is False and "virtual" in summary["simulated_note"]
    assert "simulated site" in (out / "report.html").read_text()


def test_a_dry_run_says_so_in_status_and_the_report(tmp_path):
    script = tmp_path / "simcli.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    result = run_simulated(script, out, "--stand-in", "fine=surrogate", "--no-live")
    assert result.exit_code == 0, result.output
    assert facts(out)["dry_run"] is True
    status = invoke("status", str(out))
    assert "DRY RUN" in status.output and "fine" in status.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True and "not science" in summary["simulated_note"]
    assert "DRY RUN" in (out / "report.html").read_text()


def test_simulate_takes_a_named_sites_layout_and_refuses_simulation_options_without_it(
        tmp_path):
    script = tmp_path / "simcli.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    result = invoke("run", str(script), "--site", "frontier", "--simulate", "--out", str(out),
                    "--nodes", "fine=2", "--no-report", "--no-live")
    assert result.exit_code == 0, result.output
    recorded = facts(out)
    assert recorded["site"] == "simulated:frontier"
    assert recorded["simulated"]["workers"]["sim-fine"] == 2 * 8  # 8 GCDs a node, 2 nodes
    assert "assumed" in result.output  # no --durations: the plan's assumed durations
    refused = invoke("run", str(script), "--site", "local", "--nodes", "fine=2",
                     "--out", str(tmp_path / "refused"))
    assert refused.exit_code != 0 and "--simulate" in refused.output


def test_a_simulated_run_resumes_on_its_simulated_site(tmp_path):
    script = tmp_path / "simcli.py"
    script.write_text(SCRIPT.replace("Budget(fine=8, coarse=12)", "Budget(fine=4, coarse=12)"))
    out = tmp_path / "run"
    first = run_simulated(script, out, "--no-report", "--no-live")
    assert first.exit_code == 0, first.output
    assert facts(out)["simulate_options"]["durations"] == ["fine=fixed:600", "coarse=fixed:30"]
    more = invoke("resume", str(out), "--budget", "fine=8", "--no-report", "--no-live")
    assert more.exit_code == 0, more.output
    recorded = facts(out)
    assert recorded["site"] == "simulated:local" and recorded["resumed"] == 1
    db = sqlite3.connect(out / "ledger.sqlite")
    try:
        done = db.execute("SELECT COUNT(*), COUNT(DISTINCT task_id) FROM tasks "
                          "WHERE scale = 'fine' AND status = 'done'").fetchone()
    finally:
        db.close()
    assert done == (8, 8)  # the first run's 4 kept, 4 more, none twice
