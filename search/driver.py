"""The search loop: the controller proposes rules, Ray workers train them, the store keeps every result.

    summary = run_search(load_search_config(), "runs/mine")            # a new run, on a local Ray
    summary = run_search(None, "runs/mine", resume=True)                 # continue it after a crash

One batch, top to bottom (`run_search`):

1. ``controller.sample()`` draws the batch (batch number = the controller's update count);
2. `screen` decides what it can at once and ``store.add_batch`` writes the batch in one transaction:
   an undecodable rule or one `dsl.why_invalid` rejects is ``invalid`` with ``invalid_reward``; a rule
   whose canonical key already finished in the store is a ``duplicate`` with the stored reward; the
   rest is ``pending``;
3. `evaluate_batch` sends the pending rules to the workers (a rule whose key came earlier in the same
   batch waits for that one and becomes its duplicate) and records each result with ``store.record``
   the moment it arrives (one fsynced transaction each). A worker process that dies mid-evaluation is
   replaced and the evaluation retried, up to ``max_retries`` times, then ``failed``; an exception inside
   an evaluation is ``failed`` at once, with its traceback;
4. ``controller.update(samples, rewards)``, ``store.record_update``, and the controller checkpoint is
   saved atomically (``controller.pt``, temp file + rename).

The ``reward`` column of every row is what the controller learned from: the validation metric (0 for
diverged runs), the stored reward for duplicates, ``invalid_reward`` for invalid and failed rows.

Resume: the config comes back from the store, the controller from its checkpoint (taken after an update:
the state just before the next batch was drawn). The controller draws that batch again, which moves its
random generator on exactly as the first time, but the samples used are the stored rows (tokens,
log-probabilities, version; masks from the token space; rules decoded again), and only their pending rows
are evaluated: nothing finished is evaluated twice. A crash between ``record_update`` and the checkpoint
just repeats that update (the store's update row is replaced with the same values).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from child_tasks.problems import load_data
from controller import Sample, TokenSpace, make_searcher
from dsl import canonical_key, why_invalid
from search.cluster import check_address, connect, disconnect, worker_options
from search.config import SearchConfig, SearchSection, load_search_config
from search.progress import SearchProgress
from search.store import FILENAME, Evaluation, RunStore
from search.tracking import Tracker
from search.workers import EvaluationWorker, WorkerPool

log = logging.getLogger(__name__)

CHECKPOINT = "controller.pt"
WAIT_WARNING_S = 60.0  # no worker started after this long: say so (an autoscaler may still be adding nodes)


@dataclass
class SearchSummary:
    """What a search did: counts over the whole run, timings of this session, the best rule."""

    run_dir: Path
    run_id: str
    budget: int
    samples: int  # rows in the store (finished or not)
    counts: dict[str, int]  # rows per status
    updates: int  # controller updates done
    evaluations: int  # child-task trainings in this session (retries of crashed workers not counted)
    workers: int
    wall_time_s: float  # this session, from connecting to Ray to the last update
    eval_phase_s: float  # this session: from each batch's first submission to its last result, summed
    busy_s: float  # this session: sum of the evaluations' durations, as the workers measured them
    best_reward: float | None
    best_rule: str | None
    best: list[Evaluation] = field(default_factory=list, repr=False)

    @property
    def busy_fraction(self) -> float | None:
        """Share of the workers' time spent evaluating while batches were being evaluated."""
        phase = self.workers * self.eval_phase_s
        return self.busy_s / phase if phase > 0 else None

    @property
    def trained(self) -> int:
        """Rows trained over the whole run (ok, diverged, failed)."""
        return self.counts["ok"] + self.counts["diverged"] + self.counts["failed"]

    def as_dict(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "run_id": self.run_id, "budget": self.budget,
                "samples": self.samples, "counts": self.counts, "updates": self.updates,
                "evaluations": self.evaluations, "workers": self.workers, "wall_time_s": self.wall_time_s,
                "eval_phase_s": self.eval_phase_s, "busy_s": self.busy_s, "busy_fraction": self.busy_fraction,
                "best_reward": self.best_reward, "best_rule": self.best_rule}


def run_search(config: SearchConfig | Mapping[str, Any] | str | Path | None, run_dir: str | Path, *,
               address: str | None = None, resume: bool = False, controller_kind: str | None = None,
               progress: bool = True, worker_class: type = EvaluationWorker) -> SearchSummary:
    """Run (or, with ``resume``, continue) a search in ``run_dir``; see the module docstring.

    Args:
        config: a SearchConfig, a mapping, or a YAML path (None: configs/quickstart.yaml); must be None
            with ``resume``, which reads the run's own config from its store.
        address: a Ray cluster (``auto``, ``HOST:PORT``); None starts a local Ray in this process.
        controller_kind: "ppo" or "random", replacing the config's ``controller.kind``.
        progress: show a progress bar.
        worker_class: the evaluation actor's class (an `EvaluationWorker` subclass, e.g. another trainer).
    """
    run_dir = Path(run_dir)
    check_address(address)  # before anything is written: a wrong address should leave no trace
    store, config = _open_store(config, run_dir, resume, controller_kind)
    try:
        controller = make_searcher(config.controller)
        checkpoint = run_dir / CHECKPOINT
        if resume and checkpoint.is_file():
            controller.load(checkpoint)
        search = config.search
        num_cpus = search.workers * search.cpus_per_worker if search.workers else None
        started = connect(address, num_cpus=num_cpus)
        try:
            return _search(config, controller, store, run_dir, progress, worker_class)
        finally:
            disconnect(started)
    finally:
        store.close()


def _open_store(config: SearchConfig | Mapping[str, Any] | str | Path | None, run_dir: Path, resume: bool,
                controller_kind: str | None) -> tuple[RunStore, SearchConfig]:
    if resume:
        if config is not None:
            raise ValueError("a resumed search reads its config from the run's store; pass config=None")
        store = RunStore(run_dir, config=None, create=False)
        try:
            config = SearchConfig.from_mapping(store.config, source=f"{store.path} (the run's config)")
            if controller_kind is not None and controller_kind != config.controller.kind:
                raise ValueError(f"run {store.run_id} searches with {config.controller.kind!r}; it cannot be "
                                 f"resumed with controller {controller_kind!r}")
        except BaseException:
            store.close()
            raise
        return store, config
    if (run_dir / FILENAME).exists():
        raise FileExistsError(f"{run_dir} already holds a search run; resume it (--resume {run_dir}) or "
                              "choose another run directory")
    if not isinstance(config, SearchConfig):
        config = (SearchConfig.from_mapping(config) if isinstance(config, Mapping)
                  else load_search_config(config))
    if controller_kind is not None:
        config = config.with_overrides({"controller.kind": controller_kind})
    return RunStore(run_dir, config=config.to_mapping()), config


def _search(config: SearchConfig, controller: Any, store: RunStore, run_dir: Path, progress: bool,
            worker_class: type) -> SearchSummary:
    import ray

    start = time.perf_counter()
    search, batch_size = config.search, config.controller.batch_size
    options = worker_options(search.workers, search.cpus_per_worker, search.gpu_fraction)
    tracker = Tracker(config.wandb, run_dir, store.run_id, config.to_mapping())
    pool = None
    timing = _Timing()
    best = store.best(1)
    done = sum(n for status, n in store.counts().items() if status != "pending")
    try:
        data_ref = ray.put(load_data(config.task_config))  # once; every worker reads it from the object store
        pool = WorkerPool(options.workers, options.ray_options, config.task_config.model_dump(mode="json"),
                          data_ref, options.threads, search.time_limit_s, worker_class)
        with SearchProgress(search.budget, done, progress, best[0].reward if best else None,
                            best[0].rule if best else None) as bar:
            while controller.updates * batch_size < search.budget:
                batch = controller.updates
                samples = controller.sample(min(batch_size, search.budget - batch * batch_size))
                rows = store.batch(batch)
                if rows:  # a resumed batch: the stored samples are the ones being evaluated
                    samples = rebuild_samples(rows, controller.space)
                else:
                    store.add_batch(batch, [screen(s, i, store, search.invalid_reward)
                                            for i, s in enumerate(samples)])
                    rows = store.batch(batch)
                    for row in rows:
                        if row.status != "pending":
                            bar.finished()
                rewards = evaluate_batch(rows, store, pool, search, bar, timing)
                stats = controller.update(samples, rewards)
                store.record_update(batch, stats.as_dict())
                controller.save(run_dir / CHECKPOINT)
                tracker.log_update(stats.as_dict(), step=batch, samples=batch * batch_size + len(rows),
                                   evaluations=timing.evaluations, best_reward=bar.best_reward)
    finally:
        if pool is not None:
            pool.shutdown()
        tracker.finish(store.best(10))
    best = store.best(10)
    counts = store.counts()
    return SearchSummary(run_dir, store.run_id, search.budget, sum(counts.values()), counts,
                         controller.updates, timing.evaluations, options.workers, time.perf_counter() - start,
                         timing.phase_s, timing.busy_s, best[0].reward if best else None,
                         best[0].rule if best else None, best)


def screen(sample: Sample, position: int, store: RunStore, invalid_reward: float) -> dict[str, Any]:
    """The store row of a new sample, decided at once where training is not needed: invalid (undecodable
    or rejected by the static checks) or a duplicate of a finished evaluation; else pending."""
    row: dict[str, Any] = {"position": position, "tokens": sample.tokens.tolist(),
                           "log_probs": sample.log_probs.tolist(), "version": sample.version,
                           "groups": [list(g) for g in sample.groups], "rule": None, "canonical_key": None}
    if sample.rule is None:
        return {**row, "status": "invalid", "reward": invalid_reward, "error": f"undecodable: {sample.error}"}
    row["rule"] = str(sample.rule)
    try:
        reason = why_invalid(sample.rule)
        key = canonical_key(sample.rule) if reason is None else None
    except Exception as err:  # (a bug in the checks should cost one sample, not the run)
        reason, key = f"the static checks raised {type(err).__name__}: {err}", None
    if reason is not None:
        return {**row, "status": "invalid", "reward": invalid_reward, "error": reason}
    row["canonical_key"] = key
    found = store.finished_reward(key)
    if found is not None:
        return {**row, "status": "duplicate", "reward": found[0],
                "error": f"same rule as evaluation {found[1]}"}
    return row


def rebuild_samples(rows: list[Evaluation], space: TokenSpace) -> list[Sample]:
    """The controller's samples of a stored batch, for its update after a resume."""
    samples = []
    for row in rows:
        tokens = torch.tensor(row.tokens, dtype=torch.int64)
        groups, rule, error = space.to_rule(tokens)
        samples.append(Sample(tokens, torch.tensor(row.log_probs, dtype=torch.float32), space.masks, groups,
                              rule, error, row.version))
    return samples


@dataclass
class _Timing:
    evaluations: int = 0
    busy_s: float = 0.0
    phase_s: float = 0.0


def evaluate_batch(rows: list[Evaluation], store: RunStore, pool: WorkerPool, search: SearchSection,
                   bar: SearchProgress, timing: _Timing) -> list[float]:
    """Evaluate a batch's pending rows on the pool, recording each result as it arrives; the rewards of
    all rows, in order."""
    rewards = {row.id: row.reward if row.reward is not None else search.invalid_reward
               for row in rows if row.status != "pending"}
    queue: deque[Evaluation] = deque()
    leaders: dict[str, Evaluation] = {}  # canonical key -> the row evaluating it
    followers: dict[int, list[Evaluation]] = defaultdict(list)  # that row's id -> same-key rows
    for row in rows:
        if row.status != "pending":
            continue
        found = store.finished_reward(row.canonical_key)
        if found is not None:  # finished since the batch was stored (a resumed batch)
            store.record(row.id, "duplicate", found[0], error=f"same rule as evaluation {found[1]}")
            rewards[row.id] = found[0]
            bar.finished()
        elif row.canonical_key in leaders:
            followers[leaders[row.canonical_key].id].append(row)
        else:
            leaders[row.canonical_key] = row
            queue.append(row)

    start = None  # the evaluation phase runs from the first submission (workers started) to the last result
    tries = {row.id: row.attempts for row in queue}
    while queue or pool.busy:
        while queue and pool.idle_worker() is not None:
            start = start or time.perf_counter()
            row = queue.popleft()
            tries[row.id] = store.add_attempt(row.id, pool.idle_worker())
            pool.submit(row, row.rule, search.eval_seed)
        finished = pool.wait(timeout=WAIT_WARNING_S)
        if not finished and pool.started == 0:
            log.warning("no evaluation worker has started after %.0f s: the cluster may lack the resources "
                        "each worker asks for (%s); still waiting", WAIT_WARNING_S, pool.ray_options)
        for done in finished:
            row = done.tag
            if done.crashed is not None:
                if tries[row.id] <= search.max_retries:
                    log.warning("evaluation %d: worker %s died (%s); retrying", row.id, done.worker,
                                done.crashed)
                    queue.appendleft(row)
                    continue
                out = {"status": "failed", "worker": done.worker, "error": f"the worker process died on each "
                       f"of {tries[row.id]} attempts; last: {done.crashed}"}
            else:
                out = done.result
                timing.evaluations += 1
                timing.busy_s += out.get("duration") or 0.0
            rewards.update(_record(store, row, out, followers.pop(row.id, []), search.invalid_reward, bar))
    if start is not None:
        timing.phase_s += time.perf_counter() - start
    return [rewards[row.id] for row in rows]


def _record(store: RunStore, row: Evaluation, out: dict[str, Any], followers: list[Evaluation],
            invalid_reward: float, bar: SearchProgress) -> dict[int, float]:
    """Store one evaluation's outcome and its same-key followers'; their rewards by row id."""
    status = out["status"]
    reward = out["reward"] if status in ("ok", "diverged") else invalid_reward
    store.record(row.id, status, reward, lr=out.get("lr"), curves=out.get("curves"), result=out.get("result"),
                 worker=out.get("worker"), duration=out.get("duration"), error=out.get("error"))
    bar.finished(evaluated=True, reward=reward if status == "ok" else None, rule=row.rule)
    rewards = {row.id: reward}
    for other in followers:
        if status in ("ok", "diverged"):
            store.record(other.id, "duplicate", reward, error=f"same rule as evaluation {row.id}")
        else:
            store.record(other.id, "failed", invalid_reward,
                         error=f"same rule as evaluation {row.id}, which failed")
        rewards[other.id] = reward if status in ("ok", "diverged") else invalid_reward
        bar.finished()
    return rewards
