"""The held-out transfer panel (search.results.panel): the cell arithmetic on a shared table of per-seed
metrics in both directions, then, on a local Ray with two tiny digits tasks and 2 seeds, the baseline
cache (a second rule trains only itself; a damaged entry is trained again), a task whose data is missing,
the record's panel field and the report, and `nos transfer NAME --panel`."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import discovered_rules
from child_tasks.config import load_task_config, override
from discovered_rules import make_record
from discovered_rules.records import read_record, write_record
from search.cli import app
from search.cli.report_html import library_page
from search.results import panel as panel_module
from search.results.panel import (PANEL_BASELINES, PANEL_TASKS, PanelResult, PanelWarning, cache_path,
                                  load_panel, run_panel, score_cell, summarise)
from tests.search_helpers import TINY_TASK

torch.set_num_threads(1)
runner = CliRunner()

# Per-seed validation metrics (higher is better). The baselines' means are 71 (sgd) and 81 (adam): adam is
# the best, the spread is 10. Each rule's paired differences with adam are in the comments.
BASELINES = {"sgd": [70.0, 72.0, 71.0], "adam": [80.0, 81.0, 82.0]}
CASES = {  # rule values -> (outcome, gain against adam, z against adam)
    "win": ([83.0, 84.0, 85.0], "win", 3.0, math.inf),  # +3 each seed
    "loss": ([75.0, 77.0, 76.0], "loss", -5.0, -5.0 / (1.0 / math.sqrt(3))),  # -5, -4, -6
    "tie": ([82.0, 79.0, 84.0], "tie", 2 / 3, (2 / 3) / ((4 / math.sqrt(3)) / math.sqrt(3))),  # +2, -2, +2
}


def oriented(values: list[float | None], higher: bool) -> list[float | None]:
    """The table as a higher-is-better metric, or as a lower-is-better one (100 - value): the outcomes,
    gains and z are the same either way."""
    return [v if higher or v is None else 100.0 - v for v in values]


@pytest.mark.parametrize("higher", [True, False], ids=["higher is better", "lower is better"])
@pytest.mark.parametrize("case", list(CASES))
def test_cell_arithmetic(case: str, higher: bool) -> None:
    rule, expected, gain, z = CASES[case]
    values = {"rule": oriented(rule, higher), **{b: oriented(v, higher) for b, v in BASELINES.items()}}
    cell = score_cell("task", "accuracy" if higher else "mse", higher, "rule", values)
    assert cell.best_baseline == "adam" and cell.outcome == expected
    assert cell.gain == pytest.approx(gain) and cell.z == pytest.approx(z)
    assert cell.spread == pytest.approx(10.0) and cell.normalised_gain == pytest.approx(gain / 10.0)
    # Against every baseline: sgd is 10 worse than adam on every seed.
    assert cell.against["sgd"]["gain"] == pytest.approx(gain + 10.0)
    assert cell.against["adam"] == {"gain": cell.gain, "z": cell.z}


@pytest.mark.parametrize("higher", [True, False], ids=["higher is better", "lower is better"])
def test_a_seed_that_ended_early_counts_as_the_worst_value(higher: bool) -> None:
    values = {"rule": oriented([None, 84.0, 85.0], higher), **{b: oriented(v, higher) for b, v in
                                                                BASELINES.items()}}
    cell = score_cell("task", "metric", higher, "rule", values)
    assert cell.values["rule"][0] == (70.0 if higher else 30.0)  # the worst of the whole cell
    assert cell.gain == pytest.approx((-10.0 + 3.0 + 3.0) / 3)


def test_summary_counts_and_mean_normalised_gain() -> None:
    cells = [score_cell(case, "accuracy", True, "rule", {"rule": CASES[case][0], **BASELINES})
             for case in CASES]
    cells.append(score_cell("flat", "accuracy", True, "rule",  # baselines that tie: no spread, no norm. gain
                            {"rule": [1.0, 2.0, 3.0], "sgd": [1.0, 2.0, 3.0], "adam": [1.0, 2.0, 3.0]}))
    summary = summarise(cells)
    assert (summary["wins"], summary["ties"], summary["losses"], summary["wins_minus_losses"]) == (1, 2, 1, 0)
    assert summary["mean_normalised_gain"] == pytest.approx((0.3 - 0.5 + 1 / 15) / 3)
    # One seed: no z, a tie.
    assert score_cell("one", "accuracy", True, "rule", {"rule": [90.0], "sgd": [80.0]}).outcome == "tie"


def hand_made_result(task: str = "digits") -> PanelResult:
    cells = [score_cell(task, "accuracy", True, "nos_panel_1", {"nos_panel_1": CASES["win"][0], **BASELINES})]
    return PanelResult("nos_panel_1", "sign(m) * g", {}, [0, 1, 2], list(BASELINES), cells,
                       {"missing_task": "no data"}, 12.0, {task: 11.0})


def test_record_round_trip_and_the_report_escape_the_panel(tmp_path: Path) -> None:
    markup = "<b onclick=alert(1)>task</b>"
    document = hand_made_result(markup).to_json()
    json.dumps(document, allow_nan=False)  # plain JSON: the infinite z is None
    assert document["tasks"][markup]["z"] is None and document["summary"]["wins"] == 1
    rec = make_record("nos_panel_1", "sign(m) * g", task="digits", rewards={0: 1.0}, panel=document)
    path = write_record(rec, tmp_path / "nos_panel_1.json")
    assert read_record(path).panel == document
    page = library_page([read_record(path)], str(tmp_path))
    assert markup not in page and "&lt;b onclick=alert(1)&gt;task&lt;/b&gt;" in page
    assert "1 W / 0 T / 0 L" in page and "<span class=yes>W</span>" in page and "missing_task" in page


def test_the_panel_is_defined_once_and_its_tasks_load() -> None:
    from search.cli.rules import PANEL_BASELINES as CLI_BASELINES
    from search.config import check_baselines

    assert CLI_BASELINES == PANEL_BASELINES and check_baselines(list(PANEL_BASELINES))
    configs = [load_task_config(name) for name in PANEL_TASKS]
    assert len(configs) >= 6 and len({c.task for c in configs}) >= 5


# --- on Ray ----------------------------------------------------------------------------------------------

def tiny_tasks(folder: Path) -> list[str]:
    """Two tiny digits tasks (widths 4 and 6) as config files, as the panel's names would be."""
    paths = []
    for width in (4, 6):
        config = override(load_task_config("digits"), {**TINY_TASK, "model.width": width})
        path = folder / f"tiny_{width}.yaml"
        path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude={"name"})))
        paths.append(str(path))
    return paths


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("NOS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_baselines_are_cached_and_a_damaged_entry_is_trained_again(ray_session, cache: Path, tmp_path: Path,
                                                                   monkeypatch) -> None:
    tasks = tiny_tasks(tmp_path)
    trained: list[list[str]] = []
    original = panel_module._train

    def counting(panel, jobs, *args):
        trained.append(sorted(f"{panel[j.task].key}:{j.row.label}:{j.seed}" for j in jobs))
        return original(panel, jobs, *args)

    monkeypatch.setattr(panel_module, "_train", counting)
    options = {"seeds": 2, "baselines": ("sgd",), "tasks": tasks, "workers": 2, "progress": False,
               "save": False}
    first = run_panel("powersign", **options)
    assert len(trained[0]) == 2 * 2 * 2  # (rule, sgd) x 2 tasks x 2 seeds
    assert len(list(cache.glob("panel/*/sgd/seed*.json"))) == 4
    second = run_panel("addsign", **options)
    assert trained[1] == sorted(f"tiny_{w}:addsign:{s}" for w in (4, 6) for s in (0, 1))
    assert [c.cached for c in second.cells] == [["sgd"], ["sgd"]]
    assert [c.values["sgd"] for c in second.cells] == [c.values["sgd"] for c in first.cells]

    damaged = cache_path(load_task_config(tasks[0]), "sgd", 1)
    damaged.write_text("{not json")
    with pytest.warns(PanelWarning, match="panel cache .* is damaged") as caught:
        third = run_panel("addsign", **options)
    assert len(caught) == 1
    assert trained[2] == sorted([*trained[1], "tiny_4:sgd:1"])
    assert third.cells[0].values["sgd"] == first.cells[0].values["sgd"]  # the same training again
    assert json.loads(damaged.read_text())["val_metric"] == first.cells[0].values["sgd"][1]


def test_the_costliest_tasks_train_first(cache: Path, tmp_path: Path, monkeypatch) -> None:
    """Without Ray: the baselines come from the cache (with what each training took there), and the
    rule's trainings are queued costliest task first."""
    tasks = tiny_tasks(tmp_path)
    for path, seconds in zip(tasks, (1.0, 5.0), strict=True):
        for seed in (0, 1):
            panel_module._write_cached(load_task_config(path), "sgd", seed, 80.0 + seed, seconds)
    queued = []

    def fake(panel, jobs, values, seeds, *rest):
        for job in jobs:
            queued.append((panel[job.task].key, job.row.label, job.seed))
            values.setdefault((job.task, job.row.label), [None] * seeds)[job.seed] = 90.0
        return {}, {}

    monkeypatch.setattr(panel_module, "_train", fake)
    result = run_panel("powersign", seeds=2, baselines=("sgd",), tasks=tasks, progress=False, save=False)
    assert queued == [("tiny_6", "powersign", 0), ("tiny_6", "powersign", 1), ("tiny_4", "powersign", 0),
                      ("tiny_4", "powersign", 1)]
    assert [c.cached for c in result.cells] == [["sgd"], ["sgd"]]
    assert [c.gain for c in result.cells] == [9.5, 9.5] and result.summary["wins"] == 2  # +10, +9: z 19


def test_a_task_whose_data_is_missing_is_skipped_with_one_warning(tmp_path: Path) -> None:
    missing = override(load_task_config("cifar10_convnet"), {"data.path": str(tmp_path / "no-cifar")})
    tasks = [missing, *tiny_tasks(tmp_path)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        panel, skipped = load_panel(tasks)
    said = [str(w.message) for w in caught if issubclass(w.category, PanelWarning)]
    assert len(said) == 1 and said[0].startswith("panel task cifar10_convnet skipped: ")
    assert "\n" not in said[0] and str(tmp_path / "no-cifar") in said[0]
    assert [t.key for t in panel] == ["tiny_4", "tiny_6"] and list(skipped) == ["cifar10_convnet"]


def run(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


def test_nos_transfer_panel_saves_into_the_record(ray_session, cache: Path, tmp_path: Path,
                                                   monkeypatch) -> None:
    monkeypatch.setattr(panel_module, "PANEL_TASKS", tuple(tiny_tasks(tmp_path)))
    records = tmp_path / "records"
    rec = make_record("nos_panel_1", "sign(m) * g", task="digits", rewards={0: 90.0}, hyper={"lr": 0.1})
    write_record(rec, records / "nos_panel_1.json")
    result = run("transfer", "nos_panel_1", "--panel", "--seeds", "2", "--baselines", "sgd,adam",
                 "--records-dir", records, "--no-progress")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.replace("│", " ").split())
    assert f"saved to {records / 'nos_panel_1.json'}" in out and "wins - losses" in out
    panel = discovered_rules.record("nos_panel_1", records).panel
    assert list(panel["tasks"]) == ["tiny_4", "tiny_6"] and panel["seeds"] == [0, 1]
    assert panel["baselines"] == ["sgd", "adam"] and panel["summary"]["tasks"] == 2
    cell = panel["tasks"]["tiny_4"]
    assert cell["outcome"] in ("win", "tie", "loss") and set(cell["against"]) == {"sgd", "adam"}
    assert cell["best_baseline"] == max(("sgd", "adam"), key=lambda b: cell["means"][b])

    report = run("report", "--rules", "--records-dir", records, "-o", tmp_path / "rules.html")
    assert report.exit_code == 0, report.output
    assert "held-out transfer panel" in (tmp_path / "rules.html").read_text()


def test_panel_and_task_together_are_refused_in_one_line(tmp_path: Path) -> None:
    result = run("transfer", "adam", "--panel", "--task", "digits", "--records-dir", tmp_path)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "--task or --panel, not both" in result.output
    neither = run("transfer", "adam", "--records-dir", tmp_path)
    assert neither.exit_code == 2 and "give --task T or --panel" in neither.output


def test_a_diverged_baseline_is_cached_as_such_and_a_missing_value_is_damaged(cache: Path) -> None:
    task = load_task_config("panel_friedman_mlp")
    panel_module._write_cached(task, "momentum", 0, None, 3.0, "diverged")
    assert panel_module.read_cached(task, "momentum", 0) == (None, 3.0), "diverges again: not trained again"
    panel_module._write_cached(task, "sgd", 1, 0.25, 2.0)
    assert panel_module.read_cached(task, "sgd", 1) == (0.25, 2.0)
    entry = json.loads(cache_path(task, "sgd", 1).read_text())
    cache_path(task, "sgd", 1).write_text(json.dumps({**entry, "val_metric": None}))
    with pytest.warns(PanelWarning, match="damaged"):
        assert panel_module.read_cached(task, "sgd", 1) is None, "no value and no divergence: trained again"
