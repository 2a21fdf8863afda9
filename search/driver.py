"""The search loop: the controller proposes rules, Ray workers train them, the store keeps every result.

    summary = run_search(load_search_config(), "runs/mine")            # a new run, on a local Ray
    summary = run_search(None, "runs/mine", resume=True)                 # continue it after a crash

`_search` repeats four steps, top to bottom, until no batch is left to learn from:

1. Draw. While at most ``max_batches_ahead`` (k) batches are drawn beyond the one the next update waits
   for, and neither the budget nor the patience has run out (`search.config`), the controller draws the
   next batch: batch b right after update b - k - 1 (batches 0..k at the start), so its samples come from
   policy version max(0, b - k) and carry their log-probabilities. `screen` decides what it can at once
   and ``store.add_batch`` writes the batch in one transaction: an undecodable rule or one
   `dsl.why_invalid` rejects is ``invalid`` with ``invalid_reward``; a rule whose canonical key finished
   in the store is a ``duplicate`` with the stored reward; the rest is ``pending`` and joins the queue of
   trainings (`search.trainings`: one training per rule, across batches). The batch whose trainings
   reach the budget is cut after the sample that reaches it, before it is stored: a search never trains
   more than ``search.budget`` rules (the funnel's and the confirmation's trainings are extra), and the
   controller learns from the rows kept (a smaller last batch).
2. Feed: every idle worker starts the oldest queued training.
3. Learn: once every row of the oldest drawn batch has finished, ``controller.update(samples, rewards)``,
   ``store.record_update``, the controller checkpoint (``controller.pt``, temp file + rename), and back
   to 1, which draws the batch this update let in.
4. Wait for results and store each the moment it arrives (one fsynced transaction each).

With a ``funnel`` (`search.funnel`), a rule trained ok is offered to stage 1 as its result arrives, and a
promoted rule's stage evaluations are queued ahead of the stage-0 trainings on the same workers; once
every batch is learned from, the funnel's last stages are trained (5), each promoting its final top
fraction when no more of its results can arrive.

So while the controller waits for a batch's last trainings, the workers already train the next k
batches: they never wait for the controller's sampling, screening or update, only for rules to train.
Each batch is drawn at a fixed point of the update sequence rather than when the queue runs low, which
keeps a run reproducible (a seed draws the same batches from the same policies however fast the workers
are) and its resume exact; the price is that samples are k updates old when learned from, which PPO
allows for (its ratio is taken against the stored log-probabilities; ``staleness`` in the update stats).

The ``reward`` column of every row is what the controller learned from: the evaluation's reward (the
mean of the suite's task scores, `child_tasks.reward`; 0 for a seed whose run diverged), each task's
score in the row's ``result``, the stored reward for duplicates, ``invalid_reward`` for invalid and
failed rows.

Resume: the config comes back from the store, the controller from its checkpoint, written after update
U - 1 (U updates, the generator as it was then). Batches U and later are in the store, drawn but not yet
learned from, and their stored rows are what is used: tokens, log-probabilities and version (masks from
the token space, rules decoded again); finished rows are never evaluated again, pending ones are queued
again. For the generator the rule is: a stored batch whose version is below U was drawn before the
checkpoint, which already holds the generator past that draw; a stored batch whose version is U or more
was drawn after it, so the controller draws it again when its update count reaches that version, as it
did the first time, which moves the generator on exactly as then; that draw is thrown away (a draw that
differs from the stored tokens, e.g. under another torch, is logged). The generator, and every batch
drawn later, is then what the uninterrupted run had. Budget and patience count the store's rows. A crash
between ``record_update`` and the checkpoint repeats that update with the same samples and rewards (the
store's update row is replaced with the same values).

One process at a time works in a run directory (`search.lock`): a second search or resume of a live
run is refused before it writes anything.

Before the first batch, the ``confirm`` section's baselines are trained once at the run's own budget and
eval seed and cached in the run (`search.results.baselines`): the progress shows the best of them as the
line to beat, and ``nos rules list RUN`` reads them instead of training.

At the end (of a resumed run too) the ``confirm`` section's top rules are confirmed with more seeds and a
longer budget next to the baselines, and exported (`search.results.winners.confirm_and_export`), unless this
run's records of those rules exist already (a resume of a finished run).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from child_tasks.problems import load_data
from controller import Sample, TokenSpace, make_searcher
from dsl import canonical_key, why_invalid
from search.cluster import check_address, connect, disconnect, worker_options
from search.config import SearchConfig, SearchSection, load_search_config
from search.funnel import Funnel, ranked
from search.lock import RunLock
from search.head_watch import gcs_address, watch_head
from search.progress import SearchProgress
from search.ray_output import RAY_LOG, ray_output
from search.results.baselines import run_baselines
from search.results.comparison import ComparisonError
from search.results.winners import Confirmation, confirm_and_export, records_folder, run_records
from search.store import FILENAME, Evaluation, RunStore, StoreError
from search.tracking import Tracker
from search.trainings import Trainings
from search.workers import EvaluationWorker, WorkerPool

log = logging.getLogger(__name__)

CHECKPOINT = "controller.pt"
STOP_REASONS = {"budget": "the budget's trainings were reached (search.budget)",
                "patience": "{patience} batches in a row brought no rule to train (search.patience)"}


@dataclass
class SearchSummary:
    """What a search did: counts over the whole run, timings of this session, the best rule."""

    run_dir: Path
    run_id: str
    budget: int  # child-task trainings
    stopped: str | None  # why no further batch was drawn: "budget", "patience" (STOP_REASONS)
    patience: int
    samples: int  # rows in the store (finished or not)
    counts: dict[str, int]  # rows per status
    trained: int  # rows trained over the whole run (sent to a worker: ok, diverged, failed)
    updates: int  # controller updates done
    evaluations: int  # trainings that returned a result in this session (retries of dead workers not counted)
    workers: int
    wall_time_s: float  # this session, from connecting to Ray to the last update
    span_s: float  # this session, from the first submission to a worker to the last result
    busy_s: float  # this session: sum of the evaluations' durations, as the workers measured them
    best_reward: float | None  # the best rule's score at the highest funnel stage it completed
    best_rule: str | None
    best_stage: int = 0  # that stage (0: the search's own reward)
    stages: list[int] = field(default_factory=list)  # rules that completed each stage (with a funnel)
    funnel_evaluations: int = 0  # stage evaluations (one per rule, stage and seed) in this session
    best: list[Evaluation] = field(default_factory=list, repr=False)
    confirmation: Confirmation | None = field(default=None, repr=False)
    confirm_error: str | None = None  # why the confirmation failed (the search's results are stored)
    failure: str | None = None  # the last line of one failed training's error, when every training failed
    worker_s: float = 0.0  # started workers x seconds over span_s (follows workers lost or added)
    retried: int = 0  # trainings tried again because their worker died (this session)
    lost_nodes: dict[str, int] = field(default_factory=dict)  # node -> trainings running there when lost
    resized: list[tuple[int, int]] = field(default_factory=list)  # (from, to) workers, following the cluster

    @property
    def all_failed(self) -> bool:
        """Whether the run trained rules and every training failed (no result at all to learn from)."""
        # (counts["failed"] may exceed trained: a row drawn while its rule trained shares its failure)
        return self.trained > 0 and self.counts.get("ok", 0) + self.counts.get("diverged", 0) == 0

    @property
    def stopped_because(self) -> str:
        """Why the search ended, in words."""
        return STOP_REASONS[self.stopped].format(patience=self.patience) if self.stopped else "-"

    @property
    def busy_fraction(self) -> float | None:
        """Share of the workers' time spent training, from the first submission to the last result (the
        workers that existed over that time: `worker_s`)."""
        span = self.worker_s or self.workers * self.span_s
        return self.busy_s / span if span > 0 else None

    def as_dict(self) -> dict[str, Any]:
        """Plain data: the fields (the best rows and the confirmation as names), the busy fraction."""
        skip = ("run_dir", "best", "confirmation")
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        exported = self.confirmation.exported if self.confirmation is not None else []
        return {**out, "run_dir": str(self.run_dir), "busy_fraction": self.busy_fraction,
                "exported": [e.record.name for e in exported]}


@dataclass
class _Batch:
    """A drawn batch awaiting its update: its store rows and the controller's samples of them."""

    rows: list[Evaluation]
    samples: list[Sample]


def run_search(config: SearchConfig | Mapping[str, Any] | str | Path | None, run_dir: str | Path, *,
               address: str | None = None, resume: bool = False, controller_kind: str | None = None,
               progress: bool = True, worker_class: type = EvaluationWorker,
               records_dir: str | Path | None = None, show_ray_output: bool = False) -> SearchSummary:
    """Run (or, with ``resume``, continue) a search in ``run_dir``, then confirm and export its winners;
    see the module docstring.

    Args:
        config: a SearchConfig, a mapping, or a YAML path (None: configs/quickstart.yaml); must be None
            with ``resume``, which reads the run's own config from its store.
        address: a Ray cluster (``auto``, ``HOST:PORT``); None starts a local Ray in this process.
        controller_kind: "ppo" or "random", replacing the config's ``controller.kind``.
        progress: show the progress bars.
        worker_class: the evaluation actor's class (an `EvaluationWorker` subclass, e.g. another trainer).
        records_dir: where confirmed winners are exported (None: the run's own, for a resume, else
            `discovered_rules.default_folder`); the run remembers it.
        show_ray_output: leave Ray's own lines on the terminal (else appended to ``run_dir/ray.log``:
            `search.ray_output`).
    """
    run_dir = Path(run_dir)
    check_address(address)  # before anything is written: a wrong address should leave no trace
    store, config = _open_store(config, run_dir, resume, controller_kind)
    lock = RunLock(run_dir)
    try:
        lock.acquire()  # before anything is written or trained: one process per run (search.lock)
        records_dir = records_folder(store, records_dir)
        controller = make_searcher(config.controller)
        checkpoint = run_dir / CHECKPOINT
        if resume and checkpoint.is_file():
            controller.load(checkpoint)
        search = config.search
        # A missing package or file fails here, before Ray starts.
        data = [load_data(task) for task in config.suite.tasks]
        stage_data = [[load_data(task) for task in stage.tasks] for stage in config.stages]
        num_cpus = search.workers * search.cpus_per_worker if search.workers else None
        with contextlib.ExitStack() as stack:  # undone in reverse: the watch, Ray, Ray's output
            # Ray's own lines (lost nodes' state dumps, the workers' output) to run_dir/ray.log, not the
            # terminal.
            stack.enter_context(ray_output(run_dir / RAY_LOG, show=show_ray_output))
            stack.callback(disconnect, connect(address, num_cpus=num_cpus, worker_logs=True))
            # A head that stops answering: one line with the resume command, not Ray's exit after 60 s.
            stack.enter_context(watch_head(gcs_address(), lambda: _resume_command(run_dir, address)))
            # Before anything trains: workers the cluster cannot hold are one line, not actors that wait
            # in Ray for ever.
            worker_options(search.workers, search.cpus_per_worker, search.gpu_fraction, "search.workers")
            to_beat = _baselines(config, run_dir, address, progress)
            summary = _search(config, controller, store, run_dir, progress, worker_class, data, stage_data,
                              to_beat)
            if config.confirm.top_k and not summary.all_failed:  # nothing to confirm; the CLI says why
                summary.confirmation, summary.confirm_error = _confirm(config, run_dir, address, progress,
                                                                       records_dir)
            return summary
    finally:
        store.close()
        lock.release()


def _resume_command(run_dir: Path, address: str | None) -> str:
    return f"nos search --resume {run_dir}" + (f" --address {address}" if address else "")


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
    # Before the store exists: a reference measured here is stored with the run, and resumes reuse it.
    config = config.with_references(log.warning)
    return RunStore(run_dir, config=config.to_mapping()), config


def _baselines(config: SearchConfig, run_dir: Path, address: str | None,
               progress: bool) -> tuple[str, float] | None:
    """The confirm section's baselines trained at the run's own budget and eval seed before the search
    (cached in the run: a resume trains none), so that the progress shows the line to beat and listings
    only read (`search.results.baselines`); the best one, or None when there are none or they failed."""
    if not config.confirm.baselines:
        return None
    try:
        cache = run_baselines(run_dir, config.confirm.baselines, address=address, progress=progress)
    except (ComparisonError, ValueError, OSError) as err:  # (ValueError: a damaged baselines.json)
        # The search goes on without its line to beat; `nos rules list RUN --compute-baselines` retries.
        log.warning("the baselines could not be trained (%s); the search goes on without them", err)
        return None
    best = max(config.confirm.baselines, key=lambda b: cache.rewards[b])
    return best, cache.rewards[best]


def _search(config: SearchConfig, controller: Any, store: RunStore, run_dir: Path, progress: bool,
            worker_class: type, data: list[Any], stage_data: list[list[Any]],
            to_beat: tuple[str, float] | None = None) -> SearchSummary:
    import ray

    start = time.perf_counter()
    search, ahead = config.search, config.search.max_batches_ahead
    options = worker_options(search.workers, search.cpus_per_worker, search.gpu_fraction, "search.workers")
    tracker = Tracker(config.wandb, run_dir, store.run_id, config.to_mapping())
    checkpointed = controller.updates  # stored batches of this version or later are drawn again (docstring)
    last = store.last_batch()
    stored = {b: store.batch(b) for b in range(checkpointed, -1 if last is None else last + 1)}
    if unreadable := [b for b, rows in stored.items() if not rows]:  # every row skipped as malformed
        raise StoreError(f"{store.path}: every row of batch {unreadable[0]} is unreadable (the warnings "
                         "above say why), so the run cannot be resumed past it; its rows stay in the file")
    trained_before = store.trained_by_batch()
    trained = [trained_before.get(b, 0) for b in range(checkpointed)]  # per batch, for budget and patience
    best = store.best(1)
    pool = None
    try:
        # Once: every worker reads each task's data from the object store (the funnel's stages' too).
        data_ref = ray.put(data)
        stages_ref = ray.put([(stage.to_mapping(), each) for stage, each
                              in zip(config.stages, stage_data, strict=True)]) if config.stages else None
        # Without a worker count of its own, the pool follows the cluster as nodes leave or join.
        follow = (None if search.workers else
                  lambda: worker_options(None, search.cpus_per_worker, search.gpu_fraction).workers)
        pool = WorkerPool(options.workers, options.ray_options, config.suite.to_mapping(), data_ref,
                          options.threads, search.time_limit_s, worker_class, stages_ref, follow)
        with SearchProgress(search.budget, sum(trained_before.values()), store.counts(), progress,
                            best[0].reward if best else None, best[0].rule if best else None,
                            to_beat=to_beat) as bar:
            trainings = Trainings(store, pool, search, bar)
            funnel = Funnel(config.funnel, store, trainings.scheduler, config.confirm.baselines)

            def show() -> None:  # the funnel's counts, best rule and line to beat in the progress
                bar.staged(funnel.counts(), *funnel.leader())

            if config.funnel:
                funnel.attach(trainings, on_change=show)
                funnel.start()
            drawn: dict[int, _Batch] = {}  # batches awaiting their update, by number
            while True:
                # 1. Draw: keep `ahead` batches drawn beyond the one the next update waits for.
                while True:
                    b = controller.updates + len(drawn)
                    if b in stored and stored[b][0].version <= controller.updates:
                        rows = stored.pop(b)  # drawn before an interruption: its stored rows are the batch
                        if rows[0].version >= checkpointed:
                            _draw_again(controller, b, rows)
                        samples = rebuild_samples(rows, controller.space)
                    elif b not in stored and len(drawn) <= ahead and _stop_reason(trained, search) is None:
                        samples = controller.sample()
                        screened = [screen(s, i, store, search.invalid_reward) for i, s in enumerate(samples)]
                        # The budget is a budget: the batch that reaches it ends with the sample that does.
                        # Cut before it is stored, so that every stored row is trained (or costs nothing)
                        # and gets its reward, and the update learns from exactly the rows kept; a sample
                        # dropped from the update instead would need a stored status of its own that
                        # every reader and a resume would have to know.
                        screened = trainings.within(screened, search.budget - sum(trained))
                        samples = samples[:len(screened)]
                        store.add_batch(b, screened)
                        rows = store.batch(b)
                        bar.sampled(rows)
                    else:
                        break
                    drawn[b] = _Batch(rows, samples)
                    trained.append(trainings.add(rows))
                # 2. Feed every idle worker.
                trainings.feed()
                # 3. Learn from the oldest batch once all its rows have finished, in batch order.
                b = controller.updates
                if b in drawn and trainings.complete(drawn[b].rows):
                    batch = drawn.pop(b)
                    stats = controller.update(batch.samples, trainings.rewards(batch.rows))
                    store.record_update(b, stats.as_dict())
                    controller.save(run_dir / CHECKPOINT)
                    tracker.log_update(stats.as_dict(), step=b, trainings=sum(trained[:b + 1]),
                                       evaluations=trainings.evaluations, best_reward=bar.best_reward)
                    continue
                if not drawn:
                    break
                if not trainings.under_way:  # would wait forever: a bug, not a state of the search
                    raise RuntimeError(f"batch {b} awaits rows that are neither finished nor being trained")
                # 4. Wait for results; each is stored as it arrives.
                trainings.collect()
            # 5. The funnel's last stages: no stage-0 result can arrive any more.
            funnel.close_finished(stage_zero_done=True)
            while funnel.under_way:
                trainings.feed()
                trainings.collect()
                funnel.close_finished(stage_zero_done=True)
            if config.funnel:
                show()
    finally:
        if pool is not None:
            pool.shutdown()
        tracker.finish(store.best(10))
    trainings.scheduler.tell_faults()
    top = ranked(store, 10, config.funnel)
    best = [r.row for r in top]
    counts = store.counts()
    failed = store.evaluations("failed") if counts.get("failed") else []
    return SearchSummary(
        run_dir, store.run_id, search.budget, stopped=_stop_reason(trained, search), patience=search.patience,
        samples=sum(counts.values()), counts=counts, trained=sum(store.trained_by_batch().values()),
        updates=controller.updates, evaluations=trainings.evaluations, workers=options.workers,
        wall_time_s=time.perf_counter() - start, span_s=trainings.span_s,
        busy_s=trainings.busy_s + funnel.busy_s, best_reward=top[0].score if top else None,
        best_rule=best[0].rule if best else None, best_stage=top[0].stage if top else 0,
        stages=funnel.counts() if config.funnel else [], funnel_evaluations=funnel.evaluations, best=best,
        failure=_last_line(failed[-1].error) if failed else None, worker_s=trainings.scheduler.worker_s,
        retried=trainings.scheduler.retried, lost_nodes=dict(trainings.scheduler.lost_nodes),
        resized=list(pool.resized) if pool is not None else [])


def _last_line(error: str | None) -> str:
    """A failed training's error is a worker's traceback; its last line says what went wrong."""
    lines = [line for line in (error or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no error recorded"


def _stop_reason(trained: list[int], search: SearchSection) -> str | None:
    """Why no further batch may be drawn, given the trainings of each batch drawn so far; None: draw."""
    if sum(trained) >= search.budget:
        return "budget"
    if len(trained) >= search.patience and not any(trained[-search.patience:]):
        return "patience"
    return None


def _draw_again(controller: Any, batch: int, rows: list[Evaluation]) -> None:
    """Draw a stored batch again, to move the controller's generator past it as the first draw did; the
    stored rows stay the batch (module docstring). Every batch was drawn whole, the one the budget cut too
    (its stored rows are the first of that draw)."""
    again = controller.sample()
    if [s.tokens.tolist() for s in again[:len(rows)]] != [row.tokens for row in rows]:
        log.warning("batch %d drawn again differs from its stored samples (another torch version?); the "
                    "stored samples are used, later batches will differ from an uninterrupted run", batch)


def _confirm(config: SearchConfig, run_dir: Path, address: str | None, progress: bool,
             records_dir: str | Path | None) -> tuple[Confirmation | None, str | None]:
    """The confirmation of the run's winners, or why it failed (the search's results stay in the store,
    and ``nos rules export RUN_DIR`` can try again)."""
    section = config.confirm
    with RunStore(run_dir, config=None, create=False) as store:
        run_id = store.run_id
        keys = {r.row.canonical_key for r in ranked(store, section.top_k, config.funnel)}
    done = run_records(run_id, records_dir)
    if keys and keys <= set(done):  # a resumed run that was confirmed before: exporting again would copy
        log.warning("run %s was confirmed and exported before (%s); nothing to do (to confirm again: nos "
                    "rules export %s --force)", run_id, ", ".join(sorted(r.name for r in done.values())),
                    run_dir)
        return None, None
    try:
        confirmation = confirm_and_export(run_dir, section.top_k, seeds=section.seeds,
                                          budget_scale=section.budget_scale, baselines=section.baselines,
                                          directory=records_dir, address=address, progress=progress)
        return confirmation, None
    except (ComparisonError, FileExistsError, ValueError) as err:
        log.error("confirmation of %s failed: %s", run_dir, err)
        return None, str(err)


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
        samples.append(Sample(tokens, torch.tensor(row.log_probs, dtype=torch.float32),
                              space.masks_for(tokens[None])[0], groups, rule, error, row.version))
    return samples


