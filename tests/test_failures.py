"""``campaign.failures``: an app's failure keeps where it was raised (file:line)."""

from __future__ import annotations

import concurrent.futures

from campaign.failures import describe_failure, user_frames


def read_deck(path: str) -> None:
    raise ValueError(f"input deck missing: {path}")


def my_app(x: float, *, seed: int) -> dict:
    read_deck("in.deck")
    return {}


def test_the_innermost_frames_of_the_users_code_name_file_and_line():
    try:
        my_app(1.0, seed=0)
    except ValueError as error:
        text = describe_failure(error)
    line = read_deck.__code__.co_firstlineno + 1
    assert text.startswith("ValueError: input deck missing: in.deck (at ")
    assert f"test_failures.py:{line} in read_deck" in text
    assert text.index("in read_deck") < text.index("in my_app")  # innermost first


def test_frames_that_carried_it_back_are_left_out():
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(my_app, 1.0, seed=0)
        try:
            future.result()
        except ValueError as error:
            frames = user_frames(error, limit=10)
            text = describe_failure(error)
    assert [f.name for f in frames][-2:] == ["my_app", "read_deck"]
    assert not any("concurrent" in f.filename for f in frames)
    assert "_base.py" not in text and "thread.py" not in text


def test_no_traceback_or_message_is_still_one_honest_line():
    assert describe_failure(RuntimeError("solver not found")) == "RuntimeError: solver not found"
    assert describe_failure(TimeoutError()) == "TimeoutError"
    try:
        raise KeyError("x")
    except KeyError as error:
        assert describe_failure(error, limit=0) == "KeyError: 'x'"


def failing_fine(x, *, seed, **params):
    read_deck(f"row-{seed % 7}.deck")


def test_a_campaigns_ledger_log_and_status_keep_where_an_app_raised(tmp_path, caplog):
    import logging

    from conftest import tiny_campaign
    from typer.testing import CliRunner

    from campaign import Budget
    from campaign.cli import app
    from campaign.ledger import Ledger

    spec = tiny_campaign(mode="async", budget=Budget(fine=4, coarse=8), fine_app=failing_fine)
    with caplog.at_level(logging.WARNING, logger="campaign"):
        summary = spec.run(site="threads", out=tmp_path / "run")
    assert summary.failed  # every fine task fails: the run stops on its own
    ledger = Ledger(tmp_path / "run" / "ledger.sqlite", read_only=True)
    reasons = [a["reason"] for a in ledger.attempts() if a["reason"]]
    ledger.close()
    line = read_deck.__code__.co_firstlineno + 1
    where = f"test_failures.py:{line} in read_deck"
    assert reasons and all(where in r for r in reasons)
    logged = [r.getMessage() for r in caplog.records if "input deck missing" in r.getMessage()]
    assert logged and all(where in message for message in logged)
    status = CliRunner().invoke(app, ["status", str(tmp_path / "run")],
                                env={"COLUMNS": "400"})
    assert status.exit_code == 0 and where in status.stdout, status.stdout
