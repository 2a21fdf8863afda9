"""train_batch(): K candidates trained at once give what each gives trained alone (child_tasks/batched.py)."""

from __future__ import annotations

import pytest
import torch

from child_tasks import batched
from child_tasks.batched import batchable, train_batch
from child_tasks.config import load_task_config, override
from child_tasks.optimizers import OptimizerSpec
from child_tasks.reward import evaluate, evaluate_batch
from child_tasks.train import train
from tests.child_task_helpers import fake_images, tiny_digits

# A rule of each kind: a known rule, one drawing random numbers, a torch baseline, rule text, one that
# diverges at every lr of the grid and one that diverges at the largest lr only.
RULES = ["powersign", "drop(g, 0.3) + 0.1 * noise", "torch:adam", "sgd", "g * 1e6", "exp(exp(g)) * g"]


def near(x, y) -> bool:
    """Equal within float tolerance (None and lists too): batched kernels round differently."""
    if isinstance(x, list) or isinstance(y, list):
        return len(x) == len(y) and all(near(a, b) for a, b in zip(x, y, strict=True))
    if x is None or y is None:
        return x is y
    return x == pytest.approx(y, rel=1e-4, abs=1e-5)


def assert_same(alone, together) -> None:
    """What train gives, within float tolerance: statuses, reasons, lrs and step counts exactly. Each
    failure names the field and both values (the GPU check prints it outside pytest's rewriting)."""
    for name in ("optimizer", "status", "reason", "lr", "steps", "total_steps", "seed"):
        assert getattr(together, name) == getattr(alone, name), \
            f"{name}: batched {getattr(together, name)!r}, alone {getattr(alone, name)!r}"
    trials = [[(t.lr, t.status, t.reason) for t in r.lr_trials] for r in (together, alone)]
    assert trials[0] == trials[1], f"lr trials: batched {trials[0]}, alone {trials[1]}"
    for name in ("score", "val_loss"):
        got, expected = ([getattr(t, name) for t in r.lr_trials] for r in (together, alone))
        assert near(got, expected), f"lr trials' {name}: batched {got}, alone {expected}"
    for name in ("train_loss", "val_curve", "val_metric", "test_metric", "val_loss", "mean_train_loss",
                 "reward"):
        got, expected = getattr(together, name), getattr(alone, name)
        assert near(got, expected), f"{name}: batched {got!r:.300}, alone {expected!r:.300}"


def test_batched_equals_alone_with_batch_norm_noise_and_divergence():
    cfg = tiny_digits(lr_grid=[0.01, 0.1, 1.0])  # the NOS ConvNet (batch norm) on the digits
    alone = [train(rule, cfg, seed=1) for rule in RULES]
    together = train_batch(RULES, cfg, seed=1)
    for a, b in zip(alone, together, strict=True):
        assert_same(a, b)
    statuses = {r.optimizer: r.status for r in together}
    assert statuses["g * 1e6"] == "diverged" and statuses["powersign"] == "ok"
    # The largest lr diverges for one rule while its other lrs and the other rules go on unaffected.
    assert [t.status for t in together[-1].lr_trials] == ["ok", "ok", "diverged"]
    # A batch of one is the same training as well.
    assert_same(alone[0], train_batch(RULES[:1], cfg, seed=1)[0])


def test_mlp_without_buffers_whole_budget_grid_and_train_loss_choice():
    cfg = override(load_task_config("mnist1d_mlp"), {"model.hidden": 16, "epochs": 2, "batch_size": 20,
                                                     "short_run_epochs": 2, "lr_grid": [0.01, 0.3]})
    data = fake_images(shape=(1, 40), n=(100, 40, 40))
    rules = ["adam", "momentum", "g * 1e6"]
    alone = [train(rule, cfg, seed=0, data=data) for rule in rules]
    for a, b in zip(alone, train_batch(rules, cfg, seed=0, data=data), strict=True):
        assert_same(a, b)


def test_a_grid_of_one_lr_and_a_seed_per_optimizer():
    cfg = tiny_digits()
    rules, seeds = ["adam", "powersign", "adam"], [0, 0, 3]
    together = train_batch(rules, cfg, seed=seeds, lr_grid=[1e-2])
    for rule, seed, b in zip(rules, seeds, together, strict=True):
        assert_same(train(rule, cfg, seed=seed, lr_grid=[1e-2]), b)
    assert together[0].lr_trials[0].score == together[0].val_metric


class _Raises(torch.optim.SGD):
    """An optimizer whose third step raises."""

    def step(self, closure=None):  # noqa: ANN001, ANN201
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 3:
            raise RuntimeError("a rule's bug")
        return super().step(closure)


class _RaisingSpec(OptimizerSpec):
    def make(self, params, lr, weight_decay, total_steps):  # noqa: ANN001, ANN201
        if lr > 0.05:
            raise ValueError("cannot build at this lr")
        return _Raises(params, lr=lr)


def test_a_rule_that_raises_ends_alone_as_in_single_training():
    cfg = tiny_digits()
    optimizers = ["adam", _RaisingSpec("raises"), OptimizerSpec("unbuildable", baseline="no-such"), "sgd"]
    alone = [train(o, cfg, seed=2) for o in optimizers]
    together = train_batch(optimizers, cfg, seed=2)
    for a, b in zip(alone, together, strict=True):
        assert_same(a, b)
    assert [r.status for r in together] == ["ok", "error", "error", "ok"]
    assert "a rule's bug" in together[1].reason and "building the optimizer failed" in together[2].reason


def test_time_limit_ends_each_evaluation_with_timeout():
    results = train_batch(["adam", "sgd"], tiny_digits(), seed=0, time_limit_s=1e-9)
    assert [r.status for r in results] == ["timeout", "timeout"]
    assert all(r.reward == 0 and "time limit" in r.reason for r in results)
    assert all(t.status == "timeout" for r in results for t in r.lr_trials)


def test_max_models_and_running_out_of_memory_split_the_batch(monkeypatch):
    cfg = tiny_digits()
    rules = ["adam", "sgd", "powersign", "rmsprop", "g * 1e6"]
    whole = train_batch(rules, cfg, seed=0)
    for a, b in zip(whole, train_batch(rules, cfg, seed=0, max_models=4), strict=True):  # two lrs: 2 a group
        assert_same(a, b)
    sizes = []
    run = batched._Batch.run

    def run_or_oom(self):  # noqa: ANN001, ANN202
        sizes.append(len(self.specs))
        if len(self.specs) > 2:
            raise torch.OutOfMemoryError("out of memory (simulated)")
        return run(self)

    monkeypatch.setattr(batched._Batch, "run", run_or_oom)
    for a, b in zip(whole, train_batch(rules, cfg, seed=0), strict=True):
        assert_same(a, b)
    assert sizes == [5, 2, 3, 1, 2]


def test_bad_input_gives_clear_errors():
    cfg = tiny_digits()
    with pytest.raises(ValueError, match="max_models must be at least 1"):
        train_batch(["adam"], cfg, max_models=0)
    with pytest.raises(ValueError, match=r"optimizer 1 of the batch \('nosuchname'\)"):
        train_batch(["adam", "nosuchname"], cfg)
    with pytest.raises(ValueError, match="2 seeds for 1 optimizers"):
        train_batch(["adam"], cfg, seed=[0, 1])
    assert train_batch([], cfg) == []


def test_tasks_that_cannot_be_batched_are_trained_one_at_a_time():
    assert batchable(tiny_digits()) and not batchable(load_task_config("nmt_synthetic"))
    assert not batchable(override(load_task_config("wrn_cifar10"), {"model.dropout": 0.3}))


def test_evaluate_batch_scores_a_suite_as_evaluate_does():
    tasks = [tiny_digits(name="a"), tiny_digits(name="b", epochs=1, seeds_per_evaluation=2)]
    rules = ["adam", "g * 1e6", "powersign"]
    together = evaluate_batch(rules, tasks, seed=1)
    for rule, b in zip(rules, together, strict=True):
        a = evaluate(rule, tasks, seed=1)
        assert (b.optimizer, b.seed, list(b.tasks), b.status) == \
            (a.optimizer, a.seed, list(a.tasks), a.status)
        assert near(b.reward, a.reward) and b.wall_time > 0
        for name in a.tasks:
            assert near(b.tasks[name].scores, a.tasks[name].scores)
            assert [r.seed for r in b.tasks[name].results] == [r.seed for r in a.tasks[name].results]
