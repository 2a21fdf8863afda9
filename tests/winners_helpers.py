"""A run's results store written directly (no search): rows with chosen rules, statuses and rewards."""

from __future__ import annotations

from pathlib import Path

from dsl import canonical_key, parse
from search.config import SearchConfig
from search.store import RunStore
from tests.search_helpers import TINY_TASK, tiny_config

# (rule, status, reward): "g + g - g" shares g's key (listed once, with the better reward); the diverged,
# invalid and duplicate rows only count in the caption.
ROWS = [("sign(m) * g", "ok", 90.0), ("mhat", "ok", 85.0), ("g", "ok", 80.0), ("g + g - g", "ok", 81.0),
        ("exp(g) * 1e30", "diverged", 0.0), ("1", "invalid", 0.0), ("mhat", "duplicate", 85.0)]
# The tiny digits task as `nos transfer --set` options.
TINY_SET = [f"--set={k}={v}".replace(" ", "") for k, v in TINY_TASK.items()]


def make_run(run_dir: Path, rows=ROWS) -> str:
    """Write a store for the tiny digits run config with ``rows``; returns the run id."""
    config = SearchConfig.from_mapping(tiny_config()).to_mapping()
    with RunStore(run_dir, config=config) as store:
        new = [{"position": i, "tokens": [i], "log_probs": [-1.0], "version": 0, "groups": [["g"]],
                "rule": rule, "canonical_key": canonical_key(parse(rule)) if status != "invalid" else None}
               for i, (rule, status, _) in enumerate(rows)]
        ids = store.add_batch(0, new)
        for id_, (_, status, reward) in zip(ids, rows, strict=True):
            if status == "ok":
                store.record(id_, "ok", reward, lr=0.1, worker="host:1", duration=0.5,
                             curves={"val_curve": [reward - 20, reward], "train_loss": [2.0, 0.5]})
            elif status == "diverged":
                store.record(id_, "diverged", 0.0, lr=0.1, error="non-finite loss",
                             curves={"val_curve": [10.0], "train_loss": [float("nan")]})
            else:
                store.record(id_, status, reward, error=f"{status} for the test")
        return store.run_id
