"""compare(): one row per optimizer, one training per seed, mean and sample std of the reward."""

from __future__ import annotations

import json
import statistics

import pytest
from rich.console import Console

from child_tasks.compare import compare, mean_std
from dsl import known_rules
from tests.child_task_helpers import tiny_digits


@pytest.fixture(scope="module")
def table():
    optimizers = ["sgd", known_rules()["powersign"], "exp(exp(g)) * 1e6"]
    return compare(optimizers, tiny_digits(), seeds=[0, 1])


def test_one_row_per_optimizer_and_one_result_per_seed(table):
    assert [r.name for r in table.rows] == ["sgd", "powersign", "exp(exp(g)) * 1e6"]
    assert (table.task, table.metric, table.seeds) == ("digits", "accuracy", [0, 1])
    for row in table.rows:
        assert [r.seed for r in row.results] == [0, 1]
        assert [r.optimizer for r in row.results] == [row.name] * 2


def test_mean_and_std_are_those_of_the_rewards(table):
    for row in table.rows:
        rewards = [r.reward for r in row.results]
        assert row.mean == pytest.approx(statistics.fmean(rewards))
        assert row.std == pytest.approx(statistics.stdev(rewards))
    assert table.row("exp(exp(g)) * 1e6").mean == 0.0 and table.row("exp(exp(g)) * 1e6").failed == 2
    means = [r.mean for r in table.rows]
    assert table.spread == pytest.approx(max(means) - min(means))
    assert table.max_std == max(r.std for r in table.rows)


def test_rows_as_dicts_and_as_text(table):
    rows = json.loads(json.dumps(table.to_rows()))
    assert [r["name"] for r in rows] == ["sgd", "powersign", "exp(exp(g)) * 1e6"]
    assert set(rows[0]) >= {"mean", "std", "test_mean", "test_std", "values", "seeds", "lrs", "failed"}
    console = Console(record=True, width=150)
    table.print(console)
    text = console.export_text()
    assert "powersign" in text and "±" in text and "spread" in text
    assert "sgd" in str(table)


def test_labels_from_a_mapping_and_mean_std_of_one():
    table = compare({"PowerSign": "exp(sign(g) * sign(m)) * g"}, tiny_digits(epochs=1), seeds=[5])
    assert table.rows[0].name == "PowerSign" and table.rows[0].std == 0.0
    assert mean_std([3.0]) == (3.0, 0.0)


def test_bad_lists_fail_before_any_training():
    with pytest.raises(ValueError, match="listed twice: sgd"):
        compare(["sgd", "sgd"], tiny_digits())
    with pytest.raises(ValueError, match="unknown optimizer 'sgdd'"):
        compare(["adam", "sgdd"], tiny_digits())
