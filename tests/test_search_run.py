"""The search on a real local Ray: tiny runs end to end, duplicates, random search, failing evaluations,
errors that come before anything runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import discovered_rules
from child_tasks import train
from controller import make_searcher
from dsl import canonical_key, why_invalid
from search.cli import app
from search.cluster import ClusterError, check_gcs
from search.config import SearchConfig
from search.driver import CHECKPOINT, run_search
from search.store import RunStore, StoreError
from search.workers import EvaluationWorker
from tests.search_helpers import DUPLICATE_VOCABULARY, free_port, tiny_config

torch.set_num_threads(1)
TRAINED = ("ok", "diverged", "failed")


def test_tiny_search_end_to_end(ray_session, tmp_path) -> None:
    raw = {**tiny_config(budget=12, batch_size=6, invalid_reward=-1.0),
           "confirm": {"top_k": 2, "seeds": 1, "budget_scale": 1.0, "baselines": ["sgd"]}}
    summary = run_search(raw, tmp_path / "run", progress=False, records_dir=tmp_path / "records")
    config = SearchConfig.from_mapping(raw)
    # The baselines were trained at the start, at the run's budget: listings read them, never train.
    from search.results.baselines import run_baselines

    cache = run_baselines(tmp_path / "run", ["sgd"], compute=False)
    assert cache is not None and set(cache.rewards) == {"sgd"} and cache.seed == config.search.eval_seed
    with RunStore(tmp_path / "run", create=False) as store:
        rows = store.evaluations()
        updates = store.updates()
        assert store.config == config.to_mapping()
    batches = sorted({r.batch for r in rows})
    assert batches == list(range(len(batches))) and len(batches) >= 2
    # Every batch whole but the last, which the budget may cut (positions 0..n-1 of it kept).
    sizes = [sum(r.batch == b for r in rows) for b in batches]
    assert sizes[:-1] == [6] * (len(batches) - 1) and 1 <= sizes[-1] <= 6
    assert sorted((r.batch, r.position) for r in rows) == [(b, p) for b in batches for p in range(sizes[b])]
    assert {r.status for r in rows} <= {"ok", "diverged", "invalid", "duplicate"}
    for row in rows:
        if row.status == "invalid":
            assert row.reward == -1.0 and row.attempts == 0 and row.error
            assert row.rule is None or why_invalid_text(row.rule) == row.error
        if row.status == "ok":
            assert 0 < row.reward <= 100 and row.lr in config.task_config.lr_grid and row.attempts == 1
            assert len(row.curves["val_curve"]) == config.task_config.epochs
            assert row.result["reward"] == row.result["tasks"]["digits"]["val_metric"] == row.reward
            assert row.canonical_key == canonical_key_text(row.rule)
            assert ":" in row.worker and row.duration > 0 and row.finished_at >= row.created_at
    ok = [r for r in rows if r.status == "ok"]
    assert ok, "the small space always yields trainable rules"
    # The worker trained with the run's task and seed: the same training here gives the same reward.
    assert train(ok[0].rule, config.task_config, seed=0).reward == pytest.approx(ok[0].reward, abs=1e-9)
    # The budget counts trainings: batches were drawn until their trainings reached it, the last one cut
    # after the sample that did: exactly the budget is trained.
    trained = [sum(r.attempts > 0 for r in rows if r.batch == b) for b in batches]
    assert sum(trained[:-1]) < 12 == sum(trained) == summary.trained and summary.stopped == "budget"
    assert rows[-1].attempts == 1, "the cut batch ends with the training that reached the budget"
    # Pipelined: batch b came from the policy after update b - 2 (max_batches_ahead 1), each update
    # learned from exactly the rewards in the store's reward column, and the last update is checkpointed.
    assert all(r.version == max(0, r.batch - 1) for r in rows)
    assert [u["batch"] for u in updates] == batches
    for update in updates:
        rewards = [r.reward for r in rows if r.batch == update["batch"]]
        assert update["mean_reward"] == pytest.approx(sum(rewards) / len(rewards))
        assert update["samples"] == sizes[update["batch"]] and update["staleness"] == min(update["batch"], 1)
    controller = make_searcher(config.controller)
    controller.load(tmp_path / "run" / CHECKPOINT)
    assert controller.updates == len(batches)
    assert summary.counts == {**dict.fromkeys(("pending", "failed"), 0), **_counts(rows)}
    assert summary.samples == len(rows) and summary.updates == len(batches) and summary.evaluations == len(ok)
    assert summary.best_reward == max(r.reward for r in ok)
    assert summary.busy_s == pytest.approx(sum(r.duration for r in ok))
    # The workers' time is the started workers integrated from the first submission to the last result:
    # at least one all along, at most the two asked for.
    assert summary.span_s * (1 - 1e-6) <= summary.worker_s <= 2 * summary.span_s * (1 + 1e-6)
    assert summary.busy_fraction == pytest.approx(summary.busy_s / summary.worker_s)
    assert 0 < summary.busy_fraction <= 1 and summary.wall_time_s > summary.span_s > 0
    # The two best rules were confirmed on seed 1 next to sgd and exported where asked.
    confirmation = summary.confirmation
    assert summary.confirm_error is None and confirmation is not None
    best = sorted({r.canonical_key: r for r in ok}.values(), key=lambda r: (-r.reward, r.id))[:2]
    assert [e.record.rule for e in confirmation.exported] == [r.rule for r in best]
    names = [e.record.name for e in confirmation.exported]
    assert [r.name for r in confirmation.table.rows] == [*names, "sgd"]
    assert confirmation.table.seeds == [1]
    for item in confirmation.exported:
        assert item.json_path.parent == tmp_path / "records" and item.py_path.is_file()
        assert discovered_rules.record(item.record.name, tmp_path / "records").run_id == summary.run_id


def test_duplicates_are_not_retrained_and_patience_ends_a_search_that_finds_nothing_new(ray_session,
                                                                                         tmp_path) -> None:
    # Random search in a space of 14 distinct rules, with a budget it cannot reach: once every rule is
    # trained, every batch is duplicates, and the search stops after `patience` such batches.
    config = {**tiny_config(budget=100, batch_size=8, kind="random", vocabulary=DUPLICATE_VOCABULARY,
                            patience=6), "wandb": {"mode": "offline", "project": "test"}}
    summary = run_search(config, tmp_path, progress=False)
    with RunStore(tmp_path, create=False) as store:
        rows = store.evaluations()
        updates = store.updates()
    trained = {}
    for row in rows:
        if row.status in TRAINED:
            assert row.canonical_key not in trained, f"{row.rule} trained twice"
            trained[row.canonical_key] = row
    assert len(trained) == 14 == summary.trained and summary.stopped == "patience"
    batches = max(r.batch for r in rows) + 1
    new = [sum(r.attempts > 0 for r in rows if r.batch == b) for b in range(batches)]
    assert new[-6:] == [0] * 6 and new[-7] > 0, "stopped after the sixth batch in a row with nothing new"
    duplicates = [r for r in rows if r.status == "duplicate"]
    assert summary.counts["duplicate"] == len(duplicates) == len(rows) - 14
    for row in duplicates:
        original = trained[row.canonical_key]
        assert row.reward == original.reward and f"evaluation {original.id}" in row.error
        assert row.attempts == 0 and row.worker is None
    assert sum(r.attempts for r in rows) == len(trained) == summary.evaluations
    # Random search learns nothing: constant entropy, no KL, no loss.
    assert len(updates) == batches and updates[0]["entropy"] == updates[1]["entropy"] > 0
    assert all(u["approx_kl"] == 0 and u["loss"] == 0 for u in updates)
    assert summary.best_rule in {r.rule for r in rows if r.status == "ok"}
    # wandb offline: the driver's run, under the run directory, named by the run id.
    runs = list((tmp_path / "wandb").glob(f"offline-run-*-{summary.run_id}"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert list((runs[0] / "files" / "media" / "table").glob("best_rules_*.table.json"))


def test_without_lookahead_each_batch_is_drawn_after_the_previous_update(ray_session, tmp_path) -> None:
    summary = run_search(tiny_config(budget=6, batch_size=4, max_batches_ahead=0), tmp_path, progress=False)
    with RunStore(tmp_path, create=False) as store:
        rows = store.evaluations()
        updates = store.updates()
    assert all(r.version == r.batch for r in rows) and all(u["staleness"] == 0 for u in updates)
    assert summary.updates == len(updates) == max(r.batch for r in rows) + 1 >= 2


def test_tracker_logs_updates_offline_and_imports_nothing_when_disabled(tmp_path) -> None:
    from search.config import WandbSection
    from search.tracking import Tracker

    environment = dict(os.environ)
    tracker = Tracker(WandbSection(mode="offline"), tmp_path, "run-1", {"a": 1})
    tracker.log_update({"mean_reward": 1.0, "entropy": 2.0}, step=0, samples=10, best_reward=None)
    tracker.finish([])
    # Ours changes nothing; wandb itself notes where its service listens (for child processes).
    changed = {k for k in {*environment, *os.environ} if os.environ.get(k) != environment.get(k)}
    assert changed <= {"WANDB_SERVICE"}, f"tracking changed the process's environment: {changed}"
    assert tracker.run is None and list((tmp_path / "wandb").glob("offline-run-*-run-1/*.wandb"))
    code = ("import sys; from search.config import WandbSection; from search.tracking import Tracker; "
            "t = Tracker(WandbSection(), '.', 'r', {}); t.log_update({}, step=0); t.finish(); "
            "assert 'wandb' not in sys.modules, 'wandb imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "wandb"], "disabled: nothing written"


class FailingWorker(EvaluationWorker):
    """A worker whose training raises for rules that use sign: an exception inside an evaluation."""

    def train(self, rule, seed):
        if "sign" in str(rule):
            raise RuntimeError(f"injected failure for {rule}")
        return super().train(rule, seed)


def test_exception_inside_an_evaluation_is_recorded_as_failed(ray_session, tmp_path) -> None:
    summary = run_search(tiny_config(budget=6, batch_size=12, kind="random", invalid_reward=-1.0), tmp_path,
                         progress=False, worker_class=FailingWorker)
    with RunStore(tmp_path, create=False) as store:
        rows = store.evaluations()
        updates = store.updates()
    failed = [r for r in rows if r.status == "failed"]
    assert failed and summary.counts["failed"] == len(failed)
    for row in failed:
        assert "sign" in row.rule and row.reward == -1.0
        if row.attempts == 0:  # proposed while the same rule was training: it shares that outcome
            assert "which failed" in row.error
        else:
            assert "Traceback" in row.error and "RuntimeError: injected failure" in row.error
            assert row.attempts == 1, "an exception is the rule's outcome, not retried"
    assert all("sign" not in r.rule for r in rows if r.status == "ok")
    for update in updates:
        batch = [r.reward for r in rows if r.batch == update["batch"]]  # (cut at the budget's 6 trainings)
        assert update["samples"] == len(batch)
        assert update["mean_reward"] == pytest.approx(sum(batch) / len(batch))


class BrokenWorker(EvaluationWorker):
    """A worker whose every training raises, as with a broken install on the workers."""

    def train(self, rule, seed):
        raise RuntimeError("the child task cannot start here")


def test_a_search_whose_every_training_failed_says_why_and_exits_non_zero(ray_session, tmp_path,
                                                                          monkeypatch) -> None:
    raw = {**tiny_config(budget=4, batch_size=4, kind="random"),
           "confirm": {"top_k": 1, "seeds": 1, "budget_scale": 1.0, "baselines": ["sgd"]}}
    summary = run_search(raw, tmp_path / "run", progress=False, worker_class=BrokenWorker,
                         records_dir=tmp_path / "records")
    assert summary.all_failed and summary.trained >= 4
    assert summary.failure == "RuntimeError: the child task cannot start here"
    assert summary.confirmation is None and summary.confirm_error is None, "nothing to confirm"
    assert not (tmp_path / "records").exists()

    import search.driver

    monkeypatch.setattr(search.driver, "run_search", lambda *args, **kwargs: summary)
    result = CliRunner().invoke(app, ["search", "--run-dir", str(tmp_path / "other")], terminal_width=200)
    assert result.exit_code == 1, result.output
    assert "every training failed" in result.output and "the child task cannot start here" in result.output


def test_worker_returns_an_exception_with_its_traceback() -> None:
    config = SearchConfig.from_mapping(tiny_config())
    from child_tasks.problems import load_data

    worker = EvaluationWorker(config.suite.to_mapping(), [load_data(t) for t in config.suite.tasks])
    out = worker.evaluate("g +", seed=0)  # not a rule: the parse error comes back, the worker stays usable
    assert out["status"] == "failed" and out["reward"] is None and "RuleSyntaxError" in out["error"]
    out = worker.evaluate("sign(m)", seed=0)
    assert out["status"] == "ok" and out["reward"] > 0 and out["worker"] == worker.info()["worker"]


def test_unreachable_address_is_a_clear_error_within_seconds(tmp_path) -> None:
    port = free_port()  # nothing listens there
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["search", "--address", f"127.0.0.1:{port}", "--run-dir",
                                      str(tmp_path / "run"), "--set", "search.budget=4"], terminal_width=200)
    assert time.perf_counter() - start < 5
    assert result.exit_code == 1, result.output
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in result.output
    assert not (tmp_path / "run").exists(), "a wrong address leaves no run behind"
    # Something that accepts connections but never answers like a Ray GCS: an error within the deadline.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        start = time.perf_counter()
        with pytest.raises(ClusterError, match=f"no Ray cluster answers at {address}: no answer"):
            check_gcs(address, ("127.0.0.1", silent.getsockname()[1]), timeout=1.0)
        assert time.perf_counter() - start < 3
    with pytest.raises(ClusterError, match="expected auto, HOST:PORT"):
        run_search(tiny_config(), tmp_path / "run", address="somewhere")


def test_run_directory_errors(tmp_path) -> None:
    with pytest.raises(StoreError, match="no results store"):
        run_search(None, tmp_path / "absent", resume=True)
    RunStore(tmp_path / "used", SearchConfig.from_mapping(tiny_config()).to_mapping()).close()
    with pytest.raises(FileExistsError, match="resume it"):
        run_search(tiny_config(), tmp_path / "used")
    with pytest.raises(ValueError, match="config=None"):
        run_search(tiny_config(), tmp_path / "used", resume=True)
    with pytest.raises(ValueError, match="cannot be resumed with controller 'random'"):
        run_search(None, tmp_path / "used", resume=True, controller_kind="random")


def why_invalid_text(text: str) -> str | None:
    from dsl import parse

    return why_invalid(parse(text))


def canonical_key_text(text: str) -> str:
    from dsl import parse

    return canonical_key(parse(text))


def _counts(rows) -> dict[str, int]:
    out = dict.fromkeys(("ok", "diverged", "invalid", "duplicate"), 0)
    for row in rows:
        out[row.status] += 1
    return out


def test_search_command_help_and_argument_errors(tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["search", "--help"], terminal_width=200, env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--config", "--address", "--controller", "--resume", "--run-dir", "KEY=VALUE",
                   "configs/quickstart.yaml"):
        assert option in result.output
    result = runner.invoke(app, ["search", "--resume", str(tmp_path), "--set", "search.budget=3"],
                           terminal_width=200)
    assert result.exit_code == 2 and "--resume continues a run with its own config" in result.output
    result = runner.invoke(app, ["search", "--run-dir", str(tmp_path / "r"), "--set", "search.budgt=3"],
                           terminal_width=200)
    assert result.exit_code == 2 and "search.budgt: unknown key; did you mean budget?" in result.output
    result = runner.invoke(app, ["search", "--controller", "evolve"], terminal_width=200)
    assert result.exit_code == 2 and "evolution" in result.output, "the kinds are named"
    assert not (tmp_path / "r").exists()
