"""The report of a real (tiny) run: report.html holds every figure, self-contained, with
tables whose counts are the ledger's; and the page loads in headless Chromium without
console errors, every image decoded and not blank.

Chromium is installed by ``make test`` when missing (Debian's ``chromium``, apt, as root),
like Slurm for tests/test_slurm.py; where it is absent the browser tests skip and say why
(in CI, ``CI`` set, they fail instead).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_campaign

from apps import toy
from campaign import Budget
from campaign.ledger import Ledger
from campaign.report import (
    find_gaps,
    learning_curve,
    open_run,
    parity_points,
    project_2d,
    random_band,
    resume_gaps,
    sims_to_reach,
    summarize,
)
from campaign.report.headline import compare_with_random, headline_lines, sims_to_stay_below
from campaign.report.tables import counts_table, picks_table

EVERY_FIGURE = {"learning-curve", "sampling", "surrogate", "parity", "calibration",
                "timeline", "utilization"}
WITHOUT_SPEC = {"learning-curve", "sampling", "calibration", "timeline", "utilization"}
BROWSER_TIMEOUT_S = 120


# -- a small real run ------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny async campaign on threads, reported with its spec: (run dir, spec)."""
    spec = tiny_campaign(mode="async", budget=Budget(fine=8))
    out = tmp_path_factory.mktemp("report") / "run"
    spec.run(site="threads", out=out)
    summarize(out, spec)
    return out, spec


class Page(HTMLParser):
    """Figures (id -> img src, caption) and tables (id -> rows of cell texts) of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, dict[str, str]] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.ids: set[str] = set()
        self.external: list[str] = []
        self._figure: str | None = None
        self._table: str | None = None
        self._in_caption = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for name in ("src", "href"):
            if name in attrs and not attrs[name].startswith("data:"):
                self.external.append(f"<{tag} {name}={attrs[name][:60]}>")
        if tag == "link":
            self.external.append("<link>")
        if tag == "figure":
            self._figure = attrs["id"]
            self.figures[self._figure] = {"src": "", "caption": ""}
        elif tag == "img" and self._figure:
            self.figures[self._figure]["src"] = attrs.get("src", "")
        elif tag == "figcaption":
            self._in_caption = True
        elif tag == "table":
            self._table = attrs["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None
        elif tag == "figcaption":
            self._in_caption = False
        elif tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._in_caption and self._figure:
            self.figures[self._figure]["caption"] += data
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def table_dicts(page: Page, table_id: str) -> list[dict[str, str]]:
    header, *rows = page.tables[table_id]
    return [dict(zip(header, row, strict=True)) for row in rows]


def not_blank(png: bytes) -> bool:
    import matplotlib.image

    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    return pixels.ndim == 3 and pixels.shape[0] > 0 and float(pixels.std()) > 0


@pytest.mark.slow
def test_report_holds_every_figure_self_contained(run):
    out, _ = run
    page = parse(out / "report.html")
    assert set(page.figures) == EVERY_FIGURE
    assert page.external == []  # no external scripts, styles, fonts or images
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["figures"]) == EVERY_FIGURE and summary["html"] == "report.html"
    for figure_id, figure in page.figures.items():
        assert figure["src"].startswith("data:image/png;base64,"), figure_id
        png = base64.b64decode(figure["src"].split(",", 1)[1])
        assert png == Path(summary["figures"][figure_id]).read_bytes()
        assert not_blank(png), figure_id
        assert len(figure["caption"]) > 40, figure_id
    assert (out / "report.png").stat().st_size > 10_000  # still written, as before
    text = (out / "report.html").read_text()
    body = text[text.index("<body>"):]
    assert body.index('id="headline"') < body.index('id="facts"')  # the page opens with it
    assert summary["promotions"]["coarse-to-fine"]["headline"][0] in text
    assert ">None<" not in text and "None" not in body.split("<figure")[0]


@pytest.mark.slow
def test_report_tables_count_what_the_ledger_holds(run):
    out, _ = run
    page = parse(out / "report.html")
    ledger, store = open_run(out)
    try:
        counts = {row["scale"]: row for row in table_dicts(page, "counts")}
        tasks = ledger.task_counts()
        busy = ledger.core_seconds()
        attempts = ledger.attempts()
        assert set(counts) == {"coarse", "fine"}
        for scale, row in counts.items():
            assert int(row["done"]) == tasks[scale].get("done", 0)
            assert int(row["quarantined"]) == tasks[scale].get("quarantined", 0)
            assert int(row["rows"]) == store.rows(scale)
            assert int(row["attempts"]) == sum(a["scale"] == scale for a in attempts)
            assert float(row["busy seconds"]) == pytest.approx(busy[scale], abs=1e-3)
        assert int(counts["fine"]["done"]) == 8  # the budget
        assert "quarantine" in page.ids and "quarantine" not in page.tables  # none: a note
        rounds = table_dicts(page, "rounds")
        assert "rounds-note" in page.ids  # what the table's errors are, against parity's
        assert len(rounds) == len(ledger.rounds("coarse-to-fine"))
        assert [int(r["n_train"]) for r in rounds] == [
            r["n_train"] for r in ledger.rounds("coarse-to-fine")]
    finally:
        ledger.close()


@pytest.mark.slow
def test_utilization_per_scale_is_busy_time_over_its_workers_and_the_span(run):
    out, _ = run
    page = parse(out / "report.html")
    rows = {row["scale"]: row for row in table_dicts(page, "utilization-table")}
    assert set(rows) == {"coarse", "fine", "all"}
    ledger = Ledger(out / "ledger.sqlite", read_only=True)
    attempts = [a for a in ledger.attempts() if a["started"] and a["ended"]]
    ledger.close()
    span = max(a["ended"] for a in attempts) - min(a["started"] for a in attempts)
    for scale in ("coarse", "fine"):
        mine = [a for a in attempts if a["scale"] == scale]
        workers = len({a["worker"] for a in mine})
        busy = sum(a["ended"] - a["started"] for a in mine)
        assert int(rows[scale]["workers"]) == workers
        assert float(rows[scale]["utilization"]) == pytest.approx(
            busy / (workers * span), abs=1e-3)
        assert 0 < float(rows[scale]["utilization"]) <= 1.0 + 1e-6
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["utilization"]) == {"coarse", "fine", "all"}
    assert "per scale (its own workers): coarse" in page.figures["utilization"]["caption"]


@pytest.mark.slow
def test_parity_names_its_quantity_and_kind_of_score(run):
    out, _ = run
    page = parse(out / "report.html")
    caption = page.figures["parity"]["caption"]
    assert caption.startswith("Prospective parity") and "pools every point" in caption
    note = (out / "report.html").read_text()
    assert "parity plot&#x27;s RMSE" in note or "parity plot's RMSE" in note


@pytest.mark.slow
def test_parity_reproduces_the_recorded_prospective_error(run):
    out, spec = run
    ledger, store = open_run(out)
    try:
        points = parity_points(store, spec.promotions[0])
        scored = [r for r in ledger.rounds("coarse-to-fine") if r.get("prospective_rmse")]
        assert scored and len(points["row"])
        for record in scored:  # each result predicted by the model the engine scored it with
            mine = points["model"] == record["round"]
            rmse = np.sqrt(np.mean((points["mean"][mine] - points["observed"][mine]) ** 2))
            assert mine.sum() == record["n_scored"]
            assert rmse == pytest.approx(record["prospective_rmse"], rel=1e-6)
    finally:
        ledger.close()


@pytest.mark.slow
def test_report_without_the_spec_says_what_it_cannot_show(run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(run[0], out)
    for png in out.glob("report*.png"):
        png.unlink()
    summary = summarize(out)
    page = parse(out / "report.html")
    assert set(page.figures) == WITHOUT_SPEC == set(summary["figures"])
    assert {"parity-note", "surrogate-note"} <= page.ids
    text = (out / "report.html").read_text()
    assert "per-result predictions are not recorded" in text
    assert (out / "report.png").is_file() and (out / "summary.json").is_file()


@pytest.mark.slow
def test_baseline_of_several_seeds_gives_median_and_range(run, tmp_path):
    source, spec = run
    out = tmp_path / "run"
    shutil.copytree(source, out)
    summary = summarize(out, spec, baseline=2)
    assert (out / "baseline-random" / "ledger.sqlite").is_file()
    assert (out / "baseline-random-1" / "ledger.sqlite").is_file()
    assert summary["baseline"]["seeds"] == 2
    seeds = []
    for index, path in enumerate([out / "baseline-random", out / "baseline-random-1"]):
        ledger = Ledger(path / "ledger.sqlite", read_only=True)
        seeds.append(ledger.fact("spec")["seed"])
        curve = learning_curve(ledger, "coarse-to-fine")
        ledger.close()
        recorded = summary["promotions"]["coarse-to-fine"]["random_curves"][index]
        assert recorded["n_simulations"] == curve[0].tolist()
        assert recorded["reference_rmse"] == pytest.approx(curve[1].tolist())
    assert seeds == [spec.seed, spec.seed + 1]
    entry = summary["promotions"]["coarse-to-fine"]
    finals = [c["reference_rmse"][-1] for c in entry["random_curves"]]
    assert entry["target_rmse"] == pytest.approx(float(np.median(finals)))
    per_seed = [sims_to_stay_below(np.asarray(c["n_simulations"]),
                                   np.asarray(c["reference_rmse"]), entry["target_rmse"])
                for c in entry["random_curves"]]
    assert entry["sims_to_stay_below"]["random_per_seed"] == per_seed
    counts = sorted(float("inf") if n is None else n for n in per_seed)
    median = (counts[0] + counts[1]) / 2  # two seeds; one that never stays makes it inf
    assert entry["sims_to_stay_below"]["random"] == (None if median == float("inf") else median)
    equal = entry["error_ratio_at_equal_sims"]
    assert len(equal["per_seed"]) == 2
    assert equal["min"] <= equal["median"] <= equal["max"]
    assert "None" not in " ".join(entry["headline"])
    page = parse(out / "report.html")
    assert "median of 2 seeds" in page.figures["learning-curve"]["caption"]
    facts = {row["fact"]: row["value"] for row in table_dicts(page, "facts")}
    assert "random baseline (2 seeds)" in facts
    again = summarize(out, spec, baseline=1)  # finished baselines are kept and compared
    assert again["baseline"]["seeds"] == 2


def test_random_band_interpolates_over_the_shared_range():
    curves = [(np.array([4, 8, 12]), np.array([4.0, 2.0, 1.0])),
              (np.array([4, 6, 10]), np.array([6.0, 4.0, 2.0]))]
    n, median, low, high = random_band(curves)
    assert n.tolist() == [4, 6, 8, 10]  # 12 is past the second curve's last fit
    assert median.tolist() == pytest.approx([5.0, 3.5, 2.5, 1.75])
    assert low.tolist() == pytest.approx([4.0, 3.0, 2.0, 1.5])
    assert high.tolist() == pytest.approx([6.0, 4.0, 3.0, 2.0])
    assert random_band([])[0].size == 0


def test_resume_gaps_run_from_the_last_event_to_the_next_start():
    attempts = [{"submitted": 0.0, "started": 1.0, "ended": 2.0},
                {"submitted": 1.5, "started": 2.5, "ended": None},  # killed while running
                {"submitted": 50.0, "started": 53.0, "ended": 54.0}]
    assert resume_gaps([0.0, 49.0], attempts, fits=[(2.0, 3.0)]) == [(3.0, 53.0)]
    assert resume_gaps([0.0], attempts, fits=[]) == []  # never resumed
    # a resume that ran nothing yet: the gap ends at the driver's start
    assert resume_gaps([0.0, 60.0], attempts[:2], fits=[]) == [(2.5, 60.0)]


@pytest.mark.slow
def test_a_resumed_run_records_its_driver_starts_and_shows_the_gap(tmp_path):
    out = tmp_path / "run"
    tiny_campaign(mode="async", budget=Budget(fine=4)).run(site="threads", out=out)
    time.sleep(1.0)
    tiny_campaign(mode="async", budget=Budget(fine=8)).run(site="threads", out=out,
                                                           resume=True)
    ledger = Ledger(out / "ledger.sqlite", read_only=True)
    sessions, attempts = ledger.fact("sessions"), ledger.attempts()
    ledger.close()
    assert len(sessions) == 2 and sessions[0] < sessions[1]
    (low, high), = resume_gaps(sessions, attempts, fits=[])
    first_session = [a for a in attempts if a["submitted"] < sessions[1]]
    assert low == max(a[k] for a in first_session for k in ("submitted", "started", "ended")
                      if a[k] is not None)
    assert low < sessions[1] <= high
    summarize(out, tiny_campaign(mode="async", budget=Budget(fine=8)))
    caption = parse(out / "report.html").figures["timeline"]["caption"]
    assert "the 1 resume gap(s)" in caption


def test_gaps_are_intervals_far_longer_than_the_median():
    starts = list(np.arange(0, 3, 0.1)) + list(30 + np.arange(0, 3, 0.1))
    assert find_gaps(starts) == [(pytest.approx(2.9), pytest.approx(30.0))]
    assert find_gaps(list(np.arange(0, 3, 0.1))) == []
    assert find_gaps([0.0, 0.001, 0.5]) == []  # under the 1 s floor


def test_projection_keeps_two_columns_and_finds_the_plane_of_many():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    assert project_2d(x)[0] is x
    plane = np.column_stack([x[:, 0], 3 * x[:, 1], x[:, 0] + 3 * x[:, 1]])
    points, labels = project_2d(plane)
    assert points.shape == (200, 2) and labels[0].startswith("PC1")
    # all the variance lies in the plane: the projection keeps every distance
    distances = np.linalg.norm(plane[:50, None] - plane[None, :50], axis=-1)
    projected = np.linalg.norm(points[:50, None] - points[None, :50], axis=-1)
    np.testing.assert_allclose(projected, distances, atol=1e-9)


# -- the page in a browser ---------------------------------------------------------------
# Injected as the first thing in <head>: counts uncaught errors (scripts and failed
# resources) and console.error calls, then on load writes, for every image, whether it
# decoded (natural size) and whether all its pixels are one colour, into <pre id="checks">.
CHECK_SCRIPT = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  window.__errors.push(String(e.message || ("failed to load " + (e.target && e.target.tagName))));
}, true);
(function () {
  var original = console.error;
  console.error = function () {
    window.__errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
})();
window.addEventListener("load", function () {
  var images = Array.prototype.map.call(document.images, function (img) {
    var blank = null;
    if (img.naturalWidth > 0 && img.naturalHeight > 0) {
      var canvas = document.createElement("canvas");
      canvas.width = Math.min(img.naturalWidth, 600);
      canvas.height = Math.min(img.naturalHeight, 600);
      var context = canvas.getContext("2d");
      context.drawImage(img, 0, 0, canvas.width, canvas.height);
      var data = context.getImageData(0, 0, canvas.width, canvas.height).data;
      blank = true;
      for (var i = 4; i < data.length; i += 4) {
        if (data[i] !== data[0] || data[i + 1] !== data[1] || data[i + 2] !== data[2]
            || data[i + 3] !== data[3]) { blank = false; break; }
      }
    }
    var figure = img.closest("figure");
    return {figure: figure ? figure.id : null, complete: img.complete,
            width: img.naturalWidth, height: img.naturalHeight, blank: blank,
            shown: img.getBoundingClientRect().width > 0};
  });
  var pre = document.createElement("pre");
  pre.id = "checks";
  pre.textContent = JSON.stringify({images: images, errors: window.__errors});
  document.body.appendChild(pre);
});
</script>"""


def chromium_binary() -> str:
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser",
                 "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    message = ("headless Chromium not found (make test installs Debian's chromium with apt "
               "when run as root; or set CHROMIUM to a Chrome/Chromium binary)")
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so the browser test may not be skipped: {message}")
    pytest.skip(message)


def browser_checks(page: Path, profile: Path) -> dict:
    """Load ``page`` with the check script injected; returns what the script found."""
    checked = page.with_name(page.stem + "-checked.html")
    checked.write_text(page.read_text(encoding="utf-8").replace("<head>",
                                                                "<head>" + CHECK_SCRIPT, 1),
                       encoding="utf-8")
    result = subprocess.run(
        [chromium_binary(), "--headless", "--disable-gpu", "--no-sandbox",
         "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
         "--dump-dom", checked.resolve().as_uri()],
        capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S)
    found = re.search(r'<pre id="checks">(.*?)</pre>', result.stdout, re.S)
    assert found, f"no check results (exit {result.returncode}): {result.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")
                      .replace("&lt;", "<").replace("&gt;", ">"))


def page_problems(checks: dict, expected: set[str]) -> list[str]:
    """Everything wrong with a loaded page: errors, missing, broken or blank figures."""
    problems = [f"error: {error}" for error in checks["errors"]]
    seen = {image["figure"] for image in checks["images"]}
    problems += [f"figure {name} missing" for name in sorted(expected - seen)]
    for image in checks["images"]:
        if not (image["complete"] and image["width"] > 0 and image["height"] > 0):
            problems.append(f"figure {image['figure']} did not decode")
        elif image["blank"] is not False:
            problems.append(f"figure {image['figure']} is blank")
        elif not image["shown"]:
            problems.append(f"figure {image['figure']} is not shown")
    return problems


@pytest.mark.slow
def test_page_loads_in_chromium_with_every_figure(run, tmp_path):
    chromium_binary()
    page = tmp_path / "report.html"
    shutil.copy(run[0] / "report.html", page)
    checks = browser_checks(page, tmp_path / "profile")
    assert page_problems(checks, EVERY_FIGURE) == []
    assert len(checks["images"]) == len(EVERY_FIGURE)


def _blank_png() -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    plt.imsave(buffer, np.ones((40, 60)), cmap="gray", format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.mark.slow
def test_browser_check_fails_on_a_broken_image_a_blank_image_and_a_script_error(run,
                                                                                tmp_path):
    chromium_binary()
    good = (run[0] / "report.html").read_text(encoding="utf-8")
    images = re.findall(r"data:image/png;base64,[A-Za-z0-9+/=]+", good)
    broken = good.replace(images[0], "data:image/png;base64,iVBORw0KGgoAAAAN", 1)
    blank = good.replace(images[1], "data:image/png;base64," + _blank_png(), 1)
    scripted = good.replace("</body>", "<script>notDefined();</script></body>", 1)
    for name, text, expected in (("broken", broken, "learning-curve did not decode"),
                                 ("blank", blank, "sampling is blank"),
                                 ("scripted", scripted, "notDefined")):
        page = tmp_path / f"{name}.html"
        page.write_text(text, encoding="utf-8")
        problems = page_problems(browser_checks(page, tmp_path / f"profile-{name}"),
                                 EVERY_FIGURE)
        assert problems, name
        assert any(expected in problem for problem in problems), (name, problems)


def test_sims_to_stay_below_is_not_the_first_crossing():
    n = np.array([8, 16, 24, 32, 40])
    dips_then_rises = np.array([3.0, 0.9, 1.5, 0.8, 0.7])
    assert sims_to_reach(n, dips_then_rises, 1.0) == 16  # the first crossing
    assert sims_to_stay_below(n, dips_then_rises, 1.0) == 32  # below for good from 32
    assert sims_to_stay_below(n, np.array([3.0, 0.5, 0.5, 0.5, 1.2]), 1.0) is None
    assert sims_to_stay_below(n, np.array([0.5] * 5), 1.0) == 8
    assert sims_to_stay_below(n, np.array([0.5, 0.5, np.nan, 0.5, 0.5]), 1.0) == 32
    assert sims_to_stay_below(n[:0], np.zeros(0), 1.0) is None


def test_headline_compares_staying_below_and_errors_at_equal_sims():
    n = np.array([8, 16, 24, 32, 40, 48])
    ours = np.array([2.0, 0.9, 0.5, 0.3, 0.2, 0.1])
    seeds = [(n, np.array([2.0, 1.5, 0.9, 1.1, 0.8, 0.24])),
             (n, np.array([2.0, 0.2, 0.6, 0.5, 0.4, 0.25])),  # dips at 16, rises again
             (n[:5], np.array([2.0, 1.2, 0.9, 0.7, 0.3]))]
    comparison = compare_with_random(n, ours, seeds)
    assert comparison["target_rmse"] == pytest.approx(0.25)  # median of 0.24, 0.25, 0.3
    reached = comparison["sims_to_stay_below"]
    assert reached["campaign"] == 40  # 0.3 at 32 is above 0.25
    assert reached["random_per_seed"] == [48, 48, None]  # seed 2's dip at 16 does not count
    assert reached["random"] == 48
    assert comparison["ratio_vs_random"] == pytest.approx(48 / 40)
    equal = comparison["error_ratio_at_equal_sims"]
    # each seed read at min(48, its last count): 48, 48 and 40
    assert [e["n_simulations"] for e in equal["per_seed"]] == [48, 48, 40]
    assert sorted([equal["min"], equal["median"], equal["max"]]) == pytest.approx(
        sorted([0.24 / 0.1, 0.25 / 0.1, 0.3 / 0.2]))
    entry = {"final_reference_rmse": 0.1, "curve": {"n_simulations": n.tolist()},
             **comparison}
    text = " ".join(headline_lines("coarse-to-fine", entry))
    assert ("stayed below after 40 simulations; random selection after 48 (median over seeds; "
            "per seed: 48, 48, never)") in text
    assert "1.5x to 2.5x" in text
    assert "None" not in text and "-1" not in text


def test_headline_without_a_baseline_or_a_model_prints_no_none():
    assert headline_lines("a-to-b", {"final_reference_rmse": None,
                                     "last_prospective_rmse": None}) == [
        "a-to-b: no model was scored yet."]
    text = " ".join(headline_lines("a-to-b", {"final_reference_rmse": 0.5,
                                              "curve": {"n_simulations": [4, 8]}}))
    assert "0.5 after 8 simulations" in text and "--baseline N" in text
    never = compare_with_random(np.array([4, 8]), np.array([1.0, 0.9]),
                                [(np.array([4, 8]), np.array([1.0, 0.5]))])
    text = " ".join(headline_lines("a-to-b", {"final_reference_rmse": 0.9, **never}))
    assert "did not end below it" in text and "None" not in text


def three_columns(x, *, seed, **params):
    """A coarse scale whose rows have three columns: Langevin frames and their sum."""
    frames = toy.langevin(np.asarray(x)[:2], seed=seed, **params)
    return {"x": np.column_stack([frames["x"], frames["x"].sum(axis=1)]),
            "energy": frames["energy"]}


def fine_of_three(x, *, seed, **params):
    return toy.smeared_energy(np.asarray(x).reshape(-1)[:2], seed=seed, **params)


@pytest.mark.slow
def test_surrogate_view_of_rows_with_three_columns_is_drawn_on_their_projection(tmp_path):
    from campaign import Campaign, Promotion, Scale
    from learners import ExactGP

    walkers = np.column_stack([toy.initial_walkers(2), toy.initial_walkers(2).sum(axis=1)])
    spec = Campaign(
        name="three", mode="async",
        scales=[Scale("coarse", app=three_columns, params={"n_steps": 2000, "stride": 100},
                      walkers=walkers),
                Scale("fine", app=fine_of_three, params={"n_samples": 1024})],
        promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
                              learner=ExactGP(restarts=1, iterations=30),
                              acquisition="max_variance", batch_size=4, quantity="energy")],
        budget=Budget(fine=8))
    out = tmp_path / "run"
    spec.run(site="threads", out=out)
    summary = summarize(out, spec)
    assert "surrogate" in summary["figures"]
    page = parse(out / "report.html")
    assert "surrogate-note" not in page.ids
    assert "principal components" in page.figures["surrogate"]["caption"]
    assert not_blank(Path(summary["figures"]["surrogate"]).read_bytes())


class FakeStore:
    """What picks_table reads: a target's meta arrays."""

    def __init__(self, meta):
        self.meta = meta

    def scales(self):
        return ["coarse", "fine"]

    def read(self, scale):
        from types import SimpleNamespace

        return SimpleNamespace(meta=self.meta if scale == "fine" else {})


def test_picks_table_reads_optional_staleness_and_skips_quietly_without():
    assert picks_table(FakeStore({"round": np.array([0, 1, 1])}), ["coarse-to-fine"]) == []
    meta = {"round": np.array([0, 0, 1, 1, 1]), "staleness": np.array([0, 0, 1, 3, 2])}
    rows = picks_table(FakeStore(meta), ["coarse-to-fine"])
    assert rows == [
        {"promotion": "coarse-to-fine", "model generation": 0, "picks": 2,
         "mean staleness": 0.0, "max staleness": 0.0},
        {"promotion": "coarse-to-fine", "model generation": 1, "picks": 3,
         "mean staleness": 2.0, "max staleness": 3.0}]
    meta = {"round": np.array([0, 0]), "model_generation": np.array([[2], [3]])}
    rows = picks_table(FakeStore(meta), ["coarse-to-fine"])
    assert [(r["model generation"], r["picks"]) for r in rows] == [(2, 1), (3, 1)]
    assert "mean staleness" not in rows[0]


def test_counts_table_counts_other_attempt_outcomes_apart_from_app_failures():
    from types import SimpleNamespace

    attempts = [{"scale": "fine", "outcome": outcome}
                for outcome in ("done", "failed", "lost", "lost", "quarantined")]
    ledger = SimpleNamespace(task_counts=lambda: {"fine": {"done": 1, "quarantined": 1}},
                             attempts=lambda: attempts, core_seconds=lambda: {"fine": 2.0})
    store = SimpleNamespace(scales=lambda: ["fine"], rows=lambda scale: 1)
    (row,) = counts_table(ledger, store)
    assert row["failed attempts"] == 2 and row["attempts lost"] == 2
    assert row["attempts"] == 5 and row["done"] == 1
