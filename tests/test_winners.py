"""search.results.winners: a run's best rules confirmed on a real local Ray (more seeds, longer budget,
baselines) and exported as records that discovered_rules loads, with a generated optimizer importing only
torch."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import shutil
from pathlib import Path

import pytest
import torch
from scipy.stats import ttest_rel

import discovered_rules
from child_tasks import train
from child_tasks.compare import paired
from child_tasks.suite import scaled_task
from discovered_rules import MIN_SEEDS, Verdict, make_record, paired_test, verdict
from dsl import canonical_key, parse
from dsl.optimizer import RuleOptimizer
from search.config import SearchConfig
from search.results.winners import (ConfirmSection, _free_name, confirm_and_export, confirmation_seeds,
                                    record_name, run_records)
from search.store import RunStore, StoreError
from tests.search_helpers import tiny_config
from tests.verdict_cases import VERDICT_CASES
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
        best_baseline = max(("adam", "sgd"), key=lambda b: table.row(b).mean)
        test = paired_test(table.row(rec.name).rewards, table.row(best_baseline).rewards)
        assert rec.verdict == Verdict(best_baseline=best_baseline, outcome="not enough seeds", n=2,
                                      gain=test.gain, t=test.t, p=test.p)  # 2 seeds: never "beats"
        docstring = " ".join(exported.py_path.read_text().split())
        assert f"it does not beat {best_baseline}: n=2, not enough seeds (5 needed)" in docstring
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
    assert scaled_task(task, 2.0).epochs == 4 and scaled_task(task, 0.1).epochs == 1  # >= short run
    limited = scaled_task(task.model_copy(update={"time_limit_s": 10.0}), 3.0)
    assert limited.time_limit_s == 30.0


def test_the_confirmation_says_its_longer_budget_needs_its_own_references(monkeypatch, tmp_path,
                                                                          caplog) -> None:
    from child_tasks import reward
    from child_tasks.config import Reference
    from child_tasks.suite import load_suite
    from search.results.winners import confirmed_suite

    monkeypatch.setenv("NOS_CACHE_DIR", str(tmp_path))  # nothing measured yet
    monkeypatch.setattr(reward, "measure_reference", lambda task, data=None: Reference(
        initial=2.3, adam=0.5, seeds=3, fingerprint=reward.fingerprint(task)))
    suite = load_suite("mnist1d_cnn")
    with caplog.at_level("WARNING"):  # (3 x: 2 x, the quickstart's, ships its values in configs/)
        confirmed = confirmed_suite(suite, 3.0)
    assert confirmed.tasks[0].epochs == 3 * suite.tasks[0].epochs
    assert confirmed.tasks[0].reference.adam == 0.5
    assert ("confirmation at 3 x the search's epochs: task mnist1d_cnn: reference values stale"
            in caplog.text)


def test_the_driver_can_pass_its_confirm_section() -> None:
    section = ConfirmSection()
    assert (section.top_k, section.seeds, section.budget_scale) == (5, 3, 2.0)
    assert section.baselines == ("adam", "momentum", "sgd", "rmsprop")
    parameters = inspect.signature(confirm_and_export).parameters
    assert set(section.model_dump()) <= set(parameters)


def test_a_taken_name_is_never_replaced_but_by_the_same_rule_of_the_same_run_with_force(tmp_path) -> None:
    folder = tmp_path / "records"
    mine = make_record("nos_ab12cd_1", "g", task="digits", rewards={1: 50.0}, run_id="run-ab12cd")
    discovered_rules.export(mine, folder)
    other = make_record("nos_ab12cd_1_2", "g", task="digits", rewards={1: 50.0}, run_id="another-run")
    discovered_rules.export(other, folder)
    (folder / "nos_ab12cd_1_3.py").write_text("# a hand-made module, no record\n")
    (folder / "nos_ab12cd_2.json").write_text("{not json")  # unreadable: not ours to replace
    key = mine.canonical_key
    assert _free_name(folder, "nos_ab12cd_1", "run-ab12cd", key, False, set()) == ("nos_ab12cd_1_4", None)
    assert _free_name(folder, "nos_ab12cd_1", "run-ab12cd", key, True, set()) == ("nos_ab12cd_1", mine)
    taken = {"nos_ab12cd_1"}
    assert _free_name(folder, "nos_ab12cd_1", "run-ab12cd", key, True, taken)[0] == "nos_ab12cd_1_4"
    assert _free_name(folder, "nos_ab12cd_1", "run-ab12cd", "0" * 16, True, set())[0] == "nos_ab12cd_1_4"
    assert _free_name(folder, "nos_ab12cd_2", "run-ab12cd", key, True, set()) == ("nos_ab12cd_2_2", None)
    assert _free_name(folder, "nos_ab12cd_1", "another-run", key, True, set()) == ("nos_ab12cd_1_2", other)


@pytest.mark.parametrize("case", VERDICT_CASES)
def test_the_verdict_is_a_one_sided_paired_t_test_on_enough_seeds(case: str) -> None:
    rewards, baselines, (best, outcome) = VERDICT_CASES[case]
    v = verdict(rewards, baselines)
    assert (v.best_baseline, v.outcome, v.beats, v.n) == (best, outcome, outcome == "beats", len(rewards))
    diffs = [r - b for r, b in zip(rewards, baselines[best], strict=True)]
    assert v.gain == pytest.approx(sum(diffs) / len(diffs))
    if len(rewards) == 1:
        assert v.t is None and v.p is None
    elif len(set(diffs)) > 1:  # scipy's test itself, and its t is the z of child_tasks.compare.paired
        expected = ttest_rel(rewards, baselines[best], alternative="greater")
        assert (v.t, v.p) == pytest.approx((expected.statistic, expected.pvalue))
        assert v.t == pytest.approx(paired(rewards, baselines[best])[1])
    if outcome == "beats":
        assert v.n >= MIN_SEEDS and v.p <= 0.05
    if v.n < MIN_SEEDS:  # whatever the gain: "not enough seeds", and the text says how many are needed
        assert v.outcome == "not enough seeds"
        assert v.describe().startswith(f"does not beat {best}: n={v.n}, not enough seeds (5 needed), gain ")
    assert verdict(rewards, {}) is None


def test_a_paired_test_needs_pairs() -> None:
    with pytest.raises(ValueError, match="as many values on each side, got 2 and 3"):
        paired_test([1.0, 2.0], [1.0, 2.0, 3.0])
    assert paired_test([1.0] * 5, [1.0] * 5) == (5, 0.0, 0.0, 0.5)  # no difference at all: no claim


def test_exporting_again_takes_a_new_name_and_force_keeps_transfer_results(confirmed, tmp_path) -> None:
    run_dir, records, run_id, confirmation = confirmed
    folder = tmp_path / "records"
    shutil.copytree(records, folder)
    first = confirmation.exported[0].record
    transfer = {"mnist1d_mlp": [{"name": first.name, "mean": 0.5}]}
    panel = {"rule": first.name, "summary": {"wins": 1, "ties": 5, "losses": 0}}
    with_transfer = first.model_copy(update={"transfer": transfer, "panel": panel})
    discovered_rules.export(with_transfer, folder, overwrite=True)
    again = confirm_and_export(run_dir, 1, seeds=1, baselines=("sgd",), directory=folder, progress=False)
    assert [e.record.name for e in again.exported] == [f"{first.name}_2"]
    assert discovered_rules.record(first.name, folder) == with_transfer, "the first record is untouched"
    forced = confirm_and_export(run_dir, 1, seeds=1, baselines=("sgd",), directory=folder, progress=False,
                                force=True)
    (item,) = forced.exported
    assert item.record.name == first.name and item.record.transfer == transfer and item.record.panel == panel
    assert item.record.rewards != first.rewards, "the confirmation itself is new"
    assert discovered_rules.record(first.name, folder).transfer == transfer
    assert discovered_rules.record(first.name, folder).panel == panel, "the held-out panel is kept too"


def test_errors_before_training(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no results store"):
        confirm_and_export(tmp_path / "empty", 1, seeds=1, baselines=("adam",), directory=tmp_path)
    make_run(tmp_path / "failed", rows=[("g", "failed", 0.0), ("1", "invalid", 0.0)])
    with pytest.raises(ValueError, match="no finished ok evaluation"):
        confirm_and_export(tmp_path / "failed", 1, seeds=1, baselines=("adam",), directory=tmp_path)
    with pytest.raises(ValueError, match="unknown torch baseline 'adma'"):
        confirm_and_export(tmp_path / "failed", 1, seeds=1, baselines=("adma",), directory=tmp_path)


def test_records_default_to_one_folder_outside_the_package_and_a_run_remembers_its_own(tmp_path,
                                                                                      monkeypatch) -> None:
    monkeypatch.setenv("NOS_RULES_DIR", str(tmp_path / "mine"))
    assert discovered_rules.default_folder() == discovered_rules.folder() == tmp_path / "mine"
    monkeypatch.delenv("NOS_RULES_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert discovered_rules.folder() == tmp_path / "data" / "nos" / "rules"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert discovered_rules.folder() == Path.home() / ".local" / "share" / "nos" / "rules"
    package = Path(discovered_rules.__file__).resolve().parent
    assert package not in discovered_rules.folder().parents and discovered_rules.folder() != package
    with RunStore(tmp_path / "run", {"task": "digits"}) as store:
        assert store.records_dir is None
        store.remember_records_dir(tmp_path / "records")
    with RunStore(tmp_path / "run", create=False) as store:
        assert store.records_dir == str((tmp_path / "records").resolve()), "kept for a resume and exports"
