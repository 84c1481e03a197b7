"""Store and ledger: append, reopen, cut back after a torn write, read with xarray."""

import json
import os
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
import zarr

from campaign.ledger import Ledger, TaskOutcome
from campaign.lock import RunLock, RunLockedError
from campaign.store import Rows, Store, StoreError


def make_rows(n: int, start: int = 0, d: int = 3) -> Rows:
    x = np.arange(start * d, (start + n) * d, dtype=np.float64).reshape(n, d) + 0.125
    return Rows(x=x, y={"energy": x.sum(axis=1), "forces": np.ones((n, 2, 3), np.float32)},
                meta=Rows.meta_for(task_id=start, rows=n))


def open_store(run_dir) -> Store:
    return Store(run_dir, Ledger(run_dir / "ledger.sqlite"))


def test_append_and_reopen_keeps_rows_and_dtypes(tmp_path):
    store = open_store(tmp_path)
    store.commit("coarse", make_rows(3), [])
    store.commit("coarse", make_rows(2, start=3), [])
    store.ledger.close()
    again = open_store(tmp_path)
    data = again.read("coarse")
    assert len(data) == 5
    np.testing.assert_array_equal(data.x, np.concatenate([make_rows(3).x, make_rows(2, 3).x]))
    assert data.x.dtype == np.float64
    assert data.y["forces"].dtype == np.float32 and data.y["forces"].shape == (5, 2, 3)
    assert data.meta["task_id"].tolist() == [0, 0, 0, 3, 3]
    assert again.read("coarse", start=4).x.shape == (1, 3)


def test_torn_write_is_cut_back_on_open(tmp_path):
    store = open_store(tmp_path)
    store.commit("fine", make_rows(4), [])
    # a crash between the zarr write and the ledger transaction: rows written, not committed
    store._append("fine", 4, make_rows(3, start=4))
    assert zarr.open_group(tmp_path / "store.zarr")["fine/x"].shape[0] == 7
    store.ledger.close()
    reopened = open_store(tmp_path)
    group = zarr.open_group(tmp_path / "store.zarr", mode="r")
    for path in ("fine/x", "fine/y/energy", "fine/y/forces", "fine/meta/task_id"):
        assert group[path].shape[0] == 4, path
    np.testing.assert_array_equal(reopened.read("fine").x, make_rows(4).x)
    reopened.commit("fine", make_rows(1, start=9), [])
    assert reopened.read("fine").meta["task_id"].tolist() == [0, 0, 0, 0, 9]


def test_cut_back_reports_what_it_removed(tmp_path):
    store = open_store(tmp_path)
    store.commit("fine", make_rows(2), [])
    store._append("fine", 2, make_rows(5, start=2))
    removed = store.cut_back_uncommitted()
    assert removed and set(removed.values()) == {5}
    assert "fine/x" in removed and "fine/y/energy" in removed


def test_array_shorter_than_committed_is_an_error(tmp_path):
    store = open_store(tmp_path)
    store.commit("fine", make_rows(3), [])
    store.group["fine/x"].resize((1, 3))
    with pytest.raises(StoreError, match="lost data"):
        store.cut_back_uncommitted()


def test_new_rows_must_match_the_arrays_already_there(tmp_path):
    store = open_store(tmp_path)
    store.commit("fine", make_rows(2), [])
    wrong = Rows(x=np.zeros((1, 3)), y={"other": np.zeros(1)}, meta=Rows.meta_for(1, 1))
    with pytest.raises(StoreError, match="holds arrays"):
        store.commit("fine", wrong, [])
    wrong_dtype = Rows(x=np.zeros((1, 3), np.float32), y=make_rows(1).y, meta=Rows.meta_for(1, 1))
    with pytest.raises(StoreError, match="float64"):
        store.commit("fine", wrong_dtype, [])
    assert store.rows("fine") == 2


def test_rows_reject_mismatched_lengths():
    with pytest.raises(ValueError, match="y/energy"):
        Rows(x=np.zeros((2, 1)), y={"energy": np.zeros(3)})
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        Rows(x=np.zeros(2), y={})


def test_xarray_and_plain_zarr_read_the_store(tmp_path):
    xarray = pytest.importorskip("xarray")
    store = open_store(tmp_path)
    store.commit("coarse", make_rows(6), [])
    outputs = xarray.open_zarr(tmp_path / "store.zarr", group="coarse/y", consolidated=False)
    np.testing.assert_allclose(outputs["energy"].values, make_rows(6).y["energy"])
    assert outputs["energy"].dims == ("row",)
    inputs = xarray.open_zarr(tmp_path / "store.zarr", group="coarse", consolidated=False)
    assert inputs["x"].dtype == np.float64 and inputs["x"].shape == (6, 3)
    meta = xarray.open_zarr(tmp_path / "store.zarr", group="coarse/meta", consolidated=False)
    assert set(meta.data_vars) >= {"task_id", "parent_row", "round", "started"}
    plain = zarr.open_group(tmp_path / "store.zarr", mode="r")
    assert plain["coarse/x"].dtype == np.float64


def test_model_state_round_trips_without_pickle(tmp_path):
    store = open_store(tmp_path)
    state = {"lengthscale": np.array([0.5, 1.5]), "noise": np.array(0.01), "n": np.array([3])}
    path = store.save_model("coarse-to-fine", 2, state, n_train=16, learner="ExactGP")
    loaded = store.load_model("coarse-to-fine", 2)
    assert set(loaded) == set(state)
    for name in state:
        np.testing.assert_array_equal(loaded[name], state[name])
    assert zarr.open_group(tmp_path / "store.zarr", mode="r")[path].attrs["n_train"] == 16


def test_store_format_mismatch_is_refused(tmp_path):
    store = open_store(tmp_path)
    store.group.attrs["store_format"] = 99
    with pytest.raises(StoreError, match="format 99"):
        open_store(tmp_path)


def test_ledger_plan_is_all_or_none_and_survives_a_second_writer(tmp_path):
    from campaign.ledger import PLAN_ROWS_PER_STATEMENT, PlannedTask

    def batch(n, scale="fine"):
        return [PlannedTask(scale, 0, i, [float(i)], None) for i in range(n)]

    def seed(task_id, attempt):
        return 1000 * task_id + attempt

    ledger, other = Ledger(tmp_path / "ledger.sqlite"), Ledger(tmp_path / "ledger.sqlite")
    assert ledger.plan(batch(3), seed) == [1, 2, 3]
    assert other.plan(batch(2), seed) == [4, 5]  # its first plan reads the table
    # ``ledger``'s remembered next id (4) is stale: the statement fails whole, is retried
    big = PLAN_ROWS_PER_STATEMENT + 5  # two statements in one transaction
    assert ledger.plan(batch(big), seed) == list(range(6, 6 + big))
    tasks = ledger.tasks("fine")
    assert [t["task_id"] for t in tasks] == list(range(1, 6 + big))
    assert all(t["seed"] == 1000 * t["task_id"] + 1 for t in tasks)
    # a batch whose last statement fails (no scale: NOT NULL) leaves nothing behind
    bad = batch(big)
    bad[-1] = PlannedTask(None, 0, 0, [0.0], None)
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        ledger.plan(bad, seed)
    assert len(ledger.tasks("fine")) == 5 + big
    assert ledger.plan(batch(1), seed) == [6 + big]
    ledger.close()
    other.close()


def test_ledger_commit_is_one_transaction(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    task = ledger.submit("fine", 0, seed=1, parent_row=4, task_input=[0.5, 1.0])
    with pytest.raises(ValueError, match="unknown task status"):
        ledger.commit("fine", 10, [TaskOutcome(task, "done", rows=10),
                                   TaskOutcome(task, "exploded")])
    assert ledger.committed_rows("fine") == 0
    assert ledger.tasks("fine")[0]["status"] == "submitted"
    ledger.commit("fine", 1, [TaskOutcome(task, "done", 1.0, 2.0, rows=1)])
    assert ledger.committed_rows("fine") == 1
    assert ledger.task_counts() == {"fine": {"done": 1}}
    assert json.loads(ledger.tasks("fine")[0]["input"]) == [0.5, 1.0]


def test_lock_refuses_second_driver_and_names_holder(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=f'"pid": {os.getpid()}'):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # free again after release
        pass


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from campaign.lock import RunLock;"
         " lock = RunLock(sys.argv[1]).acquire();"
         " print('locked', flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=str(holder.pid)):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with RunLock(tmp_path):
        pass


def test_ledger_of_an_incompatible_version_is_refused(tmp_path):
    import sqlite3

    from campaign.ledger import LedgerError

    old = sqlite3.connect(tmp_path / "ledger.sqlite")
    old.executescript("CREATE TABLE facts (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                      "CREATE TABLE tasks (task_id INTEGER PRIMARY KEY, scale TEXT);")
    old.close()
    for read_only in (True, False):
        with pytest.raises(LedgerError, match="incompatible version .*attempts"):
            Ledger(tmp_path / "ledger.sqlite", read_only=read_only)


def test_a_new_ledger_is_never_visible_without_its_tables(tmp_path, monkeypatch):
    """A reader (``campaign status`` on a driver that is starting) opening the ledger at
    any moment of its creation either finds no file or a readable ledger, never a file
    without tables (the race seen in CI: ``no such table: facts``)."""
    import sqlite3

    import campaign.ledger as ledger_module

    path = tmp_path / "ledger.sqlite"
    seen: list[str] = []
    real_connect = sqlite3.connect

    class WatchedConnection:
        def __init__(self, connection):
            self._connection = connection

        def execute(self, sql, *args):
            if path.exists():  # what a reader finds at this step of the writer's open
                reader = Ledger(path, read_only=True)
                seen.append(str(reader.fact("name")))
                reader.close()
            return self._connection.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self._connection, name)

    def connect(target, *args, **kwargs):
        connection = real_connect(target, *args, **kwargs)
        return WatchedConnection(connection) if str(target) == str(path) else connection

    monkeypatch.setattr(ledger_module.sqlite3, "connect", connect)
    writer = Ledger(path)
    writer.set_fact("name", "new")
    writer.close()
    assert seen, "the writer's open was not observed"
    assert sorted(set(p.name for p in tmp_path.iterdir())) == ["ledger.sqlite"]


def test_a_commit_killed_part_way_through_its_arrays_is_cut_back(tmp_path):
    # the arrays of one commit are appended together; a kill can leave some of them
    # appended and others not: every one is cut back to the committed count on open
    store = open_store(tmp_path)
    store.commit("fine", make_rows(4), [])
    group = zarr.open_group(tmp_path / "store.zarr")
    extra = make_rows(2, start=4)
    group["fine/x"].append(extra.x)
    group["fine/meta/task_id"].append(extra.meta["task_id"])
    store.ledger.close()
    reopened = open_store(tmp_path)
    reopened.commit("fine", make_rows(1, start=9), [])
    data = reopened.read("fine")
    assert len(data) == 5 and data.meta["task_id"].tolist() == [0, 0, 0, 0, 9]
    for path in ("fine/x", "fine/y/energy", "fine/y/forces", "fine/meta/task_id",
                 "fine/meta/ended"):
        assert zarr.open_group(tmp_path / "store.zarr", mode="r")[path].shape[0] == 5, path


def test_commit_counts_say_how_many_commits_and_rows(tmp_path):
    store = open_store(tmp_path)
    store.commit("fine", make_rows(3), [TaskOutcome(1, "done", rows=3)])
    store.commit("fine", None, [TaskOutcome(2, "quarantined", reason="x")])
    store.commit("coarse", make_rows(2), [])
    counts = store.commit_counts
    assert (counts.commits, counts.rows) == (3, 5) and counts.seconds > 0
