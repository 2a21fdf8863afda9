"""Experiment tracking with Weights & Biases, optional: only the search's driver logs, never a worker.

    tracker = Tracker(config.wandb, run_dir, run_id, config.to_mapping())
    tracker.log_update(stats.as_dict(), step=batch, samples=120, evaluations=80, best_reward=93.1)
    tracker.finish(store.best(10))

``mode: disabled`` (the default) does nothing and does not import wandb: no network, no account.
``offline`` writes the run under ``<run_dir>/wandb`` without an account (``wandb sync`` uploads it later);
``online`` needs ``wandb login``. The wandb run id is the search's run id, so a resumed search continues
the same wandb run. Nothing here changes the process (its environment, wandb's global settings): a
program that uses wandb for itself is left as it was. Logged: each controller update's statistics
(`controller.UpdateStats` fields, under ``controller/``) with the search's counters, and at the end a
table of the best rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from search.config import WandbSection
from search.store import Evaluation

BEST_COLUMNS = ["rank", "reward", "rule", "lr", "canonical_key", "evaluation_id", "batch"]


class Tracker:
    """Logs to a wandb run, or nothing when the mode is disabled."""

    def __init__(self, section: WandbSection, run_dir: str | Path, run_id: str,
                 config: dict[str, Any]) -> None:
        self.run = None
        if section.mode == "disabled":
            return
        import wandb

        self._wandb = wandb
        # Quiet, and everything wandb writes stays inside the run directory: said to this run through
        # its settings, never through os.environ, which would change wandb for the whole process.
        root = str(Path(run_dir).resolve())
        self.run = wandb.init(project=section.project, entity=section.entity, mode=section.mode, dir=root,
                              id=run_id, name=run_id, resume="allow", config=config,
                              settings=wandb.Settings(console="off", silent=True, x_disable_stats=True,
                                                      root_dir=root))

    def log_update(self, stats: dict[str, Any], step: int, **counters: Any) -> None:
        """One controller update's statistics (``controller/<field>``) and the search's counters."""
        if self.run is None:
            return
        values = {f"controller/{k}": v for k, v in stats.items()}
        values.update({f"search/{k}": v for k, v in counters.items() if v is not None})
        self.run.log(values, step=step)

    def finish(self, best: Sequence[Evaluation] = ()) -> None:
        """Log the table of the best rules and close the run."""
        if self.run is None:
            return
        rows = [[rank, e.reward, e.rule, e.lr, e.canonical_key, e.id, e.batch]
                for rank, e in enumerate(best, 1)]
        self.run.log({"best_rules": self._wandb.Table(columns=BEST_COLUMNS, data=rows)})
        if best:
            self.run.summary["best_reward"] = best[0].reward
            self.run.summary["best_rule"] = best[0].rule
        self.run.finish()
        self.run = None
