"""The live progress panel: `render` shows a snapshot's numbers, the engine's snapshots
agree with the ledger and the store, a failing callback never fails a run, and
`campaign run` shows the panel on a terminal and plain log lines in a pipe."""

import io
import itertools
import json
import os
import pty
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import tiny_campaign
from rich.console import Console

from apps import toy
from campaign import Budget
from campaign.engine import Engine
from campaign.ledger import Ledger
from campaign.live import LiveProgress, render
from campaign.store import Store

CAMPAIGN_BIN = str(Path(sys.executable).parent / "campaign")

SNAPSHOT = {
    "elapsed_seconds": 754.31,
    "mode": "async",
    "scales": [
        {"name": "coarse", "committed_rows": 1234,
         "tasks": {"submitted": 62, "running": 2, "done": 60, "failed": 0, "quarantined": 0},
         "budget": None, "monitor": {"restart": 3, "stop": 1}},
        {"name": "fine", "committed_rows": 57,
         "tasks": {"submitted": 65, "running": 5, "waiting": 2, "done": 57, "failed": 4,
                   "quarantined": 3},
         "budget": 120, "monitor": None},
    ],
    "promotions": [
        {"name": "coarse->fine", "generation": 7, "n_train": 48, "fit_seconds": 1.23456,
         "reference_rmse": 0.123456789, "prospective_rmse": None, "recorded": True,
         "scored": {"model": 6, "n": 9, "rmse": 0.2345678, "coverage_50": 0.5555,
                    "coverage_90": 0.8888889}},
    ],
    "budget_used": {"fraction": 0.5416666, "what": "fine 65/120 tasks"},
    "seconds_left": 638.2671,
    "stop_reason": None,
}


def recording_console() -> Console:
    return Console(record=True, force_terminal=True, width=120, file=io.StringIO())


def rendered(snapshot: dict) -> str:
    console = recording_console()
    console.print(render(snapshot))
    return console.export_text()


def test_render_shows_the_numbers_rounded():
    text = rendered(SNAPSHOT)
    for header in ("rows", "submitted (total)", "in flight", "waiting", "done", "failed",
                   "quarantined", "budget", "n_train", "90% coverage"):
        assert header in text
    assert "None" not in text
    coarse = next(line for line in text.splitlines() if "coarse " in line and "1234" in line)
    assert "restarts" in coarse
    fine = next(line for line in text.splitlines() if line.startswith("│ fine "))
    assert [cell.strip() for cell in fine.split("│")[1:-1]] == [
        "fine", "57", "65", "5", "2", "57", "4", "3", "120"]  # rows, submitted ... budget
    model = next(line for line in text.splitlines() if "coarse->fine" in line)
    assert "48" in model and "0.123" in model and "0.235" in model  # 3 significant digits
    assert "89%" in model and "model 6" in model
    assert "elapsed 12 min 34 s" in text
    assert "54% used (fine 65/120 tasks)" in text and "~10 min 38 s left" in text
    assert "0.1234567" not in text and "754.31" not in text and "638.26" not in text


def test_render_before_a_model_and_after_the_stop():
    snapshot = json.loads(json.dumps(SNAPSHOT))
    snapshot["promotions"][0].update(generation=None, n_train=None, reference_rmse=None,
                                     recorded=False, scored=None)
    snapshot.update(budget_used=None, seconds_left=None,
                    stop_reason="task budget spent (fine=120)")
    text = rendered(snapshot)
    assert "task budget spent (fine=120)" in text and "left" not in text


def test_live_progress_shows_the_newest_snapshot_and_nothing_before_one():
    console = recording_console()
    with LiveProgress(console) as live:
        pass
    assert "submitted" not in console.export_text()  # no snapshot: no panel
    with LiveProgress(console) as live:
        live.update(SNAPSHOT)
        live.update({**SNAPSHOT, "stop_reason": "all done here"})
    text = console.export_text()
    assert "all done here" in text and live.snapshot["stop_reason"] == "all done here"


def flaky_energy():
    """A fine app whose first call fails by bad luck (retried with a new seed) and whose
    second has a bug (quarantined at once); the rest succeed."""
    calls = itertools.count(1)
    lock = threading.Lock()

    def energy(x, *, seed, **params):
        with lock:
            call = next(calls)
        if call == 1:
            raise RuntimeError("bad luck")
        if call == 2:
            raise TypeError("a bug")
        return toy.smeared_energy(x, seed=seed, n_samples=4096)
    return energy


def test_the_final_snapshot_matches_the_ledger_and_the_store(tmp_path):
    snapshots: list[dict] = []
    spec = tiny_campaign(mode="async", fine_app=flaky_energy(), fine_params={},
                         budget=Budget(fine=8))
    summary = Engine(spec, tmp_path / "r", site="threads", on_progress=snapshots.append).run()
    assert snapshots and not summary.interrupted
    final = snapshots[-1]
    json.dumps(final)  # plain values only
    assert final["stop_reason"] == summary.stop_reason
    ledger = Ledger(tmp_path / "r" / "ledger.sqlite")
    try:
        counts = ledger.task_counts()
        store = Store(tmp_path / "r", ledger, read_only=True)
        retried = {name: sum(t["attempts"] - 1 for t in ledger.tasks(name))
                   for name in counts}
        for scale in final["scales"]:
            name, tasks = scale["name"], scale["tasks"]
            assert tasks["done"] == counts[name].get("done", 0)
            assert tasks["quarantined"] == counts[name].get("quarantined", 0)
            assert tasks["submitted"] == sum(counts[name].values())
            assert tasks["running"] == 0
            assert tasks["failed"] == retried[name]
            assert scale["committed_rows"] == store.rows(name) == len(store.read(name).x)
    finally:
        ledger.close()
    fine = next(s for s in final["scales"] if s["name"] == "fine")
    assert fine["budget"] == 8 and fine["tasks"]["submitted"] == 8
    assert fine["tasks"]["failed"] >= 1 and fine["tasks"]["quarantined"] >= 1
    assert final["budget_used"]["fraction"] == 1.0
    promotion = final["promotions"][0]
    assert promotion["generation"] is not None and promotion["n_train"] == fine["committed_rows"]
    assert promotion["reference_rmse"] is not None and promotion["scored"] is not None
    assert 0.0 <= promotion["scored"]["coverage_90"] <= 1.0
    assert "fine" in rendered(final)


def test_a_failing_callback_does_not_fail_the_run(tmp_path, caplog):
    calls = []

    def broken(snapshot):
        calls.append(snapshot)
        raise ValueError("display broke")

    summary = Engine(tiny_campaign(mode="rounds", budget=Budget(fine=4)), tmp_path / "r",
                     site="threads", on_progress=broken).run()
    assert len(calls) == 1 and not summary.failed and summary.rows["fine"] == 4
    warnings = [r for r in caplog.records if "display broke" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"


SCRIPT = '''
from apps import toy
from campaign import Budget, Campaign, Promotion, Scale
from learners import ExactGP
from learners.acquisition import MaxVariance

campaign = Campaign(
    name="live_campaign",
    scales=[Scale("coarse", app=toy.langevin, params={"n_steps": 2000, "stride": 100},
                  walkers=toy.initial_walkers(2)),
            Scale("fine", app=toy.smeared_energy, params={"n_samples": 4096})],
    promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
                          learner=ExactGP(restarts=1, iterations=30),
                          acquisition=MaxVariance(), batch_size=4, quantity="energy")],
    budget=Budget(fine=4),
)
'''


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
               TERM="xterm-256color", COLUMNS="160", LINES="50")
    return env


def run_on_a_terminal(args: list[str], timeout: float = 240) -> tuple[int, str]:
    """Run ``args`` with stdout and stderr on a pseudo-terminal; (exit code, output)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=follower,
                               stderr=follower, env=cli_env(), close_fds=True)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: the terminal's other side closed
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    return code, b"".join(chunks).decode(errors="replace")


def test_campaign_run_shows_the_panel_on_a_terminal_and_plain_lines_in_a_pipe(tmp_path):
    script = tmp_path / "live_campaign.py"
    script.write_text(SCRIPT)
    args = [CAMPAIGN_BIN, "run", str(script), "--site", "threads", "--no-report"]

    code, shown = run_on_a_terminal([*args, "--out", str(tmp_path / "tty")])
    assert code == 0, shown
    assert "campaign progress (async)" in shown and "quarantined" in shown
    assert "task budget spent (fine=4)" in shown

    piped = subprocess.run([*args, "--out", str(tmp_path / "pipe")], capture_output=True,
                           text=True, timeout=240, env=cli_env())
    assert piped.returncode == 0, piped.stdout + piped.stderr
    logged = piped.stdout + piped.stderr
    assert "campaign progress" not in logged and "\x1b[" not in logged
    progress = [line for line in logged.splitlines() if " s | coarse " in line]
    assert progress and " INFO campaign.engine: " in progress[-1]
    assert "fine 4 rows (4/4 tasks, 0 running)" in progress[-1]
