"""Runs to report on, written directly (no search): two runs of the tiny digits config with controller
updates, one with baselines at its budget, an exported record of its best rule, and a row whose task
name, metric, worker and error are markup (the store takes any text; the report must show it as text).
Rule text that is markup does not parse: every reader skips that row with a warning
(tests/test_store_readers.py)."""

from __future__ import annotations

import json
from pathlib import Path

import discovered_rules
from discovered_rules import make_record, verdict
from search.store import RunStore
from tests.winners_helpers import ROWS, make_run

MARKUP = "<script>alert('rule')</script><img src=x onerror=alert(1)>"
# A folder name can hold markup too (no slash): it is shown as the run's label.
RUN_NAME = "a-ppo-<b onclick=alert(2)>bold"


def add_updates(run_dir: Path, batches: int = 3) -> None:
    with RunStore(run_dir, config=None, create=False) as store:
        for batch in range(batches):
            store.record_update(batch, {"update": batch, "entropy": 2.0 - 0.1 * batch, "loss": -0.5 * batch,
                                        "mean_reward": 50.0 + batch, "samples": 6})


MARKUP_RULE = "sign(g) * mhat"


def add_markup_row(run_dir: Path, reward: float = 95.0) -> None:
    """An ok row (best reward, so it is among the best rules) whose task name and metric are HTML (a
    column of the best rules' table) and whose error and worker fields hold markup."""
    with RunStore(run_dir, config=None, create=False) as store:
        [id_] = store.add_batch(1, [{"position": 0, "tokens": [1], "log_probs": [-1.0], "version": 0,
                                     "groups": [[MARKUP]], "rule": MARKUP_RULE, "canonical_key": None}])
        store.record(id_, "ok", reward, lr=0.1, worker=MARKUP, error=MARKUP,
                     curves={"val_curve": [40.0, reward], "train_loss": [1.0, 0.2]},
                     result={"tasks": {MARKUP: {"score": 1.5, "val_metric": 50.0, "metric": MARKUP}}})


def write_baselines(run_dir: Path, run_id: str) -> None:
    cache = {"run_id": run_id, "task": {}, "seed": 0, "date": "2026-01-01",
             "rewards": {"adam": 88.0, "sgd": 70.0},
             "curves": {"adam": [70.0, 88.0], "sgd": [50.0, 70.0]}}
    (run_dir / "baselines.json").write_text(json.dumps(cache), encoding="utf-8")


def export_record(records: Path, run_id: str, rule: str = "sign(m) * g") -> str:
    name = "nos_report_1"
    rec = make_record(name, rule, task="digits", rewards={1: 91.0, 2: 89.0},
                      baselines={"adam": [88.0, 87.5], "sgd": [70.0, 71.0]},
                      verdict=verdict([91.0, 89.0], {"adam": [88.0, 87.5], "sgd": [70.0, 71.0]}),
                      run_id=run_id,
                      curves={1: [60.0, 80.0, 91.0], 2: [58.0, 79.0, 89.0]}, hyper={"lr": 0.1},
                      transfer={"convnet": [{"name": name, "mean": 70.5, "std": 1.5},
                                            {"name": "adam", "mean": 69.0, "std": 1.0}]})
    discovered_rules.export(rec, records)
    return name


def make_report_runs(root: Path) -> tuple[Path, Path, Path]:
    """Two runs (the first named with markup, with baselines, updates, a record and the markup row; the
    second a plain random-search-like run) and the records folder."""
    first, second, records = root / RUN_NAME, root / "b-random", root / "records"
    run_id = make_run(first)
    add_updates(first)
    add_markup_row(first)
    write_baselines(first, run_id)
    export_record(records, run_id)
    make_run(second, rows=[(rule, status, reward - 5.0) for rule, status, reward in ROWS])
    add_updates(second, 2)
    return first, second, records
