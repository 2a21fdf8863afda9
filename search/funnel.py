"""The funnel: the search's best rules promoted, as their results arrive, to longer budgets and other tasks.

A run config's ``funnel`` lists the stages after stage 0, the search's own reward
(`search.config.FunnelStage`): each with its tasks, budget scale, seeds and η, the fraction of the previous
stage's rules promoted into it. This is successive halving run asynchronously, as ASHA (Li et al. 2020)
and Ray Tune's ``AsyncHyperBandScheduler`` do:

- **On arrival.** When a rule's score at stage k is complete (stage 0: its training; stage k >= 1: every
  seed of the stage), it is promoted to stage k + 1 unless it is below the (1 - η) quantile of the
  stage-k scores recorded before it, as Ray Tune's ``_Bracket.on_result`` decides (its cutoff is
  ``np.nanpercentile(recorded, (1 - 1 / rf) * 100)`` with η = 1 / rf, taken before the new result is
  recorded; the first result goes on). Nobody waits for a whole rung.
- **At a stage's end.** Early arrivals are judged against few others, so a rule that ends in the stage's
  top fraction may have arrived after better ones and been passed over. When no result of stage k can
  arrive any more (the search has stopped drawing and stage k has nothing queued or running, nor has any
  stage before it), the ceil(η n_k) best rules of stage k that were not promoted are: the final top
  fraction always goes on (what synchronous successive halving would promote).

Why not Ray Tune's scheduler itself: it schedules Tune trials, each one training reporting results at
milestones of one run, and decides to continue or stop them. A rule of this search is not a Tune trial:
the controller draws rules in batches, one training per distinct rule (`search.trainings`), and a stage
is a different training (other tasks, budget and seeds), not the continuation of one. So the promotion is
written here, on the search's own `Scheduler` and workers: a promoted rule's stage evaluations (one job
per seed) are queued ahead of the stage-0 trainings, on the same workers, so that the workers never idle
while the search goes on.

Every stage evaluation is a row of the run's store (`search.stage_store`), written as it finishes; a
promotion is its pending rows. ``--resume`` queues the pending rows again and goes on from the stored
scores: nothing is trained twice, no promotion is taken back. The funnel is part of the run's config,
which a resume never changes (``nos search --resume`` takes no ``--set``).

The confirm section's baselines are trained at every stage too (rows ``baseline:<name>``), so that a
stage's scores have a line to beat. The controller learns from stage 0 only; `ranked` orders rules by the
highest stage they completed, then their score there: the rank, the "to beat" line, the confirmation and
the export follow it.

Seeds: stage k evaluates with seeds ``1000 k, 1000 k + 1, ...`` (`stage_seeds`), never the search's
``eval_seed`` nor the confirmation's (1, 2, ...), so each stage's choice is made on fresh seeds and the
confirmation judges the funnel's choice on others again.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from search.config import FunnelStage
from search.scheduling import Outcome, Scheduler
from search.stage_store import BASELINE, StageRow, StageTable
from search.store import Evaluation, RunStore
from search.trainings import Trainings

log = logging.getLogger(__name__)

STAGE_SEED_BASE = 1000


def stage_seeds(stage: int, count: int) -> list[int]:
    """The evaluation seeds of stage ``stage`` (module docstring)."""
    return [STAGE_SEED_BASE * stage + i for i in range(count)]


def cutoff(recorded: Sequence[float], fraction: float) -> float:
    """The (1 - ``fraction``) quantile of ``recorded``, interpolated linearly as numpy's percentile is."""
    values = sorted(recorded)
    position = (len(values) - 1) * (1.0 - fraction)
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def final_top(scores: dict[str, float], fraction: float) -> list[str]:
    """The ceil(``fraction`` n) best keys of ``scores`` (ties: the earlier key, as given)."""
    count = math.ceil(fraction * len(scores))
    order = sorted(scores, key=lambda k: -scores[k])  # stable: ties keep their order
    return order[:count]


@dataclass(frozen=True)
class StageScore:
    """A rule's (or baseline's) result at one stage: its reward per seed, complete once every seed ended."""
    stage: int
    key: str
    rewards: list[float]
    seeds: int  # the stage's seed count
    failed: bool  # a seed failed: the rule stops here

    @property
    def complete(self) -> bool:
        return not self.failed and len(self.rewards) == self.seeds

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.rewards) if self.complete else None


def stage_scores(rows: Sequence[StageRow], seeds: dict[int, int]) -> dict[tuple[int, str], StageScore]:
    """(stage, key) -> score, from stage rows; ``seeds``: each stage's seed count."""
    rewards: dict[tuple[int, str], list[float]] = {}
    failed: set[tuple[int, str]] = set()
    for row in rows:
        at = (row.stage, row.canonical_key)
        rewards.setdefault(at, [])
        if row.status in ("ok", "diverged") and row.reward is not None:
            rewards[at].append(row.reward)
        elif row.status == "failed":
            failed.add(at)
    return {at: StageScore(at[0], at[1], values, seeds.get(at[0], 0), at in failed)
            for at, values in rewards.items()}


@dataclass(frozen=True)
class Ranked:
    """A rule of a run in the funnel's order: its stage-0 row, the highest stage it completed (0 without a
    funnel) and its score per stage (stage 0: the search's reward)."""
    row: Evaluation
    stage: int
    scores: dict[int, float] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return self.scores[self.stage]


def ranked(store: RunStore, k: int, funnel: Sequence[FunnelStage] = ()) -> list[Ranked]:
    """The ``k`` best rules of the run: by the highest stage completed, then the score there, then the
    search's reward (stage 0 alone is `RunStore.best`'s order)."""
    if not funnel:
        return [Ranked(row, 0, {0: row.reward}) for row in store.best(k)]
    seeds = {i: stage.seeds for i, stage in enumerate(funnel, 1)}
    scores = stage_scores(StageTable(store).rows(), seeds)
    out = []
    for row in store.best(2**31 - 1):
        per_stage = {0: row.reward}
        per_stage.update({s: scores[s, row.canonical_key].mean for s in seeds
                          if (s, row.canonical_key) in scores and scores[s, row.canonical_key].complete})
        out.append(Ranked(row, max(per_stage), per_stage))
    out.sort(key=lambda r: (-r.stage, -r.score, -r.row.reward, r.row.id))
    return out[:k]


def funnel_counts(store: RunStore, funnel: Sequence[FunnelStage]) -> list[int]:
    """Rules that completed each stage, stage 0 first (distinct rules trained ok); empty without a
    funnel."""
    if not funnel:
        return []
    seeds = {i: stage.seeds for i, stage in enumerate(funnel, 1)}
    scores = stage_scores(StageTable(store).rows(), seeds)
    stage_zero = len({row.canonical_key for row in store.evaluations("ok")})
    return [stage_zero] + [sum(1 for (s, key), score in scores.items()
                               if s == k and score.complete and not key.startswith(BASELINE))
                           for k in seeds]


def reached(counts: Sequence[int]) -> str:
    """``stage 0: 128, stage 1: 24, ...``: how many rules completed each stage, as every view says it."""
    return ", ".join(f"stage {s}: {n}" for s, n in enumerate(counts))


def stages_of(config: dict) -> list[FunnelStage]:
    """The funnel of a run's stored config (a mapping), without validating the rest of it."""
    stages = config.get("funnel") if isinstance(config, dict) else None
    return [FunnelStage.model_validate(stage) for stage in stages or []]


def baseline_scores(store: RunStore, funnel: Sequence[FunnelStage]) -> dict[int, dict[str, float]]:
    """Stage -> baseline name -> its mean score at that stage (the complete ones)."""
    seeds = {i: stage.seeds for i, stage in enumerate(funnel, 1)}
    out: dict[int, dict[str, float]] = {}
    for (stage, key), score in stage_scores(StageTable(store).rows(), seeds).items():
        if key.startswith(BASELINE) and score.complete:
            out.setdefault(stage, {})[key.removeprefix(BASELINE)] = score.mean  # type: ignore[assignment]
    return out


class Funnel:
    """The stages of one search session: promotion, the stage jobs on the scheduler, their results."""

    def __init__(self, stages: Sequence[FunnelStage], store: RunStore, scheduler: Scheduler,
                 baselines: Sequence[str] = ()) -> None:
        self.stages = list(stages)
        self.table = StageTable(store)
        self.store, self.scheduler, self.baselines = store, scheduler, list(baselines)
        self.seeds = {i: stage.seeds for i, stage in enumerate(self.stages, 1)}
        self.recorded: dict[int, dict[str, float]] = {i: {} for i in range(len(self.stages) + 1)}
        self.promoted: dict[int, set[str]] = {i: set() for i in range(1, len(self.stages) + 1)}
        self.rules: dict[str, tuple[str, int]] = {}  # key -> (rule text, stage-0 evaluation id)
        self.open: dict[int, int] = {}  # stage -> its rules' jobs queued or running
        self.open_baselines = 0  # the baselines' jobs queued or running (no rule waits for them)
        self.closed = 0  # stages 0 .. closed - 1 can receive no more results
        self.evaluations = 0
        self.busy_s = 0.0

    @property
    def under_way(self) -> int:
        return sum(self.open.values()) + self.open_baselines

    def attach(self, trainings: Trainings, on_change: Callable[[], None]) -> None:
        """Take part in the search's trainings: their rules trained ok are offered to stage 1, the
        scheduler's stage jobs are this funnel's (``on_change`` after each one's result)."""
        def other(done: Outcome) -> bool:
            handled = self.handle(done)
            if handled:
                on_change()
            return handled

        trainings.on_trained = lambda row, reward: self.offer(0, row.canonical_key, row.rule, row.id, reward)
        trainings.others = other
        trainings.others_submitted = lambda row, worker: self.table.add_attempt(row.id, worker)

    def leader(self) -> tuple[tuple[int, float, str] | None, tuple[str, float] | None]:
        """The best rule at the highest stage it completed (stage, score, rule), and the best baseline at
        that stage (the line to beat), as far as the store holds them."""
        top = ranked(self.store, 1, self.stages)
        if not top:
            return None, None
        best = (top[0].stage, top[0].score, top[0].row.rule or "")
        at_stage = baseline_scores(self.store, self.stages).get(best[0], {})
        name = max(at_stage, key=at_stage.__getitem__) if at_stage else None
        return best, (name, at_stage[name]) if name is not None else None

    def start(self) -> None:
        """Read what the store holds (a resume), queue its pending rows and the baselines' missing ones."""
        if not self.stages:
            return
        for row in self.store.evaluations("ok"):
            if row.canonical_key is not None and row.canonical_key not in self.recorded[0]:
                self.recorded[0][row.canonical_key] = row.reward  # type: ignore[assignment]
                self.rules[row.canonical_key] = (row.rule, row.id)  # type: ignore[assignment]
        for stage in self.seeds:  # the baselines' rows (those a resume finds are kept as they are)
            for name in self.baselines:
                seeds = stage_seeds(stage, self.seeds[stage])
                self.table.add(stage, BASELINE + name, f"torch:{name}", None, seeds)
        rows = self.table.rows()
        for row in rows:
            if not row.canonical_key.startswith(BASELINE):
                self.promoted[row.stage].add(row.canonical_key)
        for (stage, key), score in stage_scores(rows, self.seeds).items():
            if score.complete and not key.startswith(BASELINE):
                self.recorded[stage][key] = score.mean  # type: ignore[assignment]
        for row in rows:
            if not row.finished:
                self._queue(row, first=not row.canonical_key.startswith(BASELINE))

    def _queue(self, row: StageRow, first: bool) -> None:
        if row.canonical_key.startswith(BASELINE):
            self.open_baselines += 1
        else:
            self.open[row.stage] = self.open.get(row.stage, 0) + 1
        self.scheduler.add(row, row.rule, row.seed, tries=row.attempts, args=(row.stage,), first=first)

    def offer(self, stage: int, key: str, rule: str, evaluation: int, score: float) -> None:
        """A rule's complete score at ``stage`` (module docstring: promoted on arrival if good enough)."""
        if not self.stages:
            return
        before = [value for other, value in self.recorded[stage].items() if other != key]
        self.recorded[stage][key] = score
        self.rules.setdefault(key, (rule, evaluation))
        if stage >= len(self.stages) or key in self.promoted[stage + 1]:
            return
        if not before:  # the first result of a stage has nothing to be measured against: it goes on
            self._promote(stage + 1, key, f"the first result of stage {stage}")
            return
        line = cutoff(before, self.stages[stage].promote)
        if score >= line:
            self._promote(stage + 1, key, f"{score:.4g} >= cutoff {line:.4g} of the {len(before)} before it")

    def _promote(self, stage: int, key: str, why: str) -> None:
        rule, evaluation = self.rules[key]
        self.promoted[stage].add(key)
        log.info("funnel: %s promoted to stage %d (%s)", rule, stage, why)
        for row in self.table.add(stage, key, rule, evaluation, stage_seeds(stage, self.seeds[stage])):
            if not row.finished:
                self._queue(row, first=True)

    def handle(self, done: Outcome) -> bool:
        """Store a stage job's outcome (False: not a stage job); a rule whose stage is complete is
        offered to the next stage."""
        row = done.tag
        if not isinstance(row, StageRow):
            return False
        if row.canonical_key.startswith(BASELINE):
            self.open_baselines -= 1
        else:
            self.open[row.stage] -= 1
        if done.crashed is not None:
            self.table.record(row.id, "failed", None, worker=done.worker,
                              error=f"the worker process died on each of {done.attempts} attempts; last: "
                                    f"{done.crashed}")
        else:
            out = done.result or {}
            self.evaluations += 1
            self.busy_s += out.get("duration") or 0.0
            status = out.get("status", "failed")
            result = out.get("result")
            # The task summaries; each training's curves stay on the worker (the stage-0 row keeps them).
            summary = ({k: v for k, v in result.items() if k != "results"} if isinstance(result, dict)
                       else None)
            self.table.record(row.id, status, out.get("reward") if status != "failed" else None,
                              result=summary, worker=out.get("worker"), duration=out.get("duration"),
                              error=out.get("error"))
        if not row.canonical_key.startswith(BASELINE):
            score = stage_scores(self.table.rows(row.stage), self.seeds).get((row.stage, row.canonical_key))
            if score is not None and score.complete:
                self.offer(row.stage, row.canonical_key, row.rule, row.evaluation or 0, score.mean)
        return True

    def close_finished(self, stage_zero_done: bool) -> None:
        """Close every stage that can receive no more results, promoting its final top fraction."""
        if not self.stages or not stage_zero_done:
            return
        while self.closed <= len(self.stages):
            stage = self.closed
            if stage > 0 and self.open.get(stage, 0):
                return
            if stage < len(self.stages):
                fraction = self.stages[stage].promote
                for key in final_top(self.recorded[stage], fraction):
                    if key not in self.promoted[stage + 1]:
                        self._promote(stage + 1, key, f"in stage {stage}'s final top {fraction:g}")
            self.closed += 1

    def counts(self) -> list[int]:
        """Rules that completed each stage (stage 0: distinct rules trained ok)."""
        return [len(self.recorded[s]) for s in range(len(self.stages) + 1)]
