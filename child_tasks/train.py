"""Train a child network with a rule or a baseline optimizer: the reward of a candidate.

`train(rule_or_baseline, task, seed)` follows NOS's protocol:

1. every lr of the config's grid gets a short run, all from the same initial weights and batch order;
2. the lr whose short run scores best by the task's reward kind is continued, not restarted, to the full
   budget: the validation metric (in its direction, `child_tasks.config.higher_is_better`) with ties
   broken by validation loss (``reward: accuracy``, NOS's), the
   validation loss (``val_loss``), or the mean training loss so far (``train_loss``);
3. the result holds the validation metric (the reward), the test metric (for reporting only), the
   per-epoch curves, the chosen lr and the short-run score of every lr tried.

A rule can never crash the caller: a non-finite loss or weight, a loss above ``blowup_factor`` times the
run's first loss, an exception raised by the optimizer, or the evaluation's wall-time limit ends that run
early with reward 0 and a reason. Accuracy (percent) and BLEU (as sacrebleu gives it) are on a 0-100
scale, so rewards of different tasks read alike; `TrainResult.val_metric` is always the task's metric,
also where it is lower-is-better (mse, perplexity: held-out panel tasks, whose reward is a loss).

Same rule, seed and config give the same result on CPU: the model's initialisation, the batch order
(an index permutation from a seeded generator), augmentation and the rule's random operands all come
from the seed. Data stays in memory as tensors; batches are index slices, no DataLoader.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from child_tasks.config import TaskConfig, higher_is_better, load_task_config
from child_tasks.optimizers import BASELINES, OptimizerSpec, resolve_optimizer
from child_tasks.problems import Problem, make_problem
from configuration.files import json_safe
from dsl import Rule

__all__ = ["BASELINES", "LrTrial", "OptimizerSpec", "TrainResult", "resolve_optimizer", "train"]


@dataclass
class LrTrial:
    """One lr's short run: its score (the validation metric, 0 when it failed) and why it failed."""
    lr: float
    score: float
    val_loss: float | None
    status: str
    reason: str | None = None


@dataclass
class TrainResult:
    """The outcome of one evaluation: lr grid, then the chosen lr's run to the full budget."""
    optimizer: str  # label: the baseline's or known rule's name, or the rule text
    task: str
    seed: int
    metric: str  # "accuracy" (percent), "bleu", "mse" or "perplexity" (child_tasks.config.HIGHER_IS_BETTER)
    val_metric: float  # the task's validation metric (the reward of `reward: accuracy`); when the run ended,
    # the metric's worst value: 0 (higher is better) or inf (lower is better: mse, perplexity)
    test_metric: float
    lr: float | None  # the chosen lr; None when every lr of the grid failed
    lr_trials: list[LrTrial]
    train_loss: list[float]  # mean training loss of each completed epoch of the chosen run
    val_curve: list[float]  # validation metric at the end of each completed epoch
    steps: int  # optimizer steps of the chosen run
    total_steps: int  # all steps, every lr's short run included
    wall_time: float
    status: str = "ok"  # ok, diverged (NaN/Inf or loss blow-up), timeout, error (the optimizer raised)
    reason: str | None = None
    val_loss: float | None = None  # the final validation loss
    mean_train_loss: float | None = None  # over every step of the chosen run: the training-loss curve's area
    diverged: bool = field(init=False)  # ended early for any of those reasons: the reward is 0

    def __post_init__(self) -> None:
        self.diverged = self.status != "ok"

    @property
    def reward(self) -> float:
        return 0.0 if self.diverged else self.val_metric

    @property
    def lr_scores(self) -> dict[float, float]:
        return {t.lr: t.score for t in self.lr_trials}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (non-finite numbers become None)."""
        return json_safe(asdict(self))


class _RunEnded(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass
class _Run:
    """Everything one lr's training needs to pause after its short run and be continued exactly."""
    lr: float
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    generator: torch.Generator  # batch order and augmentation
    device: torch.device
    rng_state: list[torch.Tensor]  # the global RNG between phases: dropout, and the rule's noise and drop
    step: int = 0
    order: torch.Tensor | None = None
    first_loss: float | None = None
    epoch_loss: float = 0.0
    loss_sum: float = 0.0  # every step's training loss: their mean is the area under the curve
    train_loss: list[float] = field(default_factory=list)
    val_curve: list[float] = field(default_factory=list)
    last_eval: tuple[int, float, float] | None = None  # (step, metric, loss)


@dataclass(frozen=True)
class _Plan:
    config: TaskConfig
    steps_per_epoch: int
    total_steps: int
    short_steps: int
    deadline: float
    time_limit_s: float | None


def train(rule_or_baseline: Rule | str | OptimizerSpec, task: TaskConfig | str | Path, seed: int = 0, *,
          data: Any = None, threads: int | None = 1, device: str | torch.device = "cpu",
          time_limit_s: float | None = None, hyper: Mapping[str, float] | None = None,
          lr_grid: list[float] | None = None, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train ``rule_or_baseline`` on ``task`` with NOS's lr choice, and score it.

    Args:
        rule_or_baseline: a dsl Rule, a known rule's name, rule text, or a torch baseline name
            (see BASELINES; ``rule:NAME`` / ``torch:NAME`` pick between the two where both exist).
        task: a TaskConfig, a config name (configs/NAME.yaml) or a path.
        seed: initial weights, batch order, augmentation and random operands.
        data: an ImageData / TranslationData to use instead of loading the config's.
        threads: torch threads during the run (1 for search workers; None leaves torch's setting).
        time_limit_s: wall-time limit of the whole evaluation; the config's when None.
        hyper: hyper-constants of a rule (beta1, eps, ...).
        lr_grid: overrides the config's grid (one value: no short runs, straight to the full budget).
    """
    spec = resolve_optimizer(rule_or_baseline, hyper)
    config = task if isinstance(task, TaskConfig) else load_task_config(task)
    device = torch.device(device)
    with _torch_settings(threads, device):
        problem = make_problem(config, device, data)
        start = time.perf_counter()
        limit = time_limit_s if time_limit_s is not None else config.time_limit_s
        spe = max(1, problem.n_train // config.batch_size)  # whole batches only: batch norm sees equal sizes
        total = spe * config.epochs
        plan = _Plan(config, spe, total, min(total, max(1, round(config.short_run_epochs * spe))),
                     start + limit if limit is not None else math.inf, limit)
        grid = list(lr_grid if lr_grid is not None else config.lr_grid)
        if not grid or not all(lr > 0 for lr in grid):
            raise ValueError(f"the lr grid must hold positive learning rates, got {grid}")
        result = _evaluate(spec, problem, plan, grid, seed, device, log or (lambda _msg: None))
        result.wall_time = time.perf_counter() - start
        return result


def _evaluate(spec: OptimizerSpec, problem: Problem, plan: _Plan, grid: list[float], seed: int,
              device: torch.device, log: Callable[[str], None]) -> TrainResult:
    config = plan.config
    trials: list[LrTrial] = []
    best: tuple[tuple[float, float], _Run] | None = None
    steps_done = 0
    ended: _RunEnded | None = None
    for lr in grid:
        run = None
        try:
            run = _new_run(spec, problem, plan, lr, seed, device)
            if len(grid) > 1:  # a grid of one lr needs no short run to choose it
                _advance(run, problem, plan, plan.short_steps)
                metric, loss = _score(run, problem, plan)
                trials.append(LrTrial(lr, metric, loss, "ok"))
                log(f"{spec.label} lr={lr:g}: short-run {config.metric} {metric:.2f}, val loss {loss:.4f}")
                key = _choice_key(run, config, metric, loss)
                if best is None or key > best[0]:
                    best = (key, run)  # the run itself: the winner continues from here
            else:
                trials.append(LrTrial(lr, math.nan, None, "ok"))
                best = ((0.0, 0.0), run)
        except _RunEnded as end:
            trials.append(LrTrial(lr, 0.0, None, end.status, end.reason))
            log(f"{spec.label} lr={lr:g}: {end.status}: {end.reason}")
            if end.status == "timeout":
                ended = end
        finally:
            steps_done += run.step if run is not None else 0
        if ended is not None:
            break
    if ended is None and best is None:
        reasons = "; ".join(f"lr={t.lr:g}: {t.reason}" for t in trials)
        ended = _RunEnded(trials[0].status, f"every lr of the grid failed ({reasons})")

    run = best[1] if best is not None else None
    if ended is None:
        before = run.step
        try:
            _advance(run, problem, plan, plan.total_steps)
            val_metric, _ = _score(run, problem, plan)
            test_metric, _ = problem.evaluate(run.model, "test", config.metric)
        except _RunEnded as end:
            ended = end
        steps_done += run.step - before
    if len(grid) == 1 and run is not None:  # no short run: the one lr's record is the run's outcome
        if ended is None:
            trials[0] = LrTrial(run.lr, val_metric, run.last_eval[2] if run.last_eval else None, "ok")
        else:
            trials[0] = LrTrial(run.lr, 0.0, None, ended.status, ended.reason)
    if ended is not None:  # the metric's worst value: 0 where higher is better, inf where lower is
        val_metric = test_metric = 0.0 if higher_is_better(config.metric) else math.inf
    return TrainResult(
        optimizer=spec.label, task=config.name or config.task, seed=seed, metric=config.metric,
        val_metric=val_metric, test_metric=test_metric, lr=run.lr if run is not None else None,
        lr_trials=trials, train_loss=run.train_loss if run else [], val_curve=run.val_curve if run else [],
        steps=run.step if run else 0, total_steps=steps_done, wall_time=0.0,
        status=ended.status if ended else "ok", reason=ended.reason if ended else None,
        val_loss=None if ended or not run.last_eval else run.last_eval[2],
        mean_train_loss=None if ended or not run.step else run.loss_sum / run.step)


def _choice_key(run: _Run, config: TaskConfig, metric: float, loss: float) -> tuple[float, ...]:
    """How an lr's short run ranks (higher is better): by the quantity ``config``'s reward is made of, so
    that the lr chosen is the one the reward favours."""
    reward = config.reward
    if reward == "train_loss":
        return (-run.loss_sum / max(1, run.step),)
    if reward == "val_loss":
        return (-loss,)
    return (metric if higher_is_better(config.metric) else -metric, -loss)


def _new_run(spec: OptimizerSpec, problem: Problem, plan: _Plan, lr: float, seed: int,
             device: torch.device) -> _Run:
    # Every lr starts from the same weights and sees the same batches: only the lr differs.
    torch.manual_seed(seed)
    model = problem.build_model().to(device)
    try:
        optimizer = spec.make(list(model.parameters()), lr, plan.config.weight_decay, plan.total_steps)
    except Exception as err:  # (a rule's optimizer failing to build is the rule's fault)
        raise _RunEnded("error", f"building the optimizer failed: {type(err).__name__}: {err}") from err
    scheduler = None
    if plan.config.lr_schedule == "cosine":
        total = plan.total_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))
    generator = torch.Generator().manual_seed(seed)
    return _Run(lr, model, optimizer, scheduler, generator, device, _get_rng(device))


def _advance(run: _Run, problem: Problem, plan: _Plan, until: int) -> None:
    """Train ``run`` up to step ``until``, recording each epoch's mean loss and validation metric."""
    config, spe = plan.config, plan.steps_per_epoch
    _set_rng(run.device, run.rng_state)
    try:
        while run.step < until:
            pos = run.step % spe
            if pos == 0:
                run.order = torch.randperm(problem.n_train, generator=run.generator)
                run.epoch_loss = 0.0
            index = run.order[pos * config.batch_size:(pos + 1) * config.batch_size]
            try:
                loss = problem.loss(run.model, index, run.generator)
                value = loss.item()
                _check_loss(run, value, config.blowup_factor)
                run.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                run.optimizer.step()
                if run.scheduler is not None:
                    run.scheduler.step()
            except _RunEnded:
                raise
            except Exception as err:  # (whatever a rule does, the search goes on)
                raise _RunEnded("error", f"step {run.step + 1} raised {type(err).__name__}: {err}") from err
            run.step += 1
            run.epoch_loss += value
            run.loss_sum += value
            if run.step % spe == 0:
                run.train_loss.append(run.epoch_loss / spe)
                run.val_curve.append(_score(run, problem, plan)[0])
            if time.perf_counter() > plan.deadline:
                raise _RunEnded("timeout", f"the evaluation's time limit of {plan.time_limit_s:g}s ran out "
                                f"at step {run.step} (lr={run.lr:g})")
    finally:
        run.rng_state = _get_rng(run.device)


def _check_loss(run: _Run, value: float, factor: float) -> None:
    if not math.isfinite(value):
        raise _RunEnded("diverged", f"loss is {value} at step {run.step + 1} (lr={run.lr:g})")
    if run.first_loss is None:
        run.first_loss = value
    elif run.first_loss > 0 and value > factor * run.first_loss:
        raise _RunEnded("diverged", f"loss blew up: {value:.4g} at step {run.step + 1} is more than "
                        f"{factor:g} x the first loss {run.first_loss:.4g} (lr={run.lr:g})")


def _score(run: _Run, problem: Problem, plan: _Plan) -> tuple[float, float]:
    """Validation (metric, loss) at the current step; a non-finite weight or loss ends the run."""
    if run.last_eval is not None and run.last_eval[0] == run.step:
        return run.last_eval[1], run.last_eval[2]
    for p in run.model.parameters():
        if not bool(torch.isfinite(p).all()):
            raise _RunEnded("diverged", f"non-finite weights after step {run.step} (lr={run.lr:g})")
    try:
        metric, loss = problem.evaluate(run.model, "val", plan.config.metric)
    except Exception as err:
        raise _RunEnded("error", f"evaluation after step {run.step} raised {type(err).__name__}: "
                        f"{err}") from err
    if not math.isfinite(loss):
        raise _RunEnded("diverged", f"validation loss is {loss} after step {run.step} (lr={run.lr:g})")
    run.last_eval = (run.step, metric, loss)
    return metric, loss


@contextlib.contextmanager
def _torch_settings(threads: int | None, device: torch.device) -> Iterator[None]:
    """Threads and deterministic algorithms for the run; the caller's settings and RNG are restored."""
    previous = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            if threads:
                torch.set_num_threads(threads)
            # warn_only: an op without a deterministic kernel (some CUDA ones) warns instead of failing.
            torch.use_deterministic_algorithms(True, warn_only=True)
            yield
        finally:
            torch.set_num_threads(previous[0])
            torch.use_deterministic_algorithms(previous[1], warn_only=previous[2])


def _get_rng(device: torch.device) -> list[torch.Tensor]:
    states = [torch.get_rng_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return states


def _set_rng(device: torch.device, states: list[torch.Tensor]) -> None:
    torch.set_rng_state(states[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(states[1], device)
