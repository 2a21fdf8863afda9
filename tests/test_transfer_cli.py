"""The commands that train, on a real local Ray with the tiny digits task: nos rules export, the run
listing's baselines, nos transfer (into a record, and a reference rule's JSON file), then nos rules show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import discovered_rules
from child_tasks import train
from search.cli import app
from search.config import SearchConfig
from search.results.baselines import read_cache
from search.results.winners import record_name
from tests.search_helpers import TINY_TASK, tiny_config
from tests.winners_helpers import TINY_SET, make_run

torch.set_num_threads(1)
runner = CliRunner()
TINY_KEY = "digits [" + ", ".join(f"{k}={v}" for k, v in TINY_TASK.items()) + "]"


def run(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


def flat(output: str) -> str:
    return " ".join(output.replace("│", " ").split())


def test_export_list_transfer_show(ray_session, tmp_path: Path) -> None:
    run_dir, records = tmp_path / "run", tmp_path / "records"
    run_id = make_run(run_dir)
    name = record_name(run_id, 1)

    result = run("rules", "export", run_dir, "--top", "1", "--seeds", "2", "--budget-scale", "1",
                 "--baselines", "adam", "--records-dir", records, "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"exported {name}" in flat(result.output) and "over seeds [1, 2]" in flat(result.output)
    rec = discovered_rules.record(name, records)
    assert set(rec.rewards) == {1, 2} and len(rec.baselines["adam"]) == 2
    assert (records / f"{name}.py").is_file()

    # Listing only reads; --compute-baselines trains adam once at the run's own budget and seed (a run
    # made without a search, as here, has none), caches it, and the listing shows both gains.
    result = run("rules", "list", run_dir, "--baselines", "adam", "--records-dir", records,
                 "--compute-baselines")
    assert result.exit_code == 0, result.output
    cache = read_cache(run_dir)
    task = SearchConfig.from_mapping(tiny_config()).task_config
    assert cache is not None and cache.run_id == run_id and set(cache.rewards) == {"adam"} and cache.seed == 0
    assert cache.rewards["adam"] == pytest.approx(train("adam", task, seed=0).reward, abs=1e-9)
    first = next(line for line in result.output.splitlines() if line.split("│")[1:2] == ["    1 "])
    assert f"{90.0 - cache.rewards['adam']:+.3f}" in first and name in first
    mean = sum(rec.rewards.values()) / 2
    assert f"{mean - sum(rec.baselines['adam']) / 2:+.3f}" in first

    result = run("transfer", name, "--task", "digits", *TINY_SET, "--seeds", "2", "--baselines", "sgd",
                 "--records-dir", records, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "over seeds [0, 1]" in flat(result.output)
    assert f"saved to {records / (name + '.json')}" in flat(result.output)
    rec = discovered_rules.record(name, records)
    rows = rec.transfer[TINY_KEY]
    assert [row["name"] for row in rows] == [name, "sgd"] and all(row["seeds"] == [0, 1] for row in rows)
    assert rows[1]["values"] == pytest.approx([train("sgd", task, seed=s).reward for s in (0, 1)], abs=1e-9)
    assert rec.rewards and rec.curves  # the rest of the record is kept

    result = run("rules", "show", name, "--records-dir", records)
    assert result.exit_code == 0, result.output
    assert f"transfer {TINY_KEY} {name} {rows[0]['mean']:.2f}" in flat(result.output)
    png = Path(result.output.rsplit("learning curves:", 1)[1].strip())
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_transfer_of_a_reference_rule_writes_a_json_file(ray_session, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("transfer", "adam", "--task", "digits", *TINY_SET, "--seeds", "1", "--baselines", "adam",
                 "--no-progress")
    assert result.exit_code == 0, result.output
    saved = list(tmp_path.glob("transfer_adam_digits*.json"))
    assert len(saved) == 1 and f"saved to {saved[0]}" in flat(result.output)
    document = json.loads(saved[0].read_text())
    assert document["rule"] == "adam" and document["task"] == TINY_KEY and document["seeds"] == [0]
    # The rule-language Adam (labelled rule:adam next to torch's adam) trains as its own row.
    assert [row["name"] for row in document["rows"]] == ["rule:adam", "adam"]
    assert document["task_config"]["model"]["width"] == 4


def test_transfer_of_rule_text_writes_a_json_file(ray_session, tmp_path: Path, monkeypatch) -> None:
    from dsl import canonical_key, parse

    monkeypatch.chdir(tmp_path)
    result = run("transfer", "sign(m) * g", "--task", "digits", *TINY_SET, "--seeds", "1", "--baselines",
                 "sgd", "--no-progress")
    assert result.exit_code == 0, result.output
    label = f"rule_{canonical_key(parse('sign(m) * g'))[:8]}"
    saved = list(tmp_path.glob(f"transfer_{label}_digits*.json"))
    assert len(saved) == 1 and f"saved to {saved[0]}" in flat(result.output)
    document = json.loads(saved[0].read_text())
    assert document["rule"] == label and document["text"] == "sign(m) * g"
    assert [row["name"] for row in document["rows"]] == [label, "sgd"]


def test_transfer_refuses_what_is_neither_a_rule_nor_a_name(tmp_path: Path) -> None:
    typo = run("transfer", "adamm", "--task", "digits", "--records-dir", tmp_path)
    assert typo.exit_code == 2 and "did you mean adam" in flat(typo.output)
    broken = run("transfer", "sign(m *", "--task", "digits", "--records-dir", tmp_path)
    assert broken.exit_code == 2 and "not a known rule name nor valid rule text" in broken.output
