"""nos report (the HTML file, without a browser: tests/test_report_browser.py has one), its evaluations
CSV and `nos rules list --json/--csv`, on stores and records written directly (no training)."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from search.cli import app
from search.cli.report import write_report
from search.store import RunStore
from tests.report_helpers import MARKUP, make_report_runs
from tests.winners_helpers import ROWS, make_run

runner = CliRunner()


def run(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


@pytest.fixture
def runs(tmp_path: Path):
    return make_report_runs(tmp_path)


def test_report_holds_counts_progress_updates_and_best_rules(runs, tmp_path: Path) -> None:
    first, second, records = runs
    out = tmp_path / "out" / "report.html"
    result = run("report", first, second, "-o", out, "--records-dir", records)
    assert result.exit_code == 0, result.output
    assert f"report written to {out}" in " ".join(result.output.split())
    page = out.read_text(encoding="utf-8")
    for heading in ("Status of the samples", "Search progress", "Controller metrics over updates",
                    "best rules"):
        assert heading in page
    assert "<td class=n>5</td>" in page  # the first run's ok rows: 4 of winners_helpers, 1 markup row
    assert "sign(m) * g" in page and "90.000 ± 1.414" in page  # the confirmed record: mean ± std
    assert "adam 87.750 ± 0.354" in page and "does not beat</span> adam" in page
    assert "n=2, not enough seeds (5 needed), gain +2.25" in page
    assert "Baselines at the run's budget (seed 0): adam 88.000, sgd 70.000" in page
    assert page.count("<svg") >= 2 + 5 + 4  # progress, updates, formulas, curves
    assert "entropy" in page and "mean_reward" in page


class Tags(HTMLParser):
    """Every tag of a page and its attributes, as a browser's parser sees them (text is not a tag)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_report_escapes_every_text_and_fetches_nothing(runs, tmp_path: Path) -> None:
    first, second, records = runs
    page = write_report([first, second], tmp_path / "r.html", directory=records).read_text(encoding="utf-8")
    tags = Tags(page).tags
    assert not [t for t, _ in tags if t in ("script", "img", "iframe", "object", "embed")]
    assert not [(t, a) for t, a in tags for name in a if name.startswith("on")]  # no event handler
    assert "&lt;script&gt;alert(&#x27;rule&#x27;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;b onclick=alert(2)&gt;bold" in page
    # Every link and source is in the page (an SVG's #id) or data: nothing to fetch.
    targets = [v for _, a in tags for k, v in a.items() if k in ("href", "src", "xlink:href")]
    assert targets and all(v.startswith(("#", "data:")) for v in targets), set(targets)
    assert "@import" not in page and "url(http" not in page


def test_report_reads_without_blocking_a_writer(runs, tmp_path: Path) -> None:
    first, _, records = runs
    writer = sqlite3.connect(first / "results.sqlite", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a search in the middle of recording a result
    writer.execute("UPDATE evaluations SET duration = 1.0 WHERE id = 1")
    done = []
    thread = threading.Thread(target=lambda: done.append(write_report([first], tmp_path / "r.html",
                                                                      directory=records)))
    start = time.monotonic()
    thread.start()
    thread.join(30)
    assert done and time.monotonic() - start < 20  # not waiting for the writer's lock
    writer.execute("COMMIT")  # nor holding one that blocks the writer
    writer.close()


@pytest.mark.parametrize("case", ["missing", "not a run", "empty run", "a file"])
def test_report_refuses_bad_input_in_one_line(case: str, tmp_path: Path) -> None:
    target = tmp_path / "target"
    if case == "not a run":
        target.mkdir()
    elif case == "empty run":
        RunStore(target, config={}).close()
    elif case == "a file":
        target.write_text("x")
    result = run("report", target, "-o", tmp_path / "r.html")
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "r.html").exists()


def test_report_usage_errors(tmp_path: Path) -> None:
    assert run("report").exit_code == 2
    assert run("report", tmp_path, "--rules").exit_code == 2
    assert run("report", "--rules", "--csv", tmp_path / "e.csv").exit_code == 2


def test_library_report(runs, tmp_path: Path) -> None:
    _, _, records = runs
    out = tmp_path / "rules.html"
    result = run("report", "--rules", "--records-dir", records, "-o", out)
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "nos_report_1" in page and "transfer to convnet" in page and "70.500 ± 1.500" in page
    assert "does not beat</span> adam" in page and "<svg" in page


def test_evaluations_csv(runs, tmp_path: Path) -> None:
    first, second, records = runs
    out = tmp_path / "evaluations.csv"
    result = run("report", first, second, "-o", tmp_path / "r.html", "--csv", out, "--records-dir", records)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 2 * len(ROWS) + 1
    assert {"run_id", "id", "batch", "rule", "status", "reward", "lr", "curves", "error"} <= set(rows[0])
    assert [r["status"] for r in rows[:len(ROWS)]] == [status for _, status, _ in ROWS]
    assert json.loads(rows[0]["curves"])["val_curve"] == [70.0, 90.0]
    assert any(r["worker"] == MARKUP and r["error"] == MARKUP for r in rows)
    # The README's one-liner, read with the sqlite3 module (pandas reads the same query).
    with sqlite3.connect(first / "results.sqlite") as db:
        assert db.execute("select count(*) from evaluations").fetchone()[0] == len(ROWS) + 1


def test_rules_list_json_and_csv(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_id = make_run(run_dir)
    result = run("rules", "list", run_dir, "--no-baselines", "--json", "--records-dir", tmp_path)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["rank"], r["rule"], r["reward"]) for r in rows] == [
        (1, "sign(m) * g", 90.0), (2, "mhat", 85.0), (3, "g + g - g", 81.0)]
    assert rows[0]["run_id"] == run_id and rows[0]["gain"] is None and rows[0]["record"] is None
    result = run("rules", "list", run_dir, "--no-baselines", "--csv", "--records-dir", tmp_path)
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["rule"] for r in table] == ["sign(m) * g", "mhat", "g + g - g"] and table[0]["reward"] == "90.0"
    assert run("rules", "list", run_dir, "--json", "--csv").exit_code == 2


def test_rules_list_json_of_the_library(runs) -> None:
    _, _, records = runs
    result = run("rules", "list", "--json", "--records-dir", records)
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["adam"]["source"] == "reference"
    assert rows["nos_report_1"]["verdict"]["outcome"] == "not enough seeds"
    assert rows["nos_report_1"]["verdict"]["n"] == 2
    assert rows["nos_report_1"]["transfer"] == ["convnet"]
    assert rows["nos_report_1"]["confirmed_mean"] == 90.0
