"""Train many candidates at once: K child networks with K rules in one process, as one batched program.

`train_batch(optimizers, task, seed)` gives for each optimizer the `TrainResult` of
``train(optimizer, task, seed)``, within float tolerance, at a fraction of the cost where one small network
cannot fill the device (a GPU running NOS's ConvNet at batch 100 mostly waits on kernel launches).

**How.** Every (optimizer, lr) pair of NOS's protocol (child_tasks/train.py) is one model. All start from
the same weights and see the same batches: K copies of one network, whose parameters are the rows of one
flat tensor (K, N). Forward and backward run once for all: `torch.func.functional_call` under `vmap` over
the stacked parameters and buffers (batch norm's statistics too), the batch shared. Each model is then
stepped by its own optimizer (`OptimizerSpec.make`, as alone: a RuleOptimizer built once per model, or a
torch baseline) over views of its row. The lr grid's short runs train side by side; each optimizer's best
lr continues to the full budget, the others leave the stack.

**As alone.** The lr choice, guards, curves, statuses and reasons are train.py's: each model keeps its own
first loss, sums, curves, LR scheduler and global-RNG stream (noise and drop draw what they would alone).
A model whose loss or weights go non-finite, whose loss blows up or whose optimizer raises ends as alone
and leaves the stack before the next step: it never disturbs the others. A time limit applies to each
evaluation, charged its share of the shared forward, backward and evaluation time plus its own optimizer
steps; at a timeout every lr still running is recorded as timed out (alone, later lrs would not have
started). Batched kernels round differently, so an lr choice between nearly tied short runs may differ.

**Limits.** Image tasks whose network draws no random numbers in its forward pass are batched (ConvNet,
ConvNet1D, MLP, Wide ResNet without dropout); others (translation, dropout) are trained one at a time by
`train`. ``max_models`` caps the models stacked at once: larger batches are split into groups of whole
evaluations, as is a group that runs out of device memory (halved and retried from scratch: results do not
depend on the grouping); a single evaluation that does not fit is trained alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from child_tasks.config import TaskConfig, load_task_config
from child_tasks.optimizers import OptimizerSpec, resolve_optimizer
from child_tasks.problems import ImageProblem, make_problem
from child_tasks.train import (LrTrial, TrainResult, _check_loss, _choice_key, _get_rng, _Plan, _Run,
                               _RunEnded, _set_rng, _torch_settings, train)
from dsl import Rule

__all__ = ["batchable", "train_batch"]

Optimizer = Rule | str | OptimizerSpec


def train_batch(optimizers: Sequence[Optimizer], task: TaskConfig | str | Path, seed: int | Sequence[int] = 0,
                *, data: Any = None, threads: int | None = 1, device: str | torch.device = "cpu",
                time_limit_s: float | None = None, hyper: Mapping[str, float] | None = None,
                lr_grid: list[float] | None = None, max_models: int | None = None, split_on_oom: bool = True,
                log: Callable[[str], None] | None = None) -> list[TrainResult]:
    """`train` for each of ``optimizers``, batched (module docstring); one result per optimizer, in order.

    ``seed`` is one training seed for all, or one per optimizer (optimizers sharing a seed are batched
    together). ``max_models`` caps the models (optimizers x lrs) stacked at once; None: no cap beyond
    device memory; ``split_on_oom=False`` lets torch.OutOfMemoryError through instead of halving the group
    (to measure the largest batch that fits). The other arguments are `train`'s. Every optimizer is
    resolved before anything is trained: an unknown name or invalid rule text raises ValueError naming it,
    and nothing is lost.
    """
    if max_models is not None and max_models < 1:
        raise ValueError(f"max_models must be at least 1, got {max_models}")
    specs = []
    for i, opt in enumerate(optimizers):
        try:
            specs.append(resolve_optimizer(opt, hyper))
        except (TypeError, ValueError) as err:
            raise ValueError(f"optimizer {i} of the batch ({opt!r}): {err}") from err
    seeds = [seed] * len(specs) if isinstance(seed, int) else list(seed)
    if len(seeds) != len(specs):
        raise ValueError(f"{len(seeds)} seeds for {len(specs)} optimizers: give one seed, or one per "
                         "optimizer")
    config = task if isinstance(task, TaskConfig) else load_task_config(task)
    grid = list(lr_grid if lr_grid is not None else config.lr_grid)
    if not grid or not all(lr > 0 for lr in grid):
        raise ValueError(f"the lr grid must hold positive learning rates, got {grid}")
    args = dict(data=data, threads=threads, device=device, time_limit_s=time_limit_s, lr_grid=grid,
                log=log)
    if not specs:
        return []
    if not batchable(config):
        return [train(spec, config, s, **args) for spec, s in zip(specs, seeds, strict=True)]
    results: list[TrainResult | None] = [None] * len(specs)
    per_group = len(specs) if max_models is None else max(1, max_models // len(grid))
    for s in dict.fromkeys(seeds):
        chosen = [i for i, x in enumerate(seeds) if x == s]
        for lo in range(0, len(chosen), per_group):
            group = chosen[lo:lo + per_group]
            trained = _train_group([specs[i] for i in group], config, s, args, split_on_oom)
            for i, result in zip(group, trained, strict=True):
                results[i] = result
    return results  # type: ignore[return-value]


def batchable(config: TaskConfig) -> bool:
    """Whether `train_batch` batches ``config``'s trainings (else it trains them one at a time): image
    classification only (the held-out panel's tabular, regression, adding, order and lm tasks are trained
    alone)."""
    return config.task in ("digits", "mnist1d", "cifar10") and not getattr(config.model, "dropout", 0.0)


def _train_group(specs: list[OptimizerSpec], config: TaskConfig, seed: int, args: dict[str, Any],
                 split: bool = True) -> list[TrainResult]:
    """One batched training; halved and retried while it runs out of device memory."""
    try:
        return _Batch(specs, config, seed, **args).run()
    except torch.OutOfMemoryError:
        if not split:
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(specs) == 1:  # alone, as train would: its guards record what happens
            return [train(specs[0], config, seed, **args)]
        half = len(specs) // 2
        return (_train_group(specs[:half], config, seed, args)
                + _train_group(specs[half:], config, seed, args))


@dataclass
class _Member(_Run):
    """One (optimizer, lr) model of the stack: train.py's run record (its ``model`` unused: the model is
    a row of the stack) and the evaluation it belongs to."""
    evaluation: int = 0
    params: list[torch.Tensor] = field(default_factory=list)  # views of the row, the optimizer's params
    ended: _RunEnded | None = None
    draws: bool | None = None  # whether its optimizer draws from the global RNG (known after step 1)


@dataclass
class _Evaluation:
    spec: OptimizerSpec
    members: list[_Member] = field(default_factory=list)
    charged: float = 0.0  # seconds of the batch's time that are this evaluation's
    timeout: _RunEnded | None = None
    trials: list[LrTrial] = field(default_factory=list)  # after the short runs
    best: _Member | None = None  # the lr that continues


class _Batch:
    """The stacked models of one group of evaluations, and NOS's protocol over them."""

    def __init__(self, specs: list[OptimizerSpec], config: TaskConfig, seed: int, *, data: Any,
                 threads: int | None, device: str | torch.device, time_limit_s: float | None,
                 lr_grid: list[float], log: Callable[[str], None] | None) -> None:
        self.specs, self.config, self.seed, self.data, self.threads = specs, config, seed, data, threads
        self.device, self.grid, self.log = torch.device(device), lr_grid, log or (lambda _msg: None)
        self.limit = time_limit_s if time_limit_s is not None else config.time_limit_s

    def run(self) -> list[TrainResult]:
        with _torch_settings(self.threads, self.device):
            start = time.perf_counter()
            self.problem = problem = make_problem(self.config, self.device, self.data)
            if not isinstance(problem, ImageProblem):
                raise TypeError(f"batched training takes image tasks, not {self.config.task!r}")
            spe = max(1, problem.n_train // self.config.batch_size)
            total = spe * self.config.epochs
            short = min(total, max(1, round(self.config.short_run_epochs * spe)))
            self.plan = _Plan(self.config, spe, total, short, math.inf, self.limit)
            torch.manual_seed(self.seed)  # as train: every run starts from these weights and this RNG state
            self.model = problem.build_model().to(self.device)
            rng = _get_rng(self.device)
            self.generator = torch.Generator().manual_seed(self.seed)  # batch order and augmentation: shared
            self.evals = [_Evaluation(spec) for spec in self.specs]
            members = [_Member(lr, None, None, None, self.generator, self.device, rng, evaluation=e)  # type: ignore[arg-type]
                       for e in range(len(self.evals)) for lr in self.grid]
            for m in members:
                self.evals[m.evaluation].members.append(m)
            self._stack(members, fresh=True)
            self._charge(time.perf_counter() - start, members)
            if len(self.grid) > 1:
                self._advance(self.plan.short_steps)
                self._score(self.active)
                self._choose()
            self._advance(self.plan.total_steps)
            finals = self._score(self.active)
            done = [m for m in self.active if m.ended is None]
            tests = self._evaluate(done, "test") if done else {}
            return [self._result(ev, finals, tests) for ev in self.evals]

    # --- the stack ---------------------------------------------------------------------------------------

    def _stack(self, members: list[_Member], fresh: bool = False) -> None:
        """Make ``members`` the stack's rows: (re)build the flat parameter tensor and the buffers, and point
        each optimizer at its row (building it the first time)."""
        named = list(self.model.named_parameters())
        self.layout = []
        offset = 0
        for name, p in named:
            self.layout.append((name, offset, offset + p.numel(), p.shape))
            offset += p.numel()
        if fresh:
            row = torch.cat([p.detach().reshape(-1) for _, p in named])
            flat = row.repeat(len(members), 1)
            buffers = {n: b.detach().unsqueeze(0).repeat(len(members), *[1] * b.dim())
                       for n, b in self.model.named_buffers()}
        else:
            keep = torch.tensor([self.row[id(m)] for m in members], dtype=torch.long, device=self.device)
            flat = self.flat.detach().index_select(0, keep)
            buffers = {n: b.index_select(0, keep) for n, b in self.buffers.items()}
        self.flat = flat.requires_grad_()
        self.flat.grad = torch.zeros_like(flat)
        self.buffers = buffers
        self.row = {id(m): i for i, m in enumerate(members)}
        data, grad = self.flat.detach(), self.flat.grad
        for i, m in enumerate(members):
            old = m.params
            m.params = [data[i, a:b].view(shape) for _, a, b, shape in self.layout]
            for p, (_, a, b, shape) in zip(m.params, self.layout, strict=True):
                p.grad = grad[i, a:b].view(shape)
            if m.optimizer is None:
                self._build(m)
            else:
                _rebind(m.optimizer, old, m.params)
        self.active = [m for m in members if m.ended is None]
        if len(self.active) < len(members):  # an optimizer failed to build
            self._stack(self.active)

    def _build(self, m: _Member) -> None:
        spec, plan = self.evals[m.evaluation].spec, self.plan
        try:
            m.optimizer = spec.make(m.params, m.lr, plan.config.weight_decay, plan.total_steps)
        except Exception as err:  # (a rule's optimizer failing to build is the rule's fault)
            m.ended = _RunEnded("error", f"building the optimizer failed: {type(err).__name__}: {err}")
            return
        if plan.config.lr_schedule == "cosine":
            total = plan.total_steps
            m.scheduler = torch.optim.lr_scheduler.LambdaLR(
                m.optimizer, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))

    def _params(self, detach: bool = False) -> dict[str, torch.Tensor]:
        flat = self.flat.detach() if detach else self.flat
        return {name: flat[:, a:b].view(len(flat), *shape) for name, a, b, shape in self.layout}

    def _drop_ended(self) -> None:
        if any(m.ended is not None for m in self.active):
            self._stack([m for m in self.active if m.ended is None])

    # --- training ----------------------------------------------------------------------------------------

    def _advance(self, until: int) -> None:
        """Train every active model up to step ``until``: train.py's `_advance`, all models at once."""
        config, spe, problem = self.config, self.plan.steps_per_epoch, self.problem
        x, y = problem.splits["train"]
        model = self.model

        def loss(params: dict, buffers: dict, batch: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(functional_call(model, (params, buffers), (batch,)), target)

        losses_of = vmap(loss, in_dims=(0, 0, None, None))
        while self.active and self.active[0].step < until:
            begin = time.perf_counter()
            step = self.active[0].step  # every active model is at the same step
            pos = step % spe
            if pos == 0:
                self.order = torch.randperm(problem.n_train, generator=self.generator)
                for m in self.active:
                    m.epoch_loss = 0.0
            index = self.order[pos * config.batch_size:(pos + 1) * config.batch_size].to(x.device)
            batch = x[index]
            if problem.augment:
                from child_tasks.datasets import augment_batch

                batch = augment_batch(batch, self.generator)
            self.flat.grad.zero_()
            losses = losses_of(self._params(), self.buffers, batch, y[index])
            values = losses.tolist()
            ok = []
            for i, (m, value) in enumerate(zip(self.active, values, strict=True)):
                try:
                    _check_loss(m, value, config.blowup_factor)
                    ok.append(i)
                except _RunEnded as end:
                    m.ended = end
            if ok:
                chosen = losses if len(ok) == len(values) else losses[torch.tensor(ok, device=losses.device)]
                chosen.sum().backward()
            stepping = [self.active[i] for i in ok]
            self._charge(time.perf_counter() - begin, self.active)
            for i in ok:
                m = self.active[i]
                begin = time.perf_counter()
                self._step(m)
                if m.ended is None:
                    m.step += 1
                    m.epoch_loss += values[i]
                    m.loss_sum += values[i]
                self._charge(time.perf_counter() - begin, [m])
            if (step + 1) % spe == 0:
                done = [m for m in stepping if m.ended is None]
                for m in done:
                    m.train_loss.append(m.epoch_loss / spe)
                scores = self._score(done)
                for m in done:
                    if m.ended is None:
                        m.val_curve.append(scores[id(m)][0])
            self._check_time(stepping)
            self._drop_ended()

    def _step(self, m: _Member) -> None:
        """Model ``m``'s optimizer step, with its own global-RNG stream (only if it draws from it)."""
        try:
            if m.draws is not False:
                _set_rng(self.device, m.rng_state)
            m.optimizer.step()
            if m.scheduler is not None:
                m.scheduler.step()
            if m.draws is not False:
                after = _get_rng(self.device)
                if m.draws is None:
                    m.draws = not all(torch.equal(a, b) for a, b in zip(after, m.rng_state, strict=True))
                m.rng_state = after
        except Exception as err:  # (whatever a rule does, the search goes on)
            m.ended = _RunEnded("error", f"step {m.step + 1} raised {type(err).__name__}: {err}")

    def _check_time(self, members: list[_Member]) -> None:
        if self.limit is None:
            return
        for ev in {m.evaluation: self.evals[m.evaluation] for m in members}.values():
            running = [m for m in ev.members if m.ended is None]
            if ev.timeout is None and running and ev.charged > self.limit:
                first = running[0]
                ev.timeout = _RunEnded("timeout", f"the evaluation's time limit of {self.limit:g}s ran out "
                                       f"at step {first.step} (lr={first.lr:g}; its share of a batch of "
                                       f"{len(self.active)} models)")
                for m in running:
                    m.ended = ev.timeout

    def _charge(self, seconds: float, members: list[_Member]) -> None:
        for m in members:
            self.evals[m.evaluation].charged += seconds / len(members)

    # --- scoring -----------------------------------------------------------------------------------------

    def _score(self, members: list[_Member]) -> dict[int, tuple[float, float]]:
        """train.py's `_score` for each of ``members``: validation (metric, loss) at its step; a model
        with non-finite weights or loss, or whose evaluation raises, ends."""
        begin = time.perf_counter()
        out: dict[int, tuple[float, float]] = {}
        todo = []
        for m in members:
            if m.last_eval is not None and m.last_eval[0] == m.step:
                out[id(m)] = m.last_eval[1], m.last_eval[2]
            elif m.ended is None:
                todo.append(m)
        if todo:
            rows = torch.tensor([self.row[id(m)] for m in todo], dtype=torch.long, device=self.device)
            finite = torch.isfinite(self.flat.detach().index_select(0, rows)).all(1).tolist()
            for m, ok in zip(todo, finite, strict=True):
                if not ok:
                    m.ended = _RunEnded("diverged", f"non-finite weights after step {m.step} (lr={m.lr:g})")
            todo = [m for m in todo if m.ended is None]
            try:
                scores = self._evaluate(todo, "val")
            except Exception as err:
                scores = {}
                for m in todo:
                    m.ended = _RunEnded("error", f"evaluation after step {m.step} raised "
                                        f"{type(err).__name__}: {err}")
            for m in todo:
                if m.ended is not None:
                    continue
                metric, loss = scores[id(m)]
                if not math.isfinite(loss):
                    m.ended = _RunEnded("diverged", f"validation loss is {loss} after step {m.step} "
                                        f"(lr={m.lr:g})")
                    continue
                m.last_eval = (m.step, metric, loss)
                out[id(m)] = metric, loss
            self._charge(time.perf_counter() - begin, todo)
        return out

    @torch.no_grad()
    def _evaluate(self, members: list[_Member], split: str) -> dict[int, tuple[float, float]]:
        """ImageProblem.evaluate for each of ``members``, batched: (metric, mean loss) on ``split``."""
        x, y = self.problem.splits[split]
        step = self.config.eval_batch_size
        # Models per pass: no more inputs at once than a training step holds.
        group = max(1, len(self.active) * self.config.batch_size // step)
        model = self.model

        def sums(params: dict, buffers: dict, batch: torch.Tensor, target: torch.Tensor) -> tuple:
            logits = functional_call(model, (params, buffers), (batch,))
            return F.cross_entropy(logits, target, reduction="sum"), (logits.argmax(1) == target).sum()

        batched = vmap(sums, in_dims=(0, 0, None, None))
        out = {}
        model.eval()
        try:
            for lo in range(0, len(members), group):
                chunk = members[lo:lo + group]
                rows = torch.tensor([self.row[id(m)] for m in chunk], dtype=torch.long, device=self.device)
                params = {n: p.index_select(0, rows) for n, p in self._params(detach=True).items()}
                buffers = {n: b.index_select(0, rows) for n, b in self.buffers.items()}
                loss = torch.zeros(len(chunk), dtype=torch.float64, device=self.device)
                correct = torch.zeros(len(chunk), dtype=torch.int64, device=self.device)
                for start in range(0, len(y), step):
                    chunk_loss, chunk_correct = batched(params, buffers, x[start:start + step],
                                                        y[start:start + step])
                    loss += chunk_loss.double()  # as train.py's float sums
                    correct += chunk_correct
                n = max(1, len(y))
                for m, c, total in zip(chunk, correct.tolist(), loss.tolist(), strict=True):
                    out[id(m)] = 100.0 * c / n, total / n
        finally:
            model.train()
        return out

    def _choose(self) -> None:
        """After the short runs: each evaluation's lr trials, and its best lr's model continues."""
        winners = []
        for ev in self.evals:
            best = None
            for m in ev.members:
                if m.ended is None:
                    metric, loss = m.last_eval[1], m.last_eval[2]
                    self.log(f"{ev.spec.label} lr={m.lr:g}: short-run {self.config.metric} {metric:.2f}, "
                             f"val loss {loss:.4f}")
                    key = _choice_key(m, self.config, metric, loss)
                    if best is None or key > best[0]:
                        best = (key, m)
                else:
                    self.log(f"{ev.spec.label} lr={m.lr:g}: {m.ended.status}: {m.ended.reason}")
            ev.trials = [LrTrial(m.lr, m.last_eval[1], m.last_eval[2], "ok") if m.ended is None
                         else LrTrial(m.lr, 0.0, None, m.ended.status, m.ended.reason) for m in ev.members]
            ev.best = best[1] if best is not None else None
            if ev.best is not None:
                winners.append(ev.best)
        self._stack(winners)

    def _result(self, ev: _Evaluation, finals: dict, tests: dict) -> TrainResult:
        """train.py's result of evaluation ``ev``."""
        config = self.config
        if len(self.grid) == 1:  # no short run: the one lr's record is the run's outcome
            m = ev.members[0]
            run, ended = (m, m.ended) if m.optimizer is not None else (None, None)
            trials = [LrTrial(m.lr, 0.0, None, m.ended.status, m.ended.reason) if m.ended is not None
                      else LrTrial(m.lr, finals[id(m)][0], m.last_eval[2] if m.last_eval else None, "ok")]
        else:
            trials, run = ev.trials, ev.best
            ended = run.ended if run is not None else ev.timeout
        if run is None and ended is None:
            reasons = "; ".join(f"lr={t.lr:g}: {t.reason}" for t in trials)
            ended = _RunEnded(trials[0].status, f"every lr of the grid failed ({reasons})")
        val_metric = finals[id(run)][0] if ended is None else 0.0
        test_metric = tests[id(run)][0] if ended is None else 0.0
        return TrainResult(
            optimizer=ev.spec.label, task=config.name or config.task, seed=self.seed, metric=config.metric,
            val_metric=val_metric, test_metric=test_metric, lr=run.lr if run is not None else None,
            lr_trials=trials, train_loss=run.train_loss if run else [],
            val_curve=run.val_curve if run else [],
            steps=run.step if run else 0, total_steps=sum(m.step for m in ev.members), wall_time=ev.charged,
            status=ended.status if ended else "ok", reason=ended.reason if ended else None,
            val_loss=None if ended or not run.last_eval else run.last_eval[2],
            mean_train_loss=None if ended or not run.step else run.loss_sum / run.step)


def _rebind(optimizer: torch.optim.Optimizer, old: list[torch.Tensor], new: list[torch.Tensor]) -> None:
    """Point ``optimizer`` at ``new`` tensors in place of ``old`` (same order), its state moved along."""
    swap = {id(o): n for o, n in zip(old, new, strict=True)}
    for group in optimizer.param_groups:
        group["params"] = [swap[id(p)] for p in group["params"]]
    for o, n in zip(old, new, strict=True):
        if o in optimizer.state:
            optimizer.state[n] = optimizer.state.pop(o)

