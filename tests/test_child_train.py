"""train(): NOS's lr choice, determinism, and the guards that keep any rule from crashing the search."""

from __future__ import annotations

import json

import pytest
import torch

from child_tasks.config import load_task_config, override
from child_tasks.train import BASELINES, OptimizerSpec, resolve_optimizer, train
from dsl import known_rules, parse
from tests.child_task_helpers import fake_images, tiny_digits

RULES = known_rules()


def comparable(result) -> dict:
    d = result.to_dict()
    d.pop("wall_time")
    return d


def test_same_seed_gives_the_same_result_exactly():
    cfg = tiny_digits()
    for name in ("powersign", "adam", "drop(g, 0.3) + 0.1 * noise"):  # a rule that draws random numbers too
        first, second = train(name, cfg, seed=3), train(name, cfg, seed=3)
        assert first.status == "ok", first.reason
        assert comparable(first) == comparable(second)
        assert comparable(train(name, cfg, seed=4)) != comparable(first)


def test_lr_grid_short_runs_are_recorded_and_the_best_continues():
    cfg = tiny_digits(lr_grid=[1e-4, 1e-2, 1e-1], epochs=3)
    result = train("sgd", cfg, seed=0)
    assert [t.lr for t in result.lr_trials] == [1e-4, 1e-2, 1e-1]
    best = max(result.lr_trials, key=lambda t: (t.score, -t.val_loss))
    assert result.lr == best.lr and result.lr_scores[best.lr] == best.score
    steps_per_epoch = 1079 // 128
    assert result.steps == 3 * steps_per_epoch  # the chosen run goes on from its short run...
    assert result.total_steps == 3 * steps_per_epoch + 2 * steps_per_epoch  # ...and the others stop
    assert len(result.train_loss) == len(result.val_curve) == 3
    assert result.val_metric == result.val_curve[-1] == result.reward
    # The chosen run's first epoch is its short run: its score is the first point of the curve.
    assert result.val_curve[0] == best.score
    assert 0 <= result.test_metric <= 100


def test_a_grid_of_one_lr_trains_straight_to_the_budget():
    result = train("adam", tiny_digits(), seed=0, lr_grid=[1e-2])
    assert result.lr == 1e-2 and result.total_steps == result.steps == 16
    assert result.lr_trials[0].score == result.val_metric


@pytest.mark.parametrize("name, kind", [
    *[(b, "baseline") for b in BASELINES],
    *[(r, "rule") for r in RULES if r not in BASELINES],
    ("rule:adam", "rule"), ("torch:adam", "baseline"),
    ("exp(sign(g) * sign(m)) * g", "rule"), ("g * (1 + ld)", "rule"),
])
def test_names_and_rule_text_resolve(name, kind):
    spec = resolve_optimizer(name)
    assert spec.label == name
    assert (spec.baseline is not None, spec.rule is not None) == (kind == "baseline", kind == "rule")
    params = [torch.nn.Parameter(torch.ones(3))]
    assert isinstance(spec.make(params, 0.1, 0.0, total_steps=10), torch.optim.Optimizer)


def test_a_rule_object_is_labelled_by_its_known_name_or_text():
    assert resolve_optimizer(RULES["powersign"]).label == "powersign"
    assert resolve_optimizer(parse("g * 2")).label == "g * 2"


@pytest.mark.parametrize("bad, message", [
    ("adma", r"unknown optimizer 'adma' \(did you mean .*'adam'.*known rules: sgd"),
    ("torch:powersign", "unknown torch baseline 'powersign'"),
    ("rule:adamw", r"unknown rule 'adamw' \(did you mean 'adam'"),
    ("g +* m", "neither an optimizer name nor valid rule text"),
])
def test_unknown_names_and_bad_text_are_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        train(bad, tiny_digits(), seed=0)


DIVERGING = [
    ("exp(exp(g)) * 1e6", None, "loss blew up"),  # the step itself explodes
    ("sgd", [1e6], "loss"),  # a huge lr: the loss explodes or turns NaN
    ("g * log(abs(g) - abs(g))", None, "non-finite|loss is nan|loss is inf"),  # log(0): infinite weights
]


@pytest.mark.parametrize("rule, grid, reason", DIVERGING, ids=[d[0] for d in DIVERGING])
def test_divergence_ends_the_run_with_reward_zero_and_a_reason(rule, grid, reason):
    result = train(rule, tiny_digits(), seed=0, lr_grid=grid)
    assert result.diverged and result.status == "diverged"
    assert result.reward == 0.0 and result.val_metric == 0.0
    assert result.reason and __import__("re").search(reason, result.reason.lower()), result.reason
    assert all(t.status == "diverged" and t.score == 0.0 for t in result.lr_trials)
    json.dumps(result.to_dict())  # still a clean record


def test_one_diverging_lr_leaves_the_others():
    result = train("sgd", tiny_digits(lr_grid=[0.01, 1e6]), seed=0)
    assert result.status == "ok" and result.lr == 0.01
    assert [t.status for t in result.lr_trials] == ["ok", "diverged"]


class RaisingSpec(OptimizerSpec):
    def make(self, params, lr, weight_decay, total_steps):
        class Broken(torch.optim.SGD):
            def step(self, closure=None):
                raise RuntimeError("boom")
        return Broken(params, lr=lr)


def test_optimizer_exceptions_are_caught_and_reported():
    result = train(RaisingSpec("broken"), tiny_digits(), seed=0)
    assert (result.status, result.reward, result.diverged) == ("error", 0.0, True)
    assert "RuntimeError: boom" in result.reason
    built = train("powersign", tiny_digits(), seed=0, hyper={"not_a_constant": 1.0})
    assert built.status == "error" and "unknown hyper-constant" in built.reason


def test_the_time_limit_ends_the_evaluation():
    result = train("adam", tiny_digits(), seed=0, time_limit_s=1e-9)
    assert (result.status, result.reward, result.diverged) == ("timeout", 0.0, True)
    assert "time limit" in result.reason and result.total_steps == 1
    from_config = train("adam", tiny_digits(time_limit_s=1e-9), seed=0)
    assert from_config.status == "timeout"


def test_result_is_json_and_torch_settings_are_restored():
    threads = torch.get_num_threads()
    rng = torch.get_rng_state()
    result = train("addsign", tiny_digits(), seed=1, threads=1)
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)
    assert not torch.are_deterministic_algorithms_enabled()
    record = json.loads(json.dumps(result.to_dict()))
    assert record["optimizer"] == "addsign" and record["task"] == "digits" and record["diverged"] is False
    assert set(record) >= {"val_metric", "test_metric", "lr", "lr_trials", "train_loss", "val_curve", "steps",
                           "wall_time", "status", "reason"}


@pytest.mark.parametrize("augment", [False, True])
def test_cifar10_config_trains_on_given_image_data(augment):
    cfg = override(load_task_config("cifar10_convnet"), {"model.width": 4, "epochs": 1, "batch_size": 10,
                                                          "short_run_epochs": 1, "lr_grid": [0.01, 0.1]})
    data = fake_images(augment=augment)
    result = train("powersign", cfg, seed=0, data=data)
    assert result.status == "ok" and result.steps == 4 and result.task == "cifar10_convnet"
    assert result.val_metric in {100 * k / 20 for k in range(21)}
    assert comparable(result) == comparable(train("powersign", cfg, seed=0, data=data))


def test_a_wide_resnet_config_takes_a_step():
    cfg = override(load_task_config("wrn_cifar10"), {"model.depth": 10, "model.widen": 1, "epochs": 1,
                                                      "batch_size": 20, "short_run_epochs": 1})
    result = train("momentum", cfg, seed=0, data=fake_images(augment=True), lr_grid=[0.1])
    assert result.status == "ok" and result.steps == 2 and len(result.val_curve) == 1


def test_a_tiny_translation_run_gives_a_bleu_number():
    cfg = override(load_task_config("nmt_synthetic"), {
        "model.layers": 1, "model.d_model": 16, "model.heads": 2, "model.ff": 32, "data.n_train": 64,
        "data.n_val": 8, "data.n_test": 8, "epochs": 2, "batch_size": 16, "short_run_epochs": 1,
        "lr_grid": [1e-3, 1e-2]})
    result = train("adam", cfg, seed=0)
    assert result.status == "ok" and result.metric == "bleu" and result.steps == 8
    assert 0.0 <= result.val_metric <= 100.0 and 0.0 <= result.test_metric <= 100.0
    assert result.train_loss[1] < result.train_loss[0]
    token_accuracy = train("adam", override(cfg, {"metric": "accuracy"}), seed=0)
    assert token_accuracy.status == "ok" and 0.0 < token_accuracy.val_metric <= 100.0


def test_hyper_constants_go_to_rules_only():
    spec = resolve_optimizer("rule:adam", hyper={"beta1": 0.5})
    opt = spec.make([torch.nn.Parameter(torch.ones(2))], 0.1, 0.0, total_steps=7)
    assert (opt.param_groups[0]["beta1"], opt.param_groups[0]["T"]) == (0.5, 7.0)  # T: the run's length
    with pytest.raises(ValueError, match="say 'rule:adam'"):
        resolve_optimizer("adam", hyper={"beta1": 0.5})
