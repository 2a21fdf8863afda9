"""The reward: MNIST-1D data and models, seed-averaged evaluations with common random numbers, normalised
loss scores against cached references, suites, and the errors for each kind of bad input."""

from __future__ import annotations

import json
import math
import random
import sys

import numpy as np
import pytest
import torch

from child_tasks.compare import compare, paired
from child_tasks.config import ConfigError, Reference, load_task_config, override, task_config_from_dict
from child_tasks.mnist1d import load_mnist1d
from child_tasks.models import MLP, ConvNet1D
from child_tasks.reward import (evaluate, fingerprint, measure_reference, raw_value, reference_is_current,
                                score, training_seeds, with_reference)
from child_tasks.suite import load_suite

# MNIST-1D cut down to well under a second per evaluation: 500 signals, a 4-channel CNN, 2 epochs of 6 steps.
TINY = {"name": "tiny1d", "task": "mnist1d", "model": {"name": "cnn1d", "width": 4},
        "data": {"num_samples": 500}, "reward": "train_loss", "epochs": 2, "batch_size": 50,
        "lr_grid": [0.01, 0.1], "short_run_epochs": 1}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NOS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def tiny(**changes):
    return task_config_from_dict({**TINY, **changes})


def test_mnist1d_splits_are_stratified_deterministic_and_leave_global_rngs_alone(cache_dir):
    import mnist1d.data  # noqa: F401 (its imports may draw from `random` once; generating must not)
    import sklearn.model_selection  # noqa: F401

    np.random.seed(7), random.seed(7)
    expected = (np.random.get_state()[1].copy(), random.getstate())
    data = load_mnist1d(num_samples=500, split_seed=0)
    assert np.array_equal(np.random.get_state()[1], expected[0]) and random.getstate() == expected[1]
    assert data.input_shape == (1, 40) and data.num_classes == 10
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (300, 100, 100)
    assert torch.bincount(data.y_val).tolist() == [10] * 10, "stratified: every class alike"
    assert list(cache_dir.glob("mnist1d/*.npz")), "the generated arrays are cached on disk"
    again = load_mnist1d(num_samples=500, split_seed=1)
    assert not torch.equal(again.x_val, data.x_val), "another split seed, another split"
    assert torch.equal(load_mnist1d(num_samples=500, split_seed=0).x_val, data.x_val)


def test_a_corrupt_cache_file_is_rebuilt_not_trusted(cache_dir):
    from child_tasks import mnist1d

    first = mnist1d.generate(200, 3)
    (path,) = cache_dir.glob("mnist1d/*.npz")
    path.write_bytes(b"not a numpy file")
    again = mnist1d.generate(200, 3)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])


def test_missing_mnist1d_package_is_a_one_line_error(monkeypatch):
    from child_tasks import mnist1d

    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(ImportError, match="pip install mnist1d"):
        mnist1d.generate(200, 99)


@pytest.mark.parametrize(("model", "params"), [(ConvNet1D((1, 40), 10, width=25), 5210),
                                                (MLP((1, 40), 10, hidden=100, layers=2), 15210)])
def test_the_papers_models(model, params):
    assert model(torch.zeros(3, 1, 40)).shape == (3, 10)
    assert sum(p.numel() for p in model.parameters()) == params


def test_shipped_mnist1d_configs_load_with_current_references():
    for name in ("mnist1d_cnn", "mnist1d_mlp"):
        task = load_task_config(name)
        assert task.reward in ("train_loss", "val_loss") and reference_is_current(task), name


def test_training_seeds_are_common_and_fresh_per_evaluation_seed():
    task = tiny(seeds_per_evaluation=3)
    assert training_seeds(task, 0) == [0, 1, 2] and training_seeds(task, 2) == [6, 7, 8]
    assert training_seeds(tiny(), 5) == [5]


def test_scores_are_normalised_higher_is_better_and_zero_for_a_run_that_ended():
    ref = Reference(initial=2.0, adam=0.5, seeds=1, fingerprint="x")
    task = tiny().model_copy(update={"reference": ref})
    assert score(task, 0.5) == 1.0 and score(task, 2.0) == 0.0 and score(task, 1.25) == pytest.approx(0.5)
    assert score(task, 0.2) == pytest.approx(1.2), "better than Adam scores above 1"
    assert score(task, 5.0) == 0.0 and score(task, None) == 0.0 and score(task, math.nan) == 0.0
    assert score(tiny(reward="accuracy"), 87.5) == 87.5, "NOS's reward is the metric as it is"
    with pytest.raises(ValueError, match="no reference"):
        score(tiny(), 1.0)


def test_seed_averaged_evaluation_is_paired_and_reproducible():
    task = with_reference(tiny(seeds_per_evaluation=2))
    first = evaluate("sign(m)", [task], seed=1)
    again = evaluate("sign(m)", [task], seed=1)
    part = first.tasks["tiny1d"]
    assert [r.seed for r in part.results] == [2, 3]
    assert first.reward == again.reward == pytest.approx(sum(part.scores) / 2)
    assert part.raw == [raw_value(task, r) for r in part.results]
    assert all(r.mean_train_loss is not None and r.val_loss is not None for r in part.results)
    stored = json.loads(json.dumps(first.to_dict()))
    assert stored["tasks"]["tiny1d"]["score"] == pytest.approx(first.reward)


def test_a_diverging_rule_scores_zero_and_the_lr_is_chosen_by_the_reward():
    task = with_reference(tiny()).model_copy(update={"lr_grid": [1e6]})
    out = evaluate("g", [task], seed=0)
    assert out.reward == 0.0 and out.status == "diverged"
    # val_loss: the short run with the lowest validation loss continues (not the best accuracy).
    result = evaluate("torch:adam", [with_reference(tiny(reward="val_loss", lr_grid=[1e-4, 1e-2, 1.0]))],
                      seed=0).first
    assert result.lr == min(result.lr_trials, key=lambda t: math.inf if t.val_loss is None else t.val_loss).lr


def test_references_are_measured_once_then_cached_and_stale_ones_replaced(monkeypatch):
    calls = []
    real = measure_reference

    def counting(task, *args, **kwargs):
        calls.append(task.epochs)
        return real(task, *args, **kwargs)

    monkeypatch.setattr("child_tasks.reward.measure_reference", counting)
    task = with_reference(tiny(), log_fn=lambda _m: None)
    assert task.reference is not None and task.reference.fingerprint == fingerprint(task)
    assert task.reference.initial > task.reference.adam
    assert with_reference(tiny(), log_fn=lambda _m: None) == task and calls == [2], "cached"
    assert with_reference(task) is task, "current: nothing to do"
    longer = override(task, {"epochs": 3})
    assert not reference_is_current(longer), "another budget, another reference"
    assert with_reference(longer, log_fn=lambda _m: None).reference.fingerprint == fingerprint(longer)
    assert calls == [2, 3]


def test_a_task_too_short_for_adam_to_progress_is_one_clear_error(monkeypatch):
    # Tuned Adam no better than the untrained network: the normalised score would divide by <= 0.
    monkeypatch.setattr("child_tasks.reward.raw_value", lambda task, result: 99.0)
    message = (r"tuned Adam's train_loss \(99, mean of 3 seeds\) is not below the untrained network's "
               r"\([0-9.]+\), so a train_loss reward cannot be normalised")
    with pytest.raises(ValueError, match=message) as err:
        measure_reference(tiny())
    assert "\n" not in str(err.value) and "train longer" in str(err.value)


def test_a_suite_averages_its_tasks_scores():
    suite = load_suite([TINY, {**TINY, "name": "tiny_mlp", "model": {"name": "mlp", "hidden": 8}}])
    suite = suite.with_references()
    out = evaluate("sign(m)", suite.tasks, seed=0)
    assert list(out.tasks) == ["tiny1d", "tiny_mlp"]
    assert out.reward == pytest.approx((out.tasks["tiny1d"].score + out.tasks["tiny_mlp"].score) / 2)
    table = compare(["sign(m)", "torch:adam"], suite, seeds=[0, 1])
    assert table.tasks == ["tiny1d", "tiny_mlp"] and len(table.row("torch:adam").task_scores("tiny_mlp")) == 2
    text = str(table)
    assert "torch:adam" in text and "accuracy" in text


@pytest.mark.parametrize(("spec", "phrase"), [
    ({**TINY, "reward": "val_los"}, "reward: expected 'accuracy', 'val_loss' or 'train_loss', got 'val_los'; "
                                    "did you mean 'val_loss'?"),
    ({**TINY, "seeds_per_evaluation": 0}, "seeds_per_evaluation: expected greater than or equal to 1"),
    ({**TINY, "model": {"name": "convnet"}}, "task 'mnist1d' needs model cnn1d or mlp"),
    ({**TINY, "data": {"num_samples": 10}}, "data.num_samples: expected greater than or equal to 100"),
    ({**TINY, "reference": {"initial": 0.1, "adam": 0.5, "seeds": 1, "fingerprint": "x"}},
     "reference: initial (0.1) must be finite and above adam (0.5)"),
])
def test_bad_task_values_are_clear_errors(spec, phrase):
    with pytest.raises(ConfigError) as info:
        task_config_from_dict(spec)
    assert phrase in str(info.value)


@pytest.mark.parametrize(("spec", "error", "phrase"), [
    (["digits", "mnist1d_cnnn"], FileNotFoundError, "suite 'digits+mnist1d_cnnn', task 2: no task config"),
    (["mnist1d_cnn", "digits"], ConfigError, "task 'digits' has reward 'accuracy', which is not normalised"),
    ([TINY, TINY], ConfigError, "tasks named twice: tiny1d"),
    ([], ConfigError, "it lists no tasks"),
    ({"suite": [TINY], "extra": 1}, ConfigError, "unknown key(s) extra"),
])
def test_bad_suites_name_the_task_at_fault(spec, error, phrase):
    with pytest.raises(error) as info:
        load_suite(spec)
    assert phrase in str(info.value) and "\n" not in str(info.value).split(phrase)[0]


def test_paired_difference_and_z():
    assert paired([3.0, 4.0, 5.0], [1.0, 2.0, 3.0]) == (2.0, math.inf)
    mean, z = paired([1.0, 2.0, 4.0], [0.0, 1.0, 2.0])
    assert mean == pytest.approx(4 / 3) and z == pytest.approx((4 / 3) / (math.sqrt(1 / 3) / math.sqrt(3)))
    assert paired([1.0, 1.0], [1.0, 1.0]) == (0.0, 0.0)


@pytest.mark.parametrize(("overrides", "phrase"), [
    (["task=[digits, mnist1d_cnnn]"], "task 2: no task config at"),
    (["task=mnist1d_cnn", "task_overrides.reward=loss"], "reward: expected 'accuracy', 'val_loss' or"),
    (["task=mnist1d_cnn", "task_overrides.seeds_per_evaluation=0"], "seeds_per_evaluation: expected greater"),
    (["task=mnist1d_cnn", "task_overrides.data.num_samples=321"], "needs the 'mnist1d' package: pip install"),
])
def test_nos_search_refuses_bad_reward_inputs_in_one_line_before_any_run_starts(tmp_path, monkeypatch,
                                                                                overrides, phrase):
    from typer.testing import CliRunner

    from search.cli import app

    monkeypatch.setitem(sys.modules, "mnist1d", None)  # only the last case reaches the data
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    args = ["search", "--run-dir", str(tmp_path / "run"), "--no-progress", *(f"--set={o}" for o in overrides)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    error = next(line for line in result.output.splitlines() if line.startswith("error"))
    assert phrase in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output and error
    assert not (tmp_path / "run" / "results.sqlite").exists(), "nothing stored, nothing half-made"
