"""search.winners: a run's best rules confirmed on a real local Ray (more seeds, longer budget, baselines)
and exported as records that discovered_rules loads, with a generated optimizer importing only torch."""

from __future__ import annotations

import ast
import importlib.util
import inspect
from pathlib import Path

import pytest
import torch

import discovered_rules
from child_tasks import train
from discovered_rules import make_record
from dsl import canonical_key, parse
from dsl.optimizer import RuleOptimizer
from search.config import SearchConfig
from search.store import RunStore, StoreError
from search.winners import (ConfirmSection, _check_replaceable, confirm_and_export, confirmation_seeds,
                            confirmed_task, record_name, run_records)
from tests.search_helpers import tiny_config
from tests.winners_helpers import make_run

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def confirmed(ray_session, tmp_path_factory):
    """The tiny run's top 2 confirmed on 2 seeds at 1.5 x its epochs against adam and sgd."""
    run_dir, records = tmp_path_factory.mktemp("run"), tmp_path_factory.mktemp("records")
    run_id = make_run(run_dir)
    confirmation = confirm_and_export(run_dir, 2, seeds=2, budget_scale=1.5, baselines=("adam", "sgd"),
                                      directory=records, progress=False)
    return run_dir, records, run_id, confirmation


def test_confirmation_trains_the_top_rules_and_baselines_on_fresh_seeds(confirmed) -> None:
    _, records, run_id, confirmation = confirmed
    short = run_id.rsplit("-", 1)[1]
    names = [e.record.name for e in confirmation.exported]
    assert names == [f"nos_{short}_1", f"nos_{short}_2"]  # search rank 1 and 2: sign(m) * g, mhat
    assert [e.record.rule for e in confirmation.exported] == ["sign(m) * g", "mhat"]
    assert [r.name for r in confirmation.table.rows] == [*names, "adam", "sgd"]
    assert confirmation.table.seeds == [1, 2]  # eval_seed 0 picked the rules: left out
    (task,) = confirmation.task.tasks
    assert task.epochs == 3 and task.lr_grid == [0.01, 0.1]
    for row in confirmation.table.rows:
        assert [r.seed for r in row.results] == [1, 2] and all(len(r.val_curve) == 3 for r in row.results)
    # Each training on a worker is the same training here (CPU, same seed and task).
    rec = confirmation.exported[1].record
    assert train("mhat", task, seed=2).reward == pytest.approx(rec.rewards[2], abs=1e-9)
    adam = train("adam", task, seed=1).reward
    assert adam == pytest.approx(rec.baselines["adam"][0], abs=1e-9)


def test_records_hold_the_confirmation_and_load(confirmed) -> None:
    run_dir, records, run_id, confirmation = confirmed
    table = confirmation.table
    with RunStore(run_dir, create=False) as store:
        best = store.best(2)
        run_config = store.config
    for rank, (exported, row) in enumerate(zip(confirmation.exported, best, strict=True), 1):
        rec = discovered_rules.record(exported.record.name, records)
        assert rec == exported.record and exported.json_path == records / f"{rec.name}.json"
        assert rec.source == "search" and rec.task == "digits" and rec.run_id == run_id
        assert rec.canonical_key == row.canonical_key == canonical_key(parse(rec.rule))
        assert rec.formula and rec.latex
        assert rec.rewards == dict(zip([1, 2], table.row(rec.name).rewards, strict=True))
        assert rec.baselines == {"adam": table.row("adam").rewards, "sgd": table.row("sgd").rewards}
        assert rec.curves == {r.seed: r.val_curve for r in table.row(rec.name).results}
        assert rec.hyper["lr"] in (0.01, 0.1) and set(rec.hyper) == {"lr"}
        confirmation_entry = rec.config.pop("confirmation")
        assert rec.config == run_config  # the run's config, with the confirmation beside it
        assert confirmation_entry["search_rank"] == rank and confirmation_entry["search_reward"] == row.reward
        assert confirmation_entry["evaluation_id"] == row.id
        assert [t["epochs"] for t in confirmation_entry["task"]["suite"]] == [3]
        assert confirmation_entry["tasks"]["digits"][0]["score"] == rec.rewards[1], "each task's score kept"
        Loaded = discovered_rules.load(rec.name, records)
        assert issubclass(Loaded, RuleOptimizer) and Loaded.__name__ == discovered_rules.class_name(rec.name)
    assert set(run_records(run_id, records)) == {e.record.canonical_key for e in confirmation.exported}


def test_exported_module_imports_only_torch_and_matches_the_loaded_class(confirmed) -> None:
    _, records, _, confirmation = confirmed
    rec = confirmation.exported[0].record
    source = confirmation.exported[0].py_path.read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or ".").split(".")[0])
    assert imported <= {"torch", "math"}
    spec = importlib.util.spec_from_file_location("exported_winner", confirmation.exported[0].py_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    steps = []
    generated = getattr(module, discovered_rules.class_name(rec.name))
    for cls in (generated, discovered_rules.load(rec.name, records)):
        torch.manual_seed(0)
        weight = torch.nn.Parameter(torch.randn(5))
        opt = cls([weight])
        assert opt.defaults["lr"] == rec.hyper["lr"]
        for _ in range(3):
            opt.zero_grad()
            (weight ** 2).sum().backward()
            opt.step()
        steps.append(weight.detach().clone())
    torch.testing.assert_close(steps[0], steps[1])


def test_names_seeds_and_budget() -> None:
    assert record_name("20250101-120000-ab12cd", 3) == "nos_ab12cd_3"
    assert record_name("Run-X", 1) == "nos_runx_1"
    assert confirmation_seeds(3, eval_seed=0) == [1, 2, 3] and confirmation_seeds(2, eval_seed=1) == [0, 2]
    task = SearchConfig.from_mapping(tiny_config()).task_config
    assert confirmed_task(task, 2.0).epochs == 4 and confirmed_task(task, 0.1).epochs == 1  # >= short run
    limited = confirmed_task(task.model_copy(update={"time_limit_s": 10.0}), 3.0)
    assert limited.time_limit_s == 30.0


def test_the_driver_can_pass_its_confirm_section() -> None:
    section = ConfirmSection()
    assert (section.top_k, section.seeds, section.budget_scale) == (5, 3, 2.0)
    assert section.baselines == ("adam", "momentum", "sgd", "rmsprop")
    parameters = inspect.signature(confirm_and_export).parameters
    assert set(section.model_dump()) <= set(parameters)


def test_a_record_of_another_run_is_never_replaced(tmp_path: Path) -> None:
    run_id = make_run(tmp_path / "run")
    name = record_name(run_id, 1)
    other = make_record(name, "g", task="digits", rewards={1: 50.0}, run_id="another-run")
    discovered_rules.export(other, tmp_path / "records")
    with pytest.raises(FileExistsError, match="another-run"):  # before any training
        confirm_and_export(tmp_path / "run", 1, seeds=1, baselines=("adam",), directory=tmp_path / "records")
    assert discovered_rules.record(name, tmp_path / "records") == other
    own = make_record(name, "g", task="digits", rewards={1: 50.0}, run_id=run_id)
    discovered_rules.export(own, tmp_path / "records", overwrite=True)
    _check_replaceable(tmp_path / "records" / f"{name}.json", run_id)  # this run's own: replaced


def test_errors_before_training(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no results store"):
        confirm_and_export(tmp_path / "empty", 1, seeds=1, baselines=("adam",), directory=tmp_path)
    make_run(tmp_path / "failed", rows=[("g", "failed", 0.0), ("1", "invalid", 0.0)])
    with pytest.raises(ValueError, match="no finished ok evaluation"):
        confirm_and_export(tmp_path / "failed", 1, seeds=1, baselines=("adam",), directory=tmp_path)
    with pytest.raises(ValueError, match="unknown torch baseline 'adma'"):
        confirm_and_export(tmp_path / "failed", 1, seeds=1, baselines=("adma",), directory=tmp_path)
