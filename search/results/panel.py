"""The held-out transfer panel: a rule against lr-tuned baselines on tasks no search is scored on.

    result = run_panel("nos_3f9a1c_1", seeds=5)      # a record, a reference rule's name, or rule text
    print(result)                                    # the table rule x task and the summary, as text
    result.to_json()                                 # plain data; stored in the record's ``panel`` field
    result.saved_to                                  # [the record] or [./panel_<name>.json] (or ``out``)

**The tasks** are `PANEL_TASKS` (configs/panel_*.yaml: convolutional, MLP, recurrent and attention
models; classification, regression and sequence tasks; budgets well above the search's), each with
``--set``-style ``overrides`` when given. A task whose data package or data is missing is skipped with one
warning line (`PanelWarning`) naming it and what is missing; the others go on.

**Each task** trains the rule and every baseline on evaluation seeds 0..n-1, paired (the same seeds give
every optimizer the same initial weights and batches, `child_tasks.reward`), each with its lr chosen
from the task's grid as in NOS (the rule with its record's other hyper-constants, as `transfer` does).
The value compared is the task's validation metric (accuracy, MSE, perplexity: what the task's users
read), the mean over the evaluation's training seeds; a seed on which a training ended early counts as
the worst value any optimizer reached on that task, so that a rule that diverges loses rather than
vanishes. Its direction comes from `child_tasks.config.higher_is_better`.

**A cell** (rule x task) compares the rule with the task's best baseline (the best mean): the gain is the
paired mean difference oriented so that positive is better, z is `child_tasks.compare.paired`'s, and the
outcome is a win (z >= 2 and gain > 0), a loss (z <= -2) or a tie (|z| < 2, or fewer than 2 seeds). The
normalised gain is the gain over the spread of the baselines' means on that task (best minus worst), so
that tasks of different metrics and scales average. The rule's gain and z against every baseline are kept
too. The summary counts wins, ties and losses, wins - losses, and the mean normalised gain.

**Scheduling.** Every task's trainings are queued together on one `search.workers.WorkerPool` whose
workers hold every task's data, through the `search.scheduling.Scheduler` that `compare_on_ray` uses, so
no worker waits at the end of one task while another still has work. **Baselines do not depend on the
rule**: each (task, baseline, seed) value is cached under ``child_tasks.config.cache_dir()/panel/``, keyed
by the task's `child_tasks.reward.fingerprint` (and its training seeds per evaluation), so a second rule's
panel trains only the rule. A damaged cache entry is trained again, with a warning.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import statistics
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

import discovered_rules
from child_tasks.compare import mean_std, paired
from child_tasks.config import TaskConfig, cache_dir, higher_is_better
from child_tasks.problems import load_data
from child_tasks.reward import evaluate, fingerprint, with_reference
from child_tasks.suite import Suite, load_suite
from child_tasks.train import resolve_optimizer
from configuration.files import json_safe, read_bounded, write_atomic
from discovered_rules import RuleRecord
from discovered_rules.records import write_record
from dsl import KNOWN_RULE_TEXT, RuleError, canonical_key, parse
from search.cluster import connect, disconnect, worker_options
from search.progress import ComparisonProgress
from search.results.comparison import ComparisonError, ComparisonWorker, Contender, contenders
from search.results.transfer import resolve_task
from search.scheduling import Scheduler
from search.workers import WorkerPool, _to_device

# configs/panel_*.yaml: a ConvNet on digits, MLPs on tabular classification and Friedman regression, LSTMs
# on the adding problem and on the temporal-order problem (four marks), and a Transformer language model on
# sentences that no translation task uses. No translation task: the only one shipped is the synthetic pair
# that the quickstart's funnel scores on.
PANEL_TASKS: tuple[str, ...] = ("panel_digits_cnn", "panel_tabular_mlp", "panel_friedman_mlp",
                                "panel_adding_lstm", "panel_order_lstm", "panel_lm_transformer")
PANEL_SEEDS = 5
PANEL_BASELINES = ("sgd", "momentum", "adam", "rmsprop", "lion")
SIGNIFICANT_Z = 2.0
MAX_CACHE_BYTES = 64 * 1024  # one cached value: a few hundred bytes
OUTCOMES = {"win": "W", "tie": "T", "loss": "L"}


class PanelWarning(UserWarning):
    """A panel task skipped (its data is missing) or a damaged cache entry trained again."""


@dataclass(frozen=True)
class PanelCell:
    """The rule against the baselines on one task (module docstring: gain, z, outcome, normalised gain).
    ``values``: label -> the validation metric per seed, the rule's first; ``against``: baseline ->
    {gain, z}; ``seconds``: worker-seconds of the trainings done for it (cached baselines cost none)."""

    task: str
    metric: str
    higher_is_better: bool
    rule: str
    values: dict[str, list[float]]
    means: dict[str, float]
    best_baseline: str
    gain: float
    z: float
    outcome: str
    spread: float
    normalised_gain: float
    against: dict[str, dict[str, float]]
    seconds: float = 0.0
    cached: list[str] = field(default_factory=list)


def score_cell(task: str, metric: str, higher: bool, rule: str, values: dict[str, Sequence[float | None]],
               *, seconds: float = 0.0, cached: Sequence[str] = ()) -> PanelCell:
    """The cell of ``rule`` against every other label of ``values`` (label -> metric per seed, None where
    a training ended early: the worst finite value of the cell stands in for it)."""
    finite = [v for vs in values.values() for v in vs if v is not None and math.isfinite(v)]
    worst = (min(finite) if higher else max(finite)) if finite else math.nan
    filled = {label: [worst if v is None or not math.isfinite(v) else float(v) for v in vs]
              for label, vs in values.items()}
    sign = 1.0 if higher else -1.0  # oriented so that positive is better
    means = {label: statistics.fmean(vs) for label, vs in filled.items()}
    baselines = [label for label in filled if label != rule]
    against = {}
    for name in baselines:
        gain, z = paired([sign * v for v in filled[rule]], [sign * v for v in filled[name]])
        against[name] = {"gain": gain, "z": z}
    best = max(baselines, key=lambda name: sign * means[name])
    gain, z = against[best]["gain"], against[best]["z"]
    spread = max(means[b] for b in baselines) - min(means[b] for b in baselines)
    return PanelCell(task, metric, higher, rule, filled, means, best, gain, z, outcome(gain, z), spread,
                     gain / spread if spread > 0 else math.nan, against, seconds, list(cached))


def outcome(gain: float, z: float) -> str:
    """win (z >= 2 with a positive gain), loss (z <= -2), else tie (a nan z, from one seed, too)."""
    if z >= SIGNIFICANT_Z and gain > 0:
        return "win"
    if z <= -SIGNIFICANT_Z:
        return "loss"
    return "tie"


def summarise(cells: Sequence[PanelCell]) -> dict[str, Any]:
    """Wins, ties and losses against each task's best baseline, wins - losses, the mean normalised gain
    (over the cells that have one: a task whose baselines all tie has no spread)."""
    counts = {kind: sum(c.outcome == kind for c in cells) for kind in OUTCOMES}
    normalised = [c.normalised_gain for c in cells if math.isfinite(c.normalised_gain)]
    return {"wins": counts["win"], "ties": counts["tie"], "losses": counts["loss"],
            "wins_minus_losses": counts["win"] - counts["loss"], "tasks": len(cells),
            "mean_normalised_gain": statistics.fmean(normalised) if normalised else math.nan}


@dataclass
class PanelResult:
    rule: str  # its label: a record's or reference rule's name, or rule_<key> for text
    text: str
    hyper: dict[str, float]
    seeds: list[int]
    baselines: list[str]
    cells: list[PanelCell]
    skipped: dict[str, str]  # task -> what is missing
    wall_s: float
    task_wall_s: dict[str, float]  # task -> seconds from its first training's start to its last's end
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # task key -> its config
    saved_to: list[Path] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        return summarise(self.cells)

    @property
    def label(self) -> str:
        """The rule's row: its name, or rule:NAME where a baseline has that name (rule adam, torch adam)."""
        return self.cells[0].rule if self.cells else self.rule

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (non-finite numbers as None): what the record's ``panel`` field holds."""
        return json_safe({"rule": self.rule, "text": self.text, "hyper": self.hyper, "seeds": self.seeds,
                          "baselines": self.baselines, "date": datetime.date.today().isoformat(),
                          "summary": self.summary, "wall_s": self.wall_s,
                          "tasks": {c.task: {**asdict(c), "wall_s": self.task_wall_s.get(c.task),
                                             "config": self.configs.get(c.task)} for c in self.cells},
                          "skipped": self.skipped})

    def to_rich(self) -> Any:
        from rich.table import Table

        table = Table(title=f"panel: {self.rule} against tuned {', '.join(self.baselines)} on seeds "
                      f"{self.seeds}")
        columns = ["task", "metric", self.label, *self.baselines, "best", "gain", "z", "W/T/L",
                   "norm. gain", "seconds"]
        for column in columns:
            table.add_column(column, justify="left" if column in ("task", "metric", "best") else "right")
        for row in self.rows():
            table.add_row(*row)
        table.caption = self.summary_line()
        return table

    def rows(self) -> list[list[str]]:
        """The table's cells as text, one row per task."""
        out = []
        for c in self.cells:
            values = [_pm(c.values[label]) for label in [c.rule, *self.baselines]]
            out.append([c.task, f"{c.metric} ({'higher' if c.higher_is_better else 'lower'} is better)",
                        *values, c.best_baseline, f"{c.gain:+.3g}", _z(c.z), OUTCOMES[c.outcome],
                        f"{c.normalised_gain:+.2f}", f"{self.task_wall_s.get(c.task, 0.0):.0f}"])
        return out

    def summary_line(self) -> str:
        s = self.summary
        skipped = f"; skipped: {', '.join(self.skipped)}" if self.skipped else ""
        return (f"against each task's best tuned baseline: {s['wins']} wins, {s['ties']} ties, {s['losses']} "
                f"losses (wins - losses {s['wins_minus_losses']:+d}); mean normalised gain "
                f"{s['mean_normalised_gain']:+.3f}; W/T/L at z >= 2 / |z| < 2 / z <= -2; panel wall time "
                f"{self.wall_s:.0f} s{skipped}")

    def __str__(self) -> str:
        header = ["task", "metric", self.label, *self.baselines, "best", "gain", "z", "W/T/L", "norm. gain",
                  "seconds"]
        rows = [header, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        return "\n".join([f"panel of {self.rule} over seeds {self.seeds}", *lines, self.summary_line()])


def _pm(values: Sequence[float]) -> str:
    mean, std = mean_std(list(values))
    return f"{mean:.4g} ± {std:.2g}"


def _z(z: float) -> str:
    return "n/a" if math.isnan(z) else f"{z:+.1f}"


# --- running -------------------------------------------------------------------------------------------

class PanelWorker(ComparisonWorker):
    """An evaluation worker that holds every panel task (each a suite of its own, since a panel's tasks
    are compared apart, never averaged) and evaluates one optimizer on one of them per call."""

    def __init__(self, panel: list[dict[str, Any]], data: list[Any], threads: int = 1,
                 time_limit_s: float | None = None) -> None:
        super().__init__(panel[0], data[:1], threads, time_limit_s)  # threads, device and id as any worker's
        self.panel = [load_suite(suite).tasks for suite in panel]
        self.panel_data = [self.data[0], *(_to_device(d, self.device) for d in data[1:])]

    def evaluate(self, job: tuple[int, str, dict[str, float]], seed: int) -> dict[str, Any]:  # type: ignore[override]
        """Train optimizer ``text`` with ``hyper`` on task ``index`` at ``seed``; never raises: the
        validation metric (None where a training ended early), or the traceback."""
        start = time.perf_counter()
        index, text, hyper = job
        try:
            result = evaluate(resolve_optimizer(text, hyper), self.panel[index], seed,
                              data=[self.panel_data[index]], threads=self.threads, device=self.device,
                              time_limit_s=self.time_limit_s)
        except Exception:  # returned: the driver reports it with this worker's traceback
            return {"status": "failed", "error": traceback.format_exc(), "worker": self.id,
                    "duration": time.perf_counter() - start}
        part = next(iter(result.tasks.values()))
        return {"status": result.status, "val_metric": None if part.diverged else part.val_metric,
                "lrs": [r.lr for r in part.results], "worker": self.id,
                "duration": time.perf_counter() - start}


@dataclass(frozen=True)
class _Task:
    key: str
    config: TaskConfig
    data: Any


@dataclass(frozen=True)
class _Job:
    task: int
    row: Contender
    seed: int


def cache_path(task: TaskConfig, baseline: str, seed: int) -> Path:
    """Where a baseline's value on ``task`` at evaluation seed ``seed`` is cached (module docstring)."""
    return (cache_dir() / "panel" / f"{fingerprint(task)}-k{task.seeds_per_evaluation}" / baseline
            / f"seed{seed}.json")


def read_cached(task: TaskConfig, baseline: str, seed: int) -> tuple[float | None, float] | None:
    """A cached baseline value (None: its training diverged) and the seconds its training took, or None
    when there is none; a damaged entry is reported (one line) and counts as none."""
    path = cache_path(task, baseline, seed)
    if not path.is_file():
        return None
    try:
        entry = json.loads(read_bounded(path, MAX_CACHE_BYTES, "panel cache entry"))
        value = entry["val_metric"]
        if entry.get("baseline") != baseline or entry.get("seed") != seed:
            raise ValueError("it holds another baseline or seed")
        if value is None and entry.get("status") == "diverged":
            pass  # the baseline's own outcome on this seed, as reproducible as a value
        elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"its value is {value!r}, not a number")
    except (OSError, ValueError, KeyError, TypeError) as err:
        warnings.warn(f"panel cache {path} is damaged ({' '.join(str(err).split())}); training {baseline} "
                      f"seed {seed} on {task.name or task.task} again", PanelWarning, stacklevel=2)
        return None
    took = entry.get("seconds")
    seconds = float(took) if isinstance(took, int | float) and not isinstance(took, bool) else 0.0
    return (None if value is None else float(value)), seconds


def _write_cached(task: TaskConfig, baseline: str, seed: int, value: float | None, seconds: float,
                  status: str = "ok") -> None:
    entry = {"task": task.name or task.task, "fingerprint": fingerprint(task), "baseline": baseline,
             "seed": seed, "seeds_per_evaluation": task.seeds_per_evaluation, "val_metric": value,
             "status": status, "seconds": seconds}
    try:  # a cache only: a read-only home must not end the panel
        write_atomic(json.dumps(json_safe(entry)) + "\n", cache_path(task, baseline, seed))
    except OSError as err:
        warnings.warn(f"could not cache a panel baseline at {cache_path(task, baseline, seed)}: {err}",
                      PanelWarning, stacklevel=2)


def load_panel(tasks: Sequence[str | TaskConfig] | None = None, overrides: Sequence[str] = ()
               ) -> tuple[list[_Task], dict[str, str]]:
    """The panel's tasks (`PANEL_TASKS` when None) with their data and current references, and the tasks
    left out (key -> what is missing): a task whose data package or data is missing, each with one
    `PanelWarning`."""
    out, skipped = [], {}
    configs = [(t, t.name or t.task) if isinstance(t, TaskConfig) else resolve_task(t, overrides)
               for t in (PANEL_TASKS if tasks is None else tasks)]  # every config read before any data
    for config, key in configs:
        try:
            data = load_data(config)
        except (ImportError, FileNotFoundError) as err:
            skipped[key] = " ".join(str(err).split())
            warnings.warn(f"panel task {key} skipped: {skipped[key]}", PanelWarning, stacklevel=2)
            continue
        out.append(_Task(key, with_reference(config, data=data), data))
    return out, skipped


def resolve_rule(name: str, text: str | None, directory: str | Path | None
                 ) -> tuple[str, str, dict[str, float], RuleRecord | None]:
    """(label, rule text, hyper-constants without lr, record or None) of a reference rule, a record, or
    rule text (labelled rule_<first 8 digits of its canonical key>, as `nos transfer` labels it)."""
    if text is not None:
        return name, text, {}, None
    if name in KNOWN_RULE_TEXT:
        return name, KNOWN_RULE_TEXT[name], {}, None
    folder = discovered_rules.folder(directory)
    if name in discovered_rules.names(folder):
        rec = discovered_rules.record(name, folder)
        return name, rec.rule, {k: v for k, v in rec.hyper.items() if k != "lr"}, rec
    try:
        rule = parse(name)
    except RuleError:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            discovered_rules.record(name, folder)  # an unknown name: UnknownRule with the close names
        raise
    return f"rule_{canonical_key(rule)[:8]}", name, {}, None


def run_panel(rule: str, *, text: str | None = None, seeds: int = PANEL_SEEDS,
              baselines: Sequence[str] = PANEL_BASELINES, tasks: Sequence[str | TaskConfig] | None = None,
              overrides: Sequence[str] = (), directory: str | Path | None = None,
              out: str | Path | None = None, save: bool = True, address: str | None = None,
              workers: int | None = None, max_retries: int = 2, progress: bool = True,
              console: Console | None = None) -> PanelResult:
    """The panel of ``rule`` (a reference rule, a record in ``directory``, rule text; with ``text``, that
    text labelled ``rule``) on ``tasks`` (default `PANEL_TASKS`; names, paths or TaskConfigs, names
    changed by ``overrides``), saved with the record or to ./panel_<label>.json or ``out`` (``save``).
    Raises UnknownRule, RuleError, ValueError (a bad baseline, no task left), ComparisonError (a training
    raised or its worker kept dying), ClusterError."""
    label, rule_text, hyper, rec = resolve_rule(rule, text, directory)
    seed_list = list(range(seeds))
    rows = contenders({label: rule_text}, list(baselines))
    rows[0] = Contender(rows[0].label, rows[0].optimizer, hyper)
    for row in rows:  # a bad name fails here, before any data is loaded
        resolve_optimizer(row.optimizer, row.hyper)
    panel, skipped = load_panel(tasks, overrides)
    if not panel:
        raise ValueError("no panel task is left to run (every one was skipped: see the warnings)")
    values: dict[tuple[int, str], list[float | None]] = {}
    hits: dict[tuple[int, str], int] = {}
    took: dict[int, list[float]] = {}  # the cached trainings' seconds per task: what a training there costs
    jobs = []
    for seed in seed_list:  # seed-major, every task at once: each task's tail overlaps the others' work
        for i, task in enumerate(panel):
            for row in rows:
                found = None if row is rows[0] else read_cached(task.config, row.label, seed)
                if found is not None:
                    values.setdefault((i, row.label), [None] * seeds)[seed] = found[0]
                    hits[i, row.label] = hits.get((i, row.label), 0) + 1
                    took.setdefault(i, []).append(found[1])
                else:
                    jobs.append(_Job(i, row, seed))
    # The costliest tasks first (as far as the cache knows; unknown ones count as costliest), so that the
    # last trainings to finish are short ones and no worker waits long for the others.
    jobs.sort(key=lambda job: -statistics.fmean(took[job.task]) if job.task in took else -math.inf)
    start = time.perf_counter()
    seconds, spans = _train(panel, jobs, values, seeds, address, workers, max_retries, progress, console,
                            f"panel of {label}")
    wall = time.perf_counter() - start
    cells = [score_cell(t.key, t.config.metric, higher_is_better(t.config.metric), rows[0].label,
                        {r.label: values[i, r.label] for r in rows}, seconds=seconds.get(i, 0.0),
                        cached=[r.label for r in rows if hits.get((i, r.label)) == seeds])
             for i, t in enumerate(panel)]
    result = PanelResult(label, rule_text, hyper, seed_list, list(baselines), cells, skipped, wall,
                         {panel[i].key: s for i, s in spans.items()},
                         {t.key: t.config.model_dump(mode="json") for t in panel})
    if save:
        result.saved_to = save_panel(result, rec, directory, out)
    return result


def _train(panel: list[_Task], jobs: list[_Job], values: dict[tuple[int, str], list[float | None]],
           seeds: int, address: str | None, workers: int | None, max_retries: int, progress: bool,
           console: Console | None, description: str) -> tuple[dict[int, float], dict[int, float]]:
    """Run ``jobs`` on one pool (module docstring) and fill ``values``; a baseline's value is cached as
    it arrives. Returns each task's worker-seconds and its span (first start to last end)."""
    import ray

    seconds: dict[int, float] = {}
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    if not jobs:
        return seconds, {}
    started = connect(address, num_cpus=workers or None)
    try:
        options = worker_options(workers, 1, 0.25)
        suites = [Suite(t.key, (t.config,)).to_mapping() for t in panel]
        pool = WorkerPool(min(options.workers, len(jobs)), options.ray_options, suites,  # type: ignore[arg-type]
                          ray.put([t.data for t in panel]), options.threads, None, PanelWorker)
        scheduler = Scheduler(pool, max_retries, describe=lambda j: f"{panel[j.task].key}: {j.row.label} "
                              f"seed {j.seed}",
                              on_submit=lambda j, _: first.setdefault(j.task, time.perf_counter()))
        for job in jobs:
            scheduler.add(job, (job.task, job.row.optimizer, dict(job.row.hyper)), job.seed)
        bar = ComparisonProgress(len(jobs), description, progress, console)
        try:
            with bar:
                while scheduler.under_way:
                    scheduler.feed()
                    for done in scheduler.collect():
                        _finish(done, panel, values, seeds, seconds, scheduler.describe(done.tag))
                        last[done.tag.task] = time.perf_counter()
                        bar.update(advance=1, last=f"{scheduler.describe(done.tag)}")
        finally:
            pool.shutdown()
    finally:
        disconnect(started)
    return seconds, {i: last[i] - first[i] for i in last if i in first}


def _finish(done: Any, panel: list[_Task], values: dict[tuple[int, str], list[float | None]], seeds: int,
            seconds: dict[int, float], where: str) -> None:
    job: _Job = done.tag
    if done.crashed is not None:
        raise ComparisonError(f"{where}: the worker process died on each of {done.attempts} attempts; "
                              f"last: {done.crashed}")
    if done.result["status"] == "failed":
        raise ComparisonError(f"{where} raised on worker {done.worker}:\n{done.result['error']}")
    value = done.result["val_metric"]
    values.setdefault((job.task, job.row.label), [None] * seeds)[job.seed] = value
    seconds[job.task] = seconds.get(job.task, 0.0) + (done.result["duration"] or 0.0)
    # A baseline is the same on every rule's panel. One that diverged is cached as such (it diverges again
    # on the same seed); one stopped by a time limit (a busy machine, say) or an error is not, so that the
    # next panel tries it again.
    status = done.result["status"]
    if job.row.optimizer.startswith("torch:") and (value is not None or status == "diverged"):
        _write_cached(panel[job.task].config, job.row.label, job.seed, value, done.result["duration"] or 0.0,
                      "ok" if value is not None else status)


def save_panel(result: PanelResult, rec: RuleRecord | None, directory: str | Path | None,
               out: str | Path | None) -> list[Path]:
    """Store the panel in the record's ``panel`` field, and (for a rule without a record, or with
    ``out``) in a JSON file: ``out`` or ./panel_<label>.json."""
    document = result.to_json()
    saved = []
    if rec is not None:
        folder = discovered_rules.folder(directory)
        updated = RuleRecord.model_validate({**rec.model_dump(), "panel": document})
        saved.append(write_record(updated, folder / f"{rec.name}.json"))
    if rec is None or out is not None:
        path = Path(out) if out is not None else Path.cwd() / f"panel_{result.rule}.json"
        write_atomic(json.dumps(document, indent=2) + "\n", path)
        saved.append(path)
    return saved
