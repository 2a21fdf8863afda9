"""The one Ray scheduling loop: jobs queued first in, first out, handed to the idle workers of a
`search.workers.WorkerPool`, and a job whose worker process died put back at the front of the queue.

    scheduler = Scheduler(pool, max_retries=2, describe=lambda tag: f"evaluation {tag.id}")
    scheduler.add(tag, payload, seed)            # payload: what the worker's evaluate takes (rule text, ...)
    scheduler.add(tag, payload, seed, args=(2,), first=True)   # evaluate(payload, seed, 2), queued ahead
    while scheduler.under_way:
        scheduler.feed()                          # every idle worker takes the oldest queued job(s)
        for done in scheduler.collect():          # wait for results
            done.tag, done.result                 # the worker's dict, or None and done.crashed
                                                  # (its worker died on each of done.attempts attempts)

The search's trainings (`search.trainings`) and the comparisons (`search.results.comparison`) both run on
it. A job whose worker died is tried again, ahead of every other job, until it has had ``max_retries``
retries; after that it is reported with ``crashed`` set and the caller decides (a failed row, or an
error). No worker started after `WAIT_WARNING_S` is logged, not raised: an autoscaler may still be adding
the nodes the workers wait for.

``batch`` > 1 hands an idle worker up to that many queued jobs of the same seed in one call (the worker's
``evaluate_many``); jobs of a batch whose worker died are tried again one at a time, so one job that
kills its worker cannot take others down with it twice. ``first_submit`` and ``last_result`` bound the
time the workers were in use.

``first`` queues a job ahead of every job queued without it (the funnel's promoted rules, which the
search's end waits for), behind the other ``first`` ones; ``args`` go to the worker's ``evaluate`` after
the seed, and such a job is never batched.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from search.workers import WorkerPool

log = logging.getLogger(__name__)

WAIT_WARNING_S = 60.0  # no worker started after this long: say so (an autoscaler may still be adding nodes)
NODE_DEATH_WAIT_S = 30.0  # a worker's death not followed by its node's within this long: a worker's fault


@dataclass
class Job:
    """One queued evaluation: the caller's tag, what the worker evaluates, its seed and its attempts."""

    tag: Any
    payload: Any
    seed: int
    tries: int = 0
    alone: bool = False  # never batched: its batch's worker died, or it has args of its own
    args: tuple = ()  # passed to the worker's evaluate after the seed


@dataclass(frozen=True)
class Outcome:
    """A job's end: the worker's dict, or ``crashed`` (why) once its worker died on every attempt."""

    tag: Any
    result: dict[str, Any] | None
    crashed: str | None
    worker: str
    attempts: int


class Scheduler:
    """The queue of jobs over a worker pool; see the module docstring."""

    def __init__(self, pool: WorkerPool, max_retries: int, *, batch: int = 1,
                 describe: Callable[[Any], str] = str,
                 on_submit: Callable[[Any, str], None] | None = None) -> None:
        self.pool, self.max_retries, self.batch = pool, max_retries, batch
        self.describe = describe  # a job's name in the log
        self.on_submit = on_submit  # called with (tag, worker id) as each job is handed out
        # Two queues, taken from in this order: the jobs queued with `first` and the retried ones, then
        # the rest.
        self.ahead: deque[Job] = deque()
        self.queue: deque[Job] = deque()
        self.first_submit: float | None = None
        self.last_result: float | None = None
        self.worker_s_at: list[float] = []  # the pool's worker-seconds: at the first submission, last result
        self.retried = 0  # jobs tried again because their worker died
        self.lost_nodes: dict[str, int] = {}  # node -> evaluations running there when it was lost
        self._crashes: dict[str, list[float]] = {}  # node -> when each of its workers died, not yet told
        self._checked = 0.0
        self._no_worker_since: float | None = None

    @property
    def under_way(self) -> int:
        """Jobs queued or running."""
        return len(self.ahead) + len(self.queue) + self.pool.busy

    @property
    def span_s(self) -> float:
        """Seconds from the first submission to the last result (0 before both)."""
        if self.first_submit is None or self.last_result is None:
            return 0.0
        return self.last_result - self.first_submit

    @property
    def worker_s(self) -> float:
        """Worker-seconds from the first submission to the last result: started workers integrated over
        that time, which follows the workers as nodes leave or join (0 before both)."""
        return self.worker_s_at[-1] - self.worker_s_at[0] if len(self.worker_s_at) == 2 else 0.0

    def add(self, tag: Any, payload: Any, seed: int, tries: int = 0, *, args: tuple = (),
            first: bool = False) -> None:
        """Queue a job at the back, or with ``first`` behind the other first jobs (module docstring);
        ``tries``: attempts it had before (a resumed search's row)."""
        job = Job(tag, payload, seed, tries, alone=bool(args), args=args)
        (self.ahead if first else self.queue).append(job)

    def feed(self) -> None:
        """Hand the oldest queued jobs to every idle worker."""
        while (self.ahead or self.queue) and (worker := self.pool.idle_worker()) is not None:
            jobs = self._take()
            for job in jobs:
                job.tries += 1
                if self.on_submit is not None:
                    self.on_submit(job.tag, worker)
            if len(jobs) == 1:
                self.pool.submit(jobs[0], jobs[0].payload, jobs[0].seed, *jobs[0].args)
            else:
                self.pool.submit_many(jobs, [job.payload for job in jobs], jobs[0].seed)
            if self.first_submit is None:
                self.first_submit = time.perf_counter()
                self.worker_s_at = [self.pool.worker_seconds()]

    def _say_crash(self, done: Any, job: Job) -> None:
        """One line per fault. A worker whose node is known waits for `_tell_faults`: Ray marks a lost node
        dead some seconds after its workers' calls fail, and the several evaluations lost with a node are
        then one line. Ray's own account of it is in the run's ray.log (`search.ray_output`)."""
        node = self.pool.node_of(done.worker)
        if node in self.lost_nodes and job.tries <= self.max_retries:
            return  # counted when the node was reported
        if node is None or job.tries > self.max_retries:
            again = "requeued" if job.tries <= self.max_retries else f"not retried after {job.tries} attempts"
            log.warning("%s: worker %s died (%s); %s", self.describe(job.tag), done.worker, done.crashed,
                        again)
            return
        self._crashes.setdefault(node, []).append(time.monotonic())

    def _tell_faults(self, final: bool = False) -> None:
        """Report the workers' deaths held back by `_say_crash`, once their node is known to be lost (one
        line per node), or after `NODE_DEATH_WAIT_S` (or at the end: ``final``) as workers that died."""
        now = time.monotonic()
        if not self._crashes or (now - self._checked < 1.0 and not final):
            return
        self._checked = now
        dead = self.pool.dead_nodes(set(self._crashes))
        for node, times in list(self._crashes.items()):
            if node in dead:
                self.lost_nodes[node] = len(times) + self.pool.running_on(node)
                log.warning("node %s lost: %s requeued", node, _trainings(self.lost_nodes[node]))
            elif final or now - times[0] > NODE_DEATH_WAIT_S:
                log.warning("workers died on node %s, which is still in the cluster: %s requeued", node,
                            _trainings(len(times)))
            else:
                continue
            del self._crashes[node]

    def tell_faults(self) -> None:
        """At the end: report what is still held back (`_tell_faults`)."""
        self._tell_faults(final=True)

    def _take(self) -> list[Job]:
        """The oldest job and, when batching, the next queued ones of its seed (up to ``batch``)."""
        first = (self.ahead or self.queue).popleft()
        if self.batch == 1 or first.alone:
            return [first]
        jobs = [first]
        for queue in (self.ahead, self.queue):
            rest: deque[Job] = deque()
            while queue and len(jobs) < self.batch:
                job = queue.popleft()
                (jobs if job.seed == first.seed and not job.alone else rest).append(job)
            queue.extendleft(reversed(rest))  # the skipped ones keep their places
        return jobs

    def collect(self, timeout: float = WAIT_WARNING_S) -> list[Outcome]:
        """Wait for at least one result (or a worker starting); the jobs that ended, in arrival order."""
        finished = self.pool.wait(timeout=timeout)
        # The pool may return sooner than asked (one that follows the cluster looks at it every few
        # seconds): the warning counts the time with no worker, not one wait's.
        now = time.monotonic()
        if finished or self.pool.started:
            self._no_worker_since = None
        elif self._no_worker_since is None:
            self._no_worker_since = now
        elif now - self._no_worker_since >= timeout:
            log.warning("no evaluation worker has started after %.0f s: the cluster may lack the resources "
                        "each worker asks for (%s); still waiting", now - self._no_worker_since,
                        self.pool.ray_options)
            self._no_worker_since = now
        out, retries = [], []
        if finished and self.worker_s_at:
            self.worker_s_at[1:] = [self.pool.worker_seconds()]
        for done in finished:
            job: Job = done.tag
            self.last_result = time.perf_counter()
            if done.crashed is not None:
                job.alone = job.alone or done.batched
                self._say_crash(done, job)
                if job.tries <= self.max_retries:
                    self.retried += 1
                    retries.append(job)
                    continue
            out.append(Outcome(job.tag, done.result, done.crashed, done.worker, job.tries))
        self.ahead.extendleft(reversed(retries))  # ahead of every other job, in their own order
        self._tell_faults()
        return out


def _trainings(count: int) -> str:
    return f"{count} training" + ("" if count == 1 else "s")
