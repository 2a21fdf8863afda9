"""The funnel (search.funnel): its config, ASHA's promotion on arrival and at a stage's end, the stage rows
in the store, the ranking by the highest stage, a real search with a funnel, its resume, what readers show."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest

from configuration import ConfigError
from search.config import SearchConfig
from search.driver import run_search
from search.funnel import BASELINE, Funnel, cutoff, final_top, ranked, stage_seeds
from search.stage_store import StageTable
from search.store import RunStore
from tests.search_helpers import TINY_TASK, tiny_config

STAGES = [{"promote": 0.5, "budget_scale": 2, "seeds": 2},
          {"promote": 0.5, "task": "digits", "task_overrides": {**TINY_TASK, "model.width": 6}, "seeds": 1}]


def funnel_config(budget: int = 12, stages: list | None = None) -> dict:
    """The tiny search with a funnel; no confirmation, and sgd the one baseline trained at every stage."""
    return {**tiny_config(budget=budget, batch_size=6, kind="random"), "funnel": stages or STAGES,
            "confirm": {"top_k": 0, "baselines": ["sgd"]}}


# --- the config -----------------------------------------------------------------------------------------

BAD_STAGES = [  # (the stage, what the one-line error must name)
    ({"promote": 0.0}, "funnel[0].promote"),
    ({"promote": 1.5}, "funnel[0].promote"),
    ({"promote": 0.5, "seeds": 0}, "funnel[0].seeds"),
    ({"promote": 0.5, "budget_scale": 0}, "funnel[0].budget_scale"),
    ({"promote": 0.5, "budget_scale": -2}, "funnel[0].budget_scale"),
    ({"promote": 0.5, "task": "no_such_task"}, "funnel[0].task"),
    ({"promote": 0.5, "task_overrides": {"model.widht": 3}}, "funnel[0].task_overrides"),
    ({"seeds": 2}, "funnel[0].promote"),
]


@pytest.mark.parametrize("stage, key", BAD_STAGES)
def test_a_bad_stage_is_refused_naming_its_key(stage, key) -> None:
    with pytest.raises(ConfigError) as err:
        SearchConfig.from_mapping(funnel_config(stages=[stage]))
    assert key in str(err.value)


def test_stages_are_scaled_stored_in_full_and_read_back_equal() -> None:
    config = SearchConfig.from_mapping(funnel_config())
    first, second = config.stages
    assert first.names == config.suite.names and first.tasks[0].epochs == 2 * config.suite.tasks[0].epochs
    assert second.tasks[0].model.width == 6
    stored = config.to_mapping()
    assert all(stage["suite"] for stage in stored["funnel"]), "the stage's tasks as trained, in full"
    again = SearchConfig.from_mapping(stored)
    assert again.stages == config.stages, "a resume trains exactly what the run did (not scaled twice)"


def test_the_quickstart_has_a_funnel_of_longer_budgets_and_another_kind_of_task() -> None:
    from search.config import load_search_config

    config = load_search_config()
    assert len(config.stages) >= 2 and config.funnel[0].budget_scale >= 4
    kinds = {t.task for stage in config.stages for t in stage.tasks}
    assert kinds - {t.task for t in config.suite.tasks}, "a stage adds tasks of another kind"
    assert {t.reward for t in config.stages[-1].tasks} <= {"val_loss", "accuracy"}, "scored on validation"


# --- promotion -------------------------------------------------------------------------------------------

def test_cutoff_is_numpys_percentile_and_final_top_the_best_fraction() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 17):
        values = rng.normal(size=n).tolist()
        for fraction in (0.1, 0.25, 0.5, 1.0):
            assert cutoff(values, fraction) == pytest.approx(np.percentile(values, 100 * (1 - fraction)))
    assert final_top({"a": 1.0, "b": 3.0, "c": 2.0, "d": 0.0}, 0.5) == ["b", "c"]
    assert final_top({"a": 1.0, "b": 3.0, "c": 2.0}, 0.5) == ["b", "c"], "ceil(0.5 * 3)"


class FakeScheduler:
    def __init__(self) -> None:
        self.jobs = []

    def add(self, tag, payload, seed, tries=0, *, args=(), first=False) -> None:
        self.jobs.append((tag, payload, seed, args, first))


def _store_with_rules(tmp_path, rewards: list[float]) -> RunStore:
    store = RunStore(tmp_path, config={})
    rows = [{"position": i, "tokens": [i], "log_probs": [0.0], "version": 0, "groups": [["g"]],
             "rule": f"{i + 1} * g", "canonical_key": f"k{i}"} for i in range(len(rewards))]
    store.add_batch(0, rows)
    return store


def test_promotion_on_arrival_as_asha_and_the_final_top_at_the_stage_end(tmp_path) -> None:
    from search.config import FunnelStage

    rewards = [5.0, 4.0, 3.0, 1.0, 0.5, 2.0]
    store = _store_with_rules(tmp_path, rewards)
    scheduler = FakeScheduler()
    funnel = Funnel([FunnelStage(promote=0.34, seeds=2)], store, scheduler, baselines=["sgd"])
    funnel.start()
    assert [(j[1], j[2], j[3], j[4]) for j in scheduler.jobs] == [("torch:sgd", s, (1,), False)
                                                                  for s in stage_seeds(1, 2)]
    before = []  # Ray Tune's rule: measured against the results recorded before it; the first goes on
    for row, reward in zip(store.evaluations(), rewards, strict=True):
        funnel.offer(0, row.canonical_key, row.rule, row.id, reward)
        expected = not before or reward >= np.percentile(before, 66)
        assert (row.canonical_key in funnel.promoted[1]) == expected, (before, reward)
        before.append(reward)
    assert funnel.promoted[1] == {"k0"}, "the first always goes on; the others arrived below the cutoff"
    promoted_jobs = [j for j in scheduler.jobs if j[4]]
    assert [j[2] for j in promoted_jobs] == [1000, 1001] and all(j[3] == (1,) for j in promoted_jobs)
    funnel.close_finished(stage_zero_done=False)
    assert funnel.promoted[1] == {"k0"}, "stage 0 may still receive results: nothing more"
    funnel.close_finished(stage_zero_done=True)
    assert funnel.promoted[1] == {"k0", "k1", "k2"}, "the final top ceil(0.34 * 6) = 3: 5 (already), 4, 3"
    assert len(StageTable(store).rows(1)) == 1 * 2 + 3 * 2, "the baseline and 3 rules: a row per seed"
    store.close()


def test_ranked_orders_by_highest_stage_then_its_score(tmp_path) -> None:
    from search.config import FunnelStage

    store = _store_with_rules(tmp_path, [1.0, 5.0, 2.0])
    for row, reward in zip(store.evaluations(), [1.0, 5.0, 2.0], strict=True):
        store.record(row.id, "ok", reward)
    table = StageTable(store)
    k0, k1, k2 = store.evaluations()
    for row, scores in ((k0, [3.0, 4.0]), (k2, [1.0, 1.0]), (k1, [9.0])):  # k1: one seed of two so far
        for seed, value in zip(stage_seeds(1, 2), scores):
            stage_row = table.add(1, row.canonical_key, row.rule, row.id, [seed])[0]
            table.record(stage_row.id, "ok", value)
    order = ranked(store, 3, [FunnelStage(promote=0.5, seeds=2)])
    assert [(r.row.canonical_key, r.stage, r.score) for r in order] == [("k0", 1, 3.5), ("k2", 1, 1.0),
                                                                        ("k1", 0, 5.0)]
    assert [r.row.canonical_key for r in ranked(store, 3)] == ["k1", "k2", "k0"], "no funnel: stage 0"
    store.close()


# --- a real search -------------------------------------------------------------------------------------

def _stage_rows(run_dir):
    with RunStore(run_dir, create=False) as store:
        return StageTable(store).rows()


@pytest.fixture(scope="module")
def funnel_run(ray_session, tmp_path_factory):
    """One tiny search with a two-stage funnel (about 20 s), shared by the tests that only read it."""
    run_dir = tmp_path_factory.mktemp("funnel") / "run"
    return run_dir, run_search(funnel_config(), run_dir, progress=False)


def test_a_search_with_a_funnel_promotes_records_and_ranks_by_stage(funnel_run) -> None:
    run_dir, summary = funnel_run
    rows = _stage_rows(run_dir)
    assert rows and all(r.status == "ok" and r.attempts == 1 for r in rows)
    rules = {(r.stage, r.canonical_key) for r in rows if not r.canonical_key.startswith(BASELINE)}
    stage1 = {k for s, k in rules if s == 1}
    stage2 = {k for s, k in rules if s == 2}
    assert stage2 and stage2 <= stage1, "only rules that completed stage 1 reach stage 2"
    for stage, seeds in ((1, 2), (2, 1)):
        for key in {k for s, k in rules if s == stage}:
            assert sorted(r.seed for r in rows if (r.stage, r.canonical_key) == (stage, key)) == \
                stage_seeds(stage, seeds)
    with RunStore(run_dir, create=False) as store:
        ok = {r.canonical_key for r in store.evaluations("ok")}
        top = ranked(store, 3, SearchConfig.from_mapping(store.config).funnel)
    assert stage1 <= ok and len(stage1) >= len(ok) // 2, "η = 0.5: at least the final top half"
    assert summary.stages == [len(ok), len(stage1), len(stage2)]
    assert top[0].stage == 2 and summary.best_stage == 2 and summary.best_reward == top[0].score
    assert summary.busy_fraction is not None and summary.funnel_evaluations == len(rows)
    baselines = {(r.stage, r.canonical_key) for r in rows if r.canonical_key.startswith(BASELINE)}
    assert baselines == {(1, BASELINE + "sgd"), (2, BASELINE + "sgd")}, "the baselines at every stage"


def test_a_resume_trains_the_pending_stage_rows_and_nothing_else(funnel_run, tmp_path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(funnel_run[0], run_dir)
    before = {r.id: r for r in _stage_rows(run_dir)}
    # As if the driver had been killed mid-funnel: the last stage-2 rows and one of stage 1 not finished.
    undone = [r for r in before.values() if r.stage == 2][-2:] + [next(r for r in before.values()
                                                                       if r.stage == 1)]
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        db.executemany("UPDATE stage_evaluations SET status = 'pending', reward = NULL, finished_at = NULL "
                       "WHERE id = ?", [(r.id,) for r in undone])
    summary = run_search(None, run_dir, resume=True, progress=False)
    after = {r.id: r for r in _stage_rows(run_dir)}
    assert set(after) == set(before), "no row added"
    redone = {i for i in after if after[i].attempts != before[i].attempts}
    assert redone == {r.id for r in undone}, "exactly the unfinished rows, once each"
    assert all(after[i].status == "ok" for i in after)
    assert summary.funnel_evaluations == len(undone) and summary.evaluations == 0


def test_listing_and_report_show_the_stages(funnel_run) -> None:
    from search.cli.browse import run_listing
    from search.cli.report_data import read_run
    from search.cli.report_html import run_page
    from search.cli.tables import listing_rows

    run_dir = funnel_run[0]
    listing = run_listing(run_dir, top=5)
    assert len(listing.funnel) == 3 and listing.rows[0].stages.keys() >= {0, 1}
    assert "funnel: rules that completed each stage (stage 0:" in listing.caption()
    assert listing_rows(listing)[0]["stages"]["1"] == listing.rows[0].stages[1]
    run = read_run(run_dir, top=3)
    page = run_page([run])
    assert "stage 1 score" in page and "Baselines at stage 2" in page and run.funnel == listing.funnel


def test_the_command_line_refuses_a_bad_stage_and_a_changed_funnel_on_resume(tmp_path) -> None:
    from typer.testing import CliRunner

    from search.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["search", "--run-dir", str(tmp_path / "r"), "--set",
                                 "funnel=[{promote: 2}]"], terminal_width=200)
    assert result.exit_code == 2 and "funnel[0].promote: expected less than or equal to 1" in result.output
    assert not (tmp_path / "r").exists(), "refused before anything is written"
    result = runner.invoke(app, ["search", "--resume", str(tmp_path), "--set", "funnel=[]"],
                           terminal_width=200)
    assert result.exit_code == 2 and "--resume continues a run with its own config" in result.output


def test_the_quickstarts_derived_tasks_ship_their_reference_values() -> None:
    """A first quickstart measures no reference (minutes on one core before anything trains): its funnel's
    stages and its confirmation read theirs from configs/references.json (benchmarks/references.py)."""
    from child_tasks.config import NORMALISED
    from child_tasks.reward import fingerprint, shipped_references, with_reference
    from search.config import load_search_config

    config = load_search_config()
    derived = [*config.stages, config.suite.scaled(config.confirm.budget_scale)]
    tasks = [t for suite in derived for t in suite.tasks if t.reward in NORMALISED]
    shipped = shipped_references()
    missing = [t.name for t in tasks if fingerprint(t) not in shipped]
    assert not missing, f"run python benchmarks/references.py: no shipped reference for {missing}"
    assert all(with_reference(t, log_fn=pytest.fail).reference == shipped[fingerprint(t)] for t in tasks)
