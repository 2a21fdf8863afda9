"""The trainings a search has under way: a queue of rows to train, one training per rule, each result
stored the moment it arrives.

    trainings = Trainings(store, pool, config.search, bar)
    new = trainings.add(store.batch(b))      # a batch's rows: how many of them are (or were) trained
    trainings.feed()                         # every idle worker takes the oldest queued training
    trainings.collect()                      # wait for results and store each one (with its duplicates)
    if trainings.complete(rows): rewards = trainings.rewards(rows)

A pending row is trained unless a row with the same canonical key has finished (it becomes a
``duplicate`` with that reward at once) or is being trained, in this batch or an earlier one (it waits for
that training and takes its outcome: ``duplicate`` with its reward, or ``failed`` if it failed). So a rule
is trained once however many batches propose it while it trains; only a rule whose training failed is
trained again when a later batch proposes it. The queue is first in, first out, so the oldest batch, the
one the next controller update waits for, is trained first. A training whose worker process died goes
back to the front of the queue, up to ``max_retries`` times, and is then ``failed``; an exception inside a
training is ``failed`` at once, with its traceback.

Timing: ``busy_s`` sums the evaluations' durations as the workers measured them (an attempt whose worker
died is not counted; the rules of one batch each count their share of its time, so a batch counts once);
``first_submit`` and ``last_result`` bound the time the workers were in use, so
``busy_s / (workers * (last_result - first_submit))`` is the share of the workers' time spent training.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from search.config import SearchSection
from search.progress import SearchProgress
from search.scheduling import Outcome, Scheduler
from search.store import Evaluation, RunStore
from search.workers import WorkerPool


class Trainings:
    """The queue of trainings and the rewards of finished rows; see the module docstring."""

    def __init__(self, store: RunStore, pool: WorkerPool, search: SearchSection, bar: SearchProgress) -> None:
        self.store, self.search, self.bar = store, search, bar
        # Called with each rule trained ok and its reward (the funnel's offer, `search.funnel.Funnel.attach`).
        self.on_trained: Callable[[Evaluation, float], None] | None = None
        # The scheduler's other jobs (the funnel's): their outcomes (True: taken) and their submissions.
        self.others: Callable[[Outcome], bool] = lambda done: False
        self.others_submitted: Callable[[Any, str], None] = lambda tag, worker: None
        # Each attempt is counted in the store as it starts, so a resume knows the tries of a row.
        self.scheduler = Scheduler(pool, search.max_retries, batch=search.models_per_worker,
                                   describe=lambda row: f"evaluation {row.id}", on_submit=self._submitted)
        self.leaders: dict[str, Evaluation] = {}  # canonical key -> the row queued or training for it
        self.followers: dict[int, list[Evaluation]] = defaultdict(list)  # leader's id -> rows waiting on it
        self.finished: dict[int, float] = {}  # row id -> reward, for rows of batches not yet learned from
        self.evaluations = 0  # trainings that returned a result in this session
        self.busy_s = 0.0

    def _submitted(self, tag: Any, worker: str) -> None:
        if isinstance(tag, Evaluation):
            self.store.add_attempt(tag.id, worker)
        else:
            self.others_submitted(tag, worker)

    @property
    def under_way(self) -> int:
        """Trainings queued or running."""
        return self.scheduler.under_way

    @property
    def span_s(self) -> float:
        """Seconds from the first submission to the last result of this session (0 before both)."""
        return self.scheduler.span_s

    def add(self, rows: list[Evaluation]) -> int:
        """Queue a batch's pending rows (a finished row's reward is taken as stored); the number of the
        batch's rows that are, or in an earlier session were, trained."""
        trained = 0
        for row in rows:
            if row.status != "pending":
                self.finished[row.id] = row.reward if row.reward is not None else self.search.invalid_reward
                trained += row.attempts > 0
                continue
            found = self.store.finished_reward(row.canonical_key)
            if found is not None:  # finished since the row was stored (a batch of an interrupted session)
                self.store.record(row.id, "duplicate", found[0], error=f"same rule as evaluation {found[1]}")
                self.finished[row.id] = found[0]
                self.bar.duplicate()
            elif row.canonical_key in self.leaders:
                self.followers[self.leaders[row.canonical_key].id].append(row)
            else:
                self.leaders[row.canonical_key] = row
                self.scheduler.add(row, row.rule, self.search.eval_seed, tries=row.attempts)
                trained += 1
        return trained

    def within(self, rows: list[dict[str, Any]], room: int) -> list[dict[str, Any]]:
        """A new batch's screened rows (`search.driver.screen`) up to the one that costs the ``room``-th
        training (all of them if they cost fewer), counted as `add` will: a pending row costs one, unless
        a row of its rule is queued or training, or comes earlier in the batch (it waits for that one)."""
        keys = set(self.leaders)
        for end, row in enumerate(rows):
            if row.get("status", "pending") != "pending" or row["canonical_key"] in keys:
                continue
            keys.add(row["canonical_key"])
            room -= 1
            if room <= 0:
                return rows[:end + 1]
        return rows

    def feed(self) -> None:
        """Start the oldest queued trainings on every idle worker."""
        self.scheduler.feed()

    def collect(self) -> None:
        """Wait for at least one result (or a worker starting) and store what arrived."""
        for done in self.scheduler.collect():
            if self.others(done):
                continue
            row = done.tag
            if done.crashed is not None:
                out = {"status": "failed", "worker": done.worker, "error": f"the worker process died on each "
                       f"of {done.attempts} attempts; last: {done.crashed}"}
            else:
                out = done.result
                self.evaluations += 1
                self.busy_s += out.get("duration") or 0.0
            self._record(row, out)

    def complete(self, rows: list[Evaluation]) -> bool:
        """Whether every row has finished (a batch ready for its update)."""
        return all(row.id in self.finished for row in rows)

    def rewards(self, rows: list[Evaluation]) -> list[float]:
        """The rewards of finished rows, in order (forgotten here: each batch is learned from once)."""
        return [self.finished.pop(row.id) for row in rows]

    def _record(self, row: Evaluation, out: dict[str, Any]) -> None:
        """Store one training's outcome and that of the rows that waited for it."""
        status, invalid_reward = out["status"], self.search.invalid_reward
        reward = out["reward"] if status in ("ok", "diverged") else invalid_reward
        self.store.record(row.id, status, reward, lr=out.get("lr"), curves=out.get("curves"),
                          result=out.get("result"), worker=out.get("worker"), duration=out.get("duration"),
                          error=out.get("error"))
        self.finished[row.id] = reward
        del self.leaders[row.canonical_key]  # later rows find it in the store, or train it again if it failed
        self.bar.trained(reward=reward if status == "ok" else None, rule=row.rule)
        if status == "ok" and self.on_trained is not None:
            self.on_trained(row, reward)
        for other in self.followers.pop(row.id, []):
            if status in ("ok", "diverged"):
                self.store.record(other.id, "duplicate", reward, error=f"same rule as evaluation {row.id}")
                self.bar.duplicate()
            else:
                self.store.record(other.id, "failed", invalid_reward,
                                  error=f"same rule as evaluation {row.id}, which failed")
            self.finished[other.id] = reward
