"""Evaluation workers: long-lived Ray actors that train child networks with candidate rules.

`EvaluationWorker` is a plain class; `WorkerPool` makes it a Ray actor with the resources of
`search.cluster.worker_options`. Each worker is built once with the suite (`child_tasks.suite`: one task
or several) and each task's data, which the driver put in Ray's object store once (``ray.put``): a worker
fetches it at start and keeps it in memory (on its GPU, when it has one), so an evaluation pays for
training only. Its torch threads are pinned to the CPUs it holds (one, by default): two threads fighting
over one core make small networks many times slower.

A worker of a search with a funnel (`search.funnel`) also holds each stage's suite and data:
``evaluate(rule_text, seed, stage)`` trains on stage ``stage``'s tasks (rule text, or a baseline's
``torch:NAME``), with each task's own time limit.

``evaluate(rule_text, seed)`` returns a plain dict: status (ok, diverged, failed), reward (the mean of
the tasks' scores, `child_tasks.reward`), lr and curves (the first task's first seed), the evaluation
(every task's score and every training's result), reason/traceback, duration and the worker's id
(``host:pid``). ``evaluate_many(rule_texts, seed)`` returns one such dict per rule, their trainings
batched in one process (`child_tasks.evaluate_batch`: the same rewards within float tolerance).
Whatever the rule or the training does, an exception is returned as status ``failed`` with its traceback
and never ends the actor; only the process dying (killed, out of memory, node lost) does, and the pool
replaces the actor. Workers never log to wandb: the driver does.

`WorkerPool` keeps track of which actors are ready and idle, hands out evaluations (one, or several in one
call with ``submit_many``), and reports each one's outcome as it arrives (``ray.wait``): a `Finished`
with the worker's dict, or ``crashed`` set when the actor died, after which a fresh actor takes its place.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from child_tasks.reward import Evaluation, evaluate, evaluate_batch
from child_tasks.suite import load_suite
from dsl import Rule, parse

log = logging.getLogger(__name__)

FOLLOW_EVERY_S = 2.0  # how often a pool that follows the cluster reads its resources


class EvaluationWorker:
    """Trains rules on one task; built once per actor (see the module docstring)."""

    def __init__(self, suite: dict[str, Any], data: list[Any], threads: int = 1,
                 time_limit_s: float | None = None, stages: list[tuple[dict[str, Any], list[Any]]] = ()
                 ) -> None:
        self.tasks = load_suite(suite).tasks
        self.threads = threads
        self.time_limit_s = time_limit_s
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # for libraries that read it later (numpy's BLAS)
        self.device = torch.device("cuda" if _has_gpu() else "cpu")
        self.data = [_to_device(d, self.device) for d in data]
        # The funnel's stages 1, 2, ...: each one's tasks and their data.
        self.stages = [(load_suite(s).tasks, [_to_device(d, self.device) for d in stage_data])
                       for s, stage_data in stages]
        self.id = f"{socket.gethostname()}:{os.getpid()}"

    def info(self) -> dict[str, Any]:
        """Who this worker is: id (host:pid), pid, device, threads, and its Ray node (id and address)."""
        node, ip = _ray_node()
        return {"worker": self.id, "pid": os.getpid(), "device": str(self.device), "threads": self.threads,
                "node": node, "ip": ip}

    def evaluate(self, rule_text: str, seed: int, stage: int = 0) -> dict[str, Any]:
        """Train ``rule_text`` on the task (stage ``stage``'s tasks) with ``seed``; a dict that never
        raises (module docstring)."""
        start = time.perf_counter()
        try:
            result = self.train(parse(rule_text), seed) if stage == 0 else self.train_stage(rule_text, seed,
                                                                                             stage)
        except Exception:  # (a failed evaluation is a result to record, never the end of the worker)
            return self._failed(traceback.format_exc(), time.perf_counter() - start)
        return self._outcome(result, time.perf_counter() - start)

    def evaluate_many(self, rule_texts: list[str], seed: int) -> list[dict[str, Any]]:
        """`evaluate` for each rule, their trainings batched (`train_many`); a rule that does not parse
        gets the usual failed dict. If the batch raises, each rule is evaluated alone instead, so one bad
        rule costs no other its result. Each duration is the rule's share of the batch's time, so that
        the durations add up to the time the worker was busy."""
        start = time.perf_counter()
        out: list[dict[str, Any] | None] = [None] * len(rule_texts)
        parsed: dict[int, Rule] = {}
        for i, text in enumerate(rule_texts):
            try:
                parsed[i] = parse(text)
            except Exception:
                out[i] = self._failed(traceback.format_exc(), 0.0)
        try:
            results = self.train_many(list(parsed.values()), seed) if parsed else []
        except Exception:  # one at a time: the batch's error may be one rule's
            return [self.evaluate(text, seed) if done is None else done
                    for text, done in zip(rule_texts, out, strict=True)]
        share = (time.perf_counter() - start) / len(rule_texts)
        for i, result in zip(parsed, results, strict=True):
            out[i] = self._outcome(result, share)
        for done in out:
            done["duration"] = share  # type: ignore[index]
        return out  # type: ignore[return-value]

    def train(self, rule: Rule | str, seed: int) -> Evaluation:
        """One evaluation: every task, every training seed of ``seed``, NOS's lr choice in each; the step
        a subclass may replace."""
        return evaluate(rule, self.tasks, seed, data=self.data, threads=self.threads, device=self.device,
                        time_limit_s=self.time_limit_s)

    def train_stage(self, text: str, seed: int, stage: int) -> Evaluation:
        """One evaluation on funnel stage ``stage``'s tasks: rule text, or ``torch:NAME`` for a baseline."""
        tasks, data = self.stages[stage - 1]
        optimizer = text if text.startswith("torch:") else parse(text)
        return evaluate(optimizer, tasks, seed, data=data, threads=self.threads, device=self.device)

    def train_many(self, rules: list[Rule], seed: int) -> list[Evaluation]:
        """`train` for several rules at once, their models side by side (`child_tasks.evaluate_batch`)."""
        return evaluate_batch(rules, self.tasks, seed, data=self.data, threads=self.threads,
                              device=self.device, time_limit_s=self.time_limit_s)

    def _outcome(self, result: Evaluation, duration: float) -> dict[str, Any]:
        return {"status": "ok" if result.status == "ok" else "diverged", "reward": result.reward,
                "lr": result.lr, "curves": {"train_loss": result.train_loss, "val_curve": result.val_curve},
                "result": result.to_dict(), "error": result.reason, "worker": self.id, "duration": duration}

    def _failed(self, error: str, duration: float) -> dict[str, Any]:
        return {"status": "failed", "reward": None, "error": error, "worker": self.id, "duration": duration}


def _ray_node() -> tuple[str | None, str | None]:
    """This process's Ray node id and address (None, None outside Ray: a worker built directly)."""
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address()
    except Exception:  # only used to name a lost node; never a reason to fail
        pass
    return None, None


def _has_gpu() -> bool:
    """Whether Ray gave this actor a GPU (outside Ray, e.g. in a test: whether there is one)."""
    import ray

    if not ray.is_initialized():
        return torch.cuda.is_available()
    return bool(ray.get_gpu_ids()) and torch.cuda.is_available()


def _to_device(data: Any, device: torch.device) -> Any:
    """The data with its tensors on ``device`` (once, here, rather than at every evaluation)."""
    if device.type == "cpu" or not dataclasses.is_dataclass(data):
        return data
    moved = {f.name: getattr(data, f.name).to(device) for f in dataclasses.fields(data)
             if f.init and isinstance(getattr(data, f.name), torch.Tensor)}
    return dataclasses.replace(data, **moved)


@dataclass
class Finished:
    """One evaluation's outcome: the worker's dict, or ``crashed`` (a description) when the actor died."""

    tag: Any
    result: dict[str, Any] | None
    crashed: str | None
    worker: str
    batched: bool = False  # it was one of several evaluations in one call (`submit_many`)


@dataclass(frozen=True)
class _Many:
    """The tags of the evaluations of one `submit_many` call, in order."""

    tags: list[Any]


class WorkerPool:
    """Evaluation actors, replaced when they die; see the module docstring.

    ``follow`` (a function giving the number of workers the cluster holds now, `search.cluster`) makes
    the pool follow the cluster: checked every `FOLLOW_EVERY_S` while waiting, a node that joins gets
    workers and the workers that a lost node's resources can no longer hold are not waited for."""

    def __init__(self, size: int, ray_options: dict[str, float], task: dict[str, Any], data_ref: Any,
                 threads: int, time_limit_s: float | None, worker_class: type = EvaluationWorker,
                 stages_ref: Any = None, follow: Callable[[], int] | None = None) -> None:
        import ray

        # No task events: Ray's GCS would keep a record of every evaluation (~4 KB each, up to 100,000 of
        # them: hundreds of MB over a long search; benchmarks/soak.py), and nothing of ours reads them.
        self._actor_class = ray.remote(worker_class).options(max_restarts=0, enable_task_events=False,
                                                             **ray_options)
        stages = (stages_ref,) if stages_ref is not None else ()
        self._args = (task, data_ref, threads, time_limit_s, *stages)
        self.ray_options = ray_options
        self.size = size
        self.follow = follow
        self.resized: list[tuple[int, int]] = []  # (from, to) each time the pool followed the cluster
        self._followed = time.monotonic()
        self._starting: dict[Any, Any] = {}  # info ref -> actor, until the actor has started
        self._idle: list[tuple[Any, str]] = []  # (actor, worker id)
        self._running: dict[Any, tuple[Any, str, Any]] = {}  # result ref -> (actor, worker id, tag)
        self._nodes: dict[str, tuple[str, str]] = {}  # worker id -> (node id, "IP (node id's start)")
        self._worker_s, self._marked = 0.0, time.monotonic()  # started workers x seconds, since built
        for _ in range(size):
            self._start()

    def _start(self) -> None:
        actor = self._actor_class.remote(*self._args)
        self._starting[actor.info.remote()] = actor

    @property
    def started(self) -> int:
        """Workers that have started (idle or evaluating)."""
        return len(self._idle) + len(self._running)

    @property
    def busy(self) -> int:
        """Evaluations in flight."""
        return len(self._running)

    def worker_seconds(self) -> float:
        """Started workers integrated over time since the pool was built: what the workers could have
        trained, for a busy fraction that stays true when workers come and go."""
        self._mark()
        return self._worker_s

    def _mark(self) -> None:
        now = time.monotonic()
        self._worker_s += self.started * (now - self._marked)
        self._marked = now

    def running_on(self, node: str) -> int:
        """Evaluations in flight on workers of the node named ``node`` (as `node_of` names it)."""
        on_node = [tag for _, worker, tag in self._running.values()
                   if self._nodes.get(worker, ("", ""))[1] == node]
        return sum(len(tag.tags) if isinstance(tag, _Many) else 1 for tag in on_node)

    def idle_worker(self) -> str | None:
        """The id of a started, idle worker (the next `submit` goes to it), or None."""
        return self._idle[-1][1] if self._idle else None

    def submit(self, tag: Any, rule_text: Any, seed: int, *args: Any) -> str:
        """Start an evaluation (``evaluate(rule_text, seed, *args)``) on the idle worker `idle_worker`
        named; returns that worker's id."""
        actor, worker = self._idle.pop()
        self._running[actor.evaluate.remote(rule_text, seed, *args)] = (actor, worker, tag)
        return worker

    def submit_many(self, tags: list[Any], rule_texts: list[Any], seed: int) -> str:
        """Start several evaluations in one call (the worker's ``evaluate_many``) on the idle worker
        `idle_worker` named; each is reported on its own by `wait`. Returns that worker's id."""
        actor, worker = self._idle.pop()
        self._running[actor.evaluate_many.remote(rule_texts, seed)] = (actor, worker, _Many(tags))
        return worker

    def wait(self, timeout: float | None = None) -> list[Finished]:
        """Block until at least one evaluation finishes (or ``timeout``); workers that finished starting
        meanwhile become idle. Raises RuntimeError if a worker fails to start (its constructor raised)."""
        import ray

        self._follow_cluster()
        refs = [*self._running, *self._starting]
        if not refs:
            return []
        if self.follow is not None and timeout is not None:
            timeout = min(timeout, FOLLOW_EVERY_S)  # a node that joins is seen while the rest trains
        self._mark()
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0) if ready else (ready, None)
        self._mark()
        finished = []
        for ref in ready:
            if ref in self._starting:
                actor = self._starting.pop(ref)
                try:
                    info = ray.get(ref)
                except ray.exceptions.RayActorError as err:
                    if getattr(err, "actor_init_failed", True):  # its constructor raised
                        raise RuntimeError(f"an evaluation worker failed to start: {err}") from None
                    # Its node left before it started: start another, unless the pool no longer needs it.
                    if len(self._starting) + self.started < self.size:
                        self._start()
                    continue
                except ray.exceptions.RayError as err:
                    raise RuntimeError(f"an evaluation worker failed to start: {err}") from None
                self._idle.append((actor, info["worker"]))
                if info.get("node"):
                    name = f"{info.get('ip') or '?'} ({info['node'][:8]})"
                    self._nodes[info["worker"]] = (info["node"], name)
                continue
            actor, worker, tag = self._running.pop(ref)
            tags, many = (tag.tags, True) if isinstance(tag, _Many) else ([tag], False)
            try:
                results = ray.get(ref) if many else [ray.get(ref)]
                finished += [Finished(t, r, None, worker, many) for t, r in zip(tags, results, strict=True)]
                self._idle.append((actor, worker))
            except ray.exceptions.RayTaskError as err:  # evaluate catches everything; a result that
                # cannot travel back (serialisation) still lands here: the worker lives on
                failed = {"status": "failed", "reward": None, "error": str(err), "worker": worker,
                          "duration": None}
                finished += [Finished(t, dict(failed), None, worker, many) for t in tags]
                self._idle.append((actor, worker))
            except ray.exceptions.RayError as err:  # the actor's process died: replace the actor
                reason = f"{type(err).__name__}: {_first_line(str(err))}"
                finished += [Finished(t, None, reason, worker, many) for t in tags]
                ray.kill(actor, no_restart=True)
                self._start()
        return finished

    def node_of(self, worker: str) -> str | None:
        """The node a worker ran on, as "IP (node id's start)"; None if unknown."""
        return self._nodes.get(worker, (None, None))[1]

    def dead_nodes(self, names: set[str]) -> set[str]:
        """Those of the nodes named (as `node_of` names them) that the cluster no longer counts as alive.
        Ray marks a node dead some seconds after it goes (the GCS's health checks), not at once."""
        import ray

        try:
            alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        except Exception:  # the GCS itself gone: the driver's own error says so
            return set()
        return {name for node, name in self._nodes.values() if name in names and node not in alive}

    def _follow_cluster(self) -> None:
        """Resize to what ``follow`` says the cluster holds, at most every `FOLLOW_EVERY_S`."""
        import ray

        if self.follow is None or time.monotonic() - self._followed < FOLLOW_EVERY_S:
            return
        self._followed = time.monotonic()
        try:
            target = max(1, int(self.follow()))
        except Exception:  # the cluster's state unreadable for a moment: keep the pool as it is
            return
        if target == self.size:
            return
        self.resized.append((self.size, target))
        log.warning("workers: %d -> %d, following the cluster's resources", self.size, target)
        self.size = target
        for _ in range(target - self.started - len(self._starting)):
            self._start()
        # Fewer: stop waiting for workers that have not started (a lost node's replacements), then idle
        # ones; running ones finish their evaluation and are stopped at a later check.
        while self.started + len(self._starting) > target and self._starting:
            ray.kill(self._starting.popitem()[1], no_restart=True)
        while self.started + len(self._starting) > target and self._idle:
            ray.kill(self._idle.pop(0)[0], no_restart=True)

    def shutdown(self) -> None:
        """End every actor of the pool."""
        import ray

        actors = [a for a, _ in self._idle] + [a for a, _, _ in self._running.values()]
        for actor in actors + list(self._starting.values()):
            ray.kill(actor, no_restart=True)
        self._idle.clear(), self._running.clear(), self._starting.clear()


def _first_line(text: str, limit: int = 200) -> str:
    """A Ray error's first line, cut to ``limit`` characters: its full text is in ray.log."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit] + "..."
