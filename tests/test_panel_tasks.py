"""The held-out transfer panel's tasks: their configs load and stay out of every search, their data is
deterministic and well formed, their networks learn, their metrics point the right way, and each new
kind trains end to end through `child_tasks.train`."""

from __future__ import annotations

import math

import pytest
import torch

from child_tasks import generated
from child_tasks.batched import batchable, train_batch
from child_tasks.config import (CONFIG_DIR, HIGHER_IS_BETTER, ConfigError, available_configs,
                                higher_is_better, load_task_config, override)
from child_tasks.models import CausalTransformerLM, RecurrentNet
from child_tasks.problems import load_data, make_problem
from child_tasks.train import train
from child_tasks.translation import BOS, EOS, PAD
from configuration import load_yaml
from search.results.panel import PANEL_TASKS

PANEL = {
    # name: (task, model, metric, kind of problem)
    "panel_digits_cnn": ("digits", "convnet", "accuracy", "classification"),
    "panel_tabular_mlp": ("tabular", "mlp", "accuracy", "classification"),
    "panel_friedman_mlp": ("regression", "mlp", "mse", "regression"),
    "panel_adding_lstm": ("adding", "rnn", "mse", "regression"),
    "panel_order_lstm": ("order", "rnn", "accuracy", "classification"),
    "panel_lm_transformer": ("lm", "causal_transformer", "perplexity", "language model"),
}
# The kinds of network issue 21 asks the panel to cover, by the config's model name.
ARCHITECTURE = {"convnet": "convolutional", "mlp": "MLP", "rnn": "recurrent",
                "causal_transformer": "attention"}
SEARCH_STEPS = 240  # the longest search budget per lr (configs/mnist1d_cnn.yaml): panels train 5 x that
TINY = {"epochs": 2, "short_run_epochs": 1, "lr_grid": [1.0e-3, 1.0e-2]}
TINY_DATA = {  # data and model cuts that make one training take well under a second
    "panel_tabular_mlp": {"data.n_samples": 400, "model.hidden": 16},
    "panel_friedman_mlp": {"data.n_samples": 400, "model.hidden": 16},
    "panel_adding_lstm": {"data.seq_len": 6, "data.n_train": 256, "data.n_val": 64, "data.n_test": 64,
                          "model.hidden": 8},
    "panel_order_lstm": {"data.min_len": 6, "data.max_len": 8, "data.n_train": 256, "data.n_val": 64,
                         "data.n_test": 64, "model.hidden": 8},
    "panel_lm_transformer": {"data.n_train": 256, "data.n_val": 32, "data.n_test": 32, "model.layers": 1,
                             "model.d_model": 16},
}


def test_every_panel_config_is_listed():
    assert {n for n in available_configs() if n.startswith("panel_")} == set(PANEL) == set(PANEL_TASKS)


def test_the_panel_covers_the_kinds_of_network_and_problem_the_issue_asks_for():
    configs = [load_task_config(name) for name in PANEL_TASKS]
    assert len(configs) == 6
    assert {ARCHITECTURE[cfg.model.name] for cfg in configs} == {"convolutional", "MLP", "recurrent",
                                                                 "attention"}
    problems = {"lm" if cfg.task == "lm" else "classification" if cfg.metric == "accuracy" else "regression"
                for cfg in configs}
    assert problems == {"classification", "regression", "lm"}


@pytest.mark.parametrize("name", sorted(PANEL))
def test_panel_config_loads_with_its_kind_and_a_budget_5x_the_searchs(name):
    task, model, metric, _ = PANEL[name]
    cfg = load_task_config(name)
    assert (cfg.task, cfg.model.name, cfg.metric) == (task, model, metric)
    # The lr is chosen by the metric's own quantity: a loss where lower is better.
    assert cfg.reward == ("accuracy" if higher_is_better(metric) else "val_loss")
    n_train = make_problem(cfg, torch.device("cpu")).n_train
    steps = (n_train // cfg.batch_size) * cfg.epochs
    assert steps >= 5 * SEARCH_STEPS
    assert min(cfg.lr_grid) <= 1e-4 and max(cfg.lr_grid) >= 1.0  # lion's small lrs to sgd's large ones
    assert len(cfg.seeds) >= 5


def _run_config_tasks(value) -> list[str]:
    """Task names a run config's `task` names: one, a list, or a suite config's members (inline task
    configs name none)."""
    names = [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)] \
        if isinstance(value, list) else []
    out = []
    for name in names:
        path = CONFIG_DIR / f"{name}.yaml"
        raw = load_yaml(path) if path.is_file() else None
        out += [name, *(_run_config_tasks(raw["suite"]) if isinstance(raw, dict) and "suite" in raw else [])]
    return out


def test_no_search_config_uses_a_panel_task():
    run_configs = [p for p in sorted(CONFIG_DIR.glob("*.yaml"))
                   if isinstance(raw := load_yaml(p), dict) and "search" in raw]
    assert {p.stem for p in run_configs} >= {"quickstart", "cifar10_nos"}
    for path in run_configs:
        raw = load_yaml(path)
        tasks = _run_config_tasks(raw.get("task"))
        for stage in raw.get("funnel") or []:  # a funnel's later stages score rules too
            tasks += _run_config_tasks(stage.get("task") or [])
        assert tasks, path
        assert not [t for t in tasks if t.startswith("panel_")], f"{path.name} uses panel tasks: {tasks}"


# --- metrics -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("metric, higher", [("accuracy", True), ("bleu", True), ("mse", False),
                                            ("perplexity", False)])
def test_metric_direction(metric, higher):
    assert higher_is_better(metric) is higher


def test_every_metric_has_a_direction_and_an_unknown_one_is_refused():
    assert set(HIGHER_IS_BETTER) == {"accuracy", "bleu", "mse", "perplexity"}
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        higher_is_better("auc")


@pytest.mark.parametrize("changes, message", [
    ({"reward": "accuracy"}, "'mse' is lower-is-better: use reward 'val_loss'"),
    ({"metric": "accuracy"}, "metric 'accuracy' is for the"),
    ({"metric": "bleu"}, "metric 'bleu' is for the nmt task, not 'regression' (use 'mse')"),
])
def test_a_metric_that_does_not_fit_the_task_or_reward_is_refused(changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        override(load_task_config("panel_friedman_mlp"), changes)


@pytest.mark.parametrize("name, changes, message", [
    ("panel_tabular_mlp", {"data.n_informative": 2}, "data: 4 classes of 2 clusters need n_informative of at "
                                                     "least 3, got 2"),
    ("panel_tabular_mlp", {"data.n_informative": 30}, "n_informative (30) is more than n_features (20)"),
    ("panel_friedman_mlp", {"data.source": "iris"}, "data.source: expected 'friedman1' or 'diabetes'"),
    ("panel_lm_transformer", {"model.heads": 3}, "d_model (32) must be divisible by heads (3)"),
    ("panel_adding_lstm", {"model.cell": "rnn"}, "model.cell: expected 'lstm' or 'gru'"),
    ("panel_order_lstm", {"data.min_len": 70}, "min_len (70) is more than max_len (60)"),
    ("panel_order_lstm", {"data.min_len": 3, "data.max_len": 8}, "min_len (3) is less than marks (4)"),
    ("panel_order_lstm", {"model": {"name": "mlp"}}, "task 'order' needs model rnn, got 'mlp'"),
])
def test_bad_panel_task_options_name_the_key(name, changes, message):
    with pytest.raises(ConfigError) as info:
        override(load_task_config(name), changes)
    assert message in str(info.value)


# --- data ------------------------------------------------------------------------------------------------

def _same(a, b) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("x_train", "y_train", "x_val", "y_test"))


@pytest.mark.parametrize("load, options, generated_data", [
    (generated.load_tabular, {"n_samples": 300}, True),
    (generated.load_tabular, {"source": "wine"}, False),
    (generated.load_regression, {"n_samples": 300}, True),
    (generated.load_regression, {"source": "diabetes"}, False),
    (generated.load_adding, {"seq_len": 8, "n_train": 50, "n_val": 10, "n_test": 10}, True),
    (generated.load_order, {"min_len": 6, "max_len": 9, "n_train": 50, "n_val": 10, "n_test": 10}, True),
])
def test_generated_arrays_are_deterministic_and_split(load, options, generated_data):
    data = load(**options)
    # Built afresh (not the per-process cache): the same seed gives the same arrays.
    fresh = getattr(generated, "_" + load.__name__).__wrapped__(**{**_defaults(load), **options})
    assert _same(data, fresh)
    sizes = [len(getattr(data, f"y_{s}")) for s in ("train", "val", "test")]
    assert min(sizes) > 0 and data.x_train.shape[0] == sizes[0]
    assert data.x_train.dtype == torch.float32
    other = load(**options, data_seed=1)  # the generator's seed changes generated data, not bundled data
    assert torch.equal(other.x_train, data.x_train) is not generated_data


def _defaults(load) -> dict:
    import inspect

    return {k: v.default for k, v in inspect.signature(load).parameters.items()}


def test_tabular_is_standardised_and_stratified():
    data = generated.load_tabular(n_samples=1000, n_classes=4)
    assert data.num_classes == 4 and data.input_shape == (20,)
    assert torch.allclose(data.x_train.mean(0), torch.zeros(20), atol=1e-4)
    assert torch.allclose(data.x_train.std(0, unbiased=False), torch.ones(20), atol=1e-3)
    assert [len(data.y_train), len(data.y_val), len(data.y_test)] == [700, 150, 150]
    val, test = torch.bincount(data.y_val), torch.bincount(data.y_test)
    assert (val - test).abs().max() <= 1  # stratified: every split holds the classes in proportion


def test_regression_target_is_standardised_on_train():
    data = generated.load_regression(n_samples=1000)
    assert data.num_classes == 0 and data.y_train.dtype == torch.float32
    assert abs(float(data.y_train.mean())) < 1e-4 and abs(float(data.y_train.std(unbiased=False)) - 1) < 1e-3


def test_adding_problem_target_is_the_sum_of_the_two_marked_values():
    data = generated.load_adding(seq_len=10, n_train=200, n_val=20, n_test=20)
    x, y = data.x_train, data.y_train
    assert x.shape == (200, 10, 2) and y.shape == (200,)
    markers = x[..., 1]
    assert torch.equal(markers.sum(1), torch.full((200,), 2.0))
    assert torch.equal(markers[:, :5].sum(1), torch.ones(200))  # one marker in each half
    assert torch.allclose((x[..., 0] * markers).sum(1), y)


@pytest.mark.parametrize("marks", [2, 3, 4])
def test_order_problem_class_is_the_order_of_the_marked_symbols(marks):
    data = generated.load_order(n_symbols=8, min_len=6, max_len=11, n_train=400, n_val=20, n_test=20,
                                marks=marks)
    x, y = data.x_train, data.y_train
    classes = 2 ** marks
    assert data.num_classes == classes and x.shape == (400, 11, 8) and y.dtype == torch.int64
    assert (torch.bincount(y, minlength=classes) > 200 / classes).all()  # every order occurs
    steps = x.sum(-1)
    assert ((steps == 0) | (steps == 1)).all()  # one-hot, or an all-zero pad
    lengths = steps.sum(1).long()
    assert lengths.min() >= 6 and lengths.max() <= 11 and len(set(lengths.tolist())) > 1
    assert (steps[:, -1] == 1).all() and (steps.cummax(1).values == steps).all()  # padded at the start only
    for row, label, length in zip(x, y.tolist(), lengths.tolist(), strict=True):
        seq = row[-length:].argmax(-1)
        marked = (seq >= 6).nonzero().flatten().tolist()  # symbols 6 and 7 are X and Y
        edges = [length * k // marks for k in range(marks + 1)]
        assert len(marked) == marks
        assert all(a <= m < b for m, a, b in zip(marked, edges[:-1], edges[1:], strict=True))  # one per segment
        assert label == sum(int(seq[m] == 7) << (marks - 1 - k) for k, m in enumerate(marked))


def test_language_model_sentences_are_framed_and_unseen_in_validation():
    data = generated.load_synthetic_lm(n_train=300, n_val=40, n_test=40)
    again = generated._load_synthetic_lm.__wrapped__(300, 40, 40, "target", 0)
    assert torch.equal(data.train, again.train) and torch.equal(data.val, again.val)
    assert data.train.shape[0] == 300 and (data.train[:, 0] == BOS).all()
    assert ((data.train == EOS).sum(1) == 1).all()
    train_rows = {tuple(r.tolist()) for r in data.train}
    assert not train_rows & {tuple(r.tolist()) for r in data.val}  # padded alike: max_len of the same grammar
    words = data.vocab.decode(data.val[0])
    assert words and "<unk>" not in words
    assert data.max_len == max(t.shape[1] for t in (data.train, data.val, data.test))


TRANSLATION_CONFIGS = ("nmt_tiny", "nmt_synthetic")  # every shipped task translating the synthetic pair


def _sentences(*tensors) -> set[tuple[int, ...]]:
    """Rows of token ids without their framing and padding: sentences comparable across paddings."""
    return {tuple(t for t in row.tolist() if t not in (BOS, EOS, PAD)) for rows in tensors for row in rows}


def test_the_language_model_never_sees_a_translation_tasks_sentences():
    lm_config = load_task_config("panel_lm_transformer")
    lm = load_data(lm_config)
    lm_sentences = _sentences(lm.train, lm.val, lm.test)
    assert len(lm_sentences) == lm_config.data.n_train + lm_config.data.n_val + lm_config.data.n_test
    for name in TRANSLATION_CONFIGS:
        cfg = load_task_config(name)
        assert (cfg.data.source, cfg.data.split_seed) == ("synthetic", lm_config.data.split_seed)
        pairs = load_data(cfg)
        assert not lm_sentences & _sentences(pairs.tgt_train, pairs.tgt_val, pairs.tgt_test), name
    # Without the offset the same seed's stream starts with the translation tasks' sentences.
    same_start = generated.load_synthetic_lm(n_train=64, n_val=8, n_test=8, seed=lm_config.data.split_seed)
    assert _sentences(same_start.train) <= _sentences(load_data(load_task_config("nmt_tiny")).tgt_train)


def test_bad_generator_options_are_refused_with_the_option_named():
    with pytest.raises(ValueError, match="unknown tabular source 'iris'"):
        generated.load_tabular(source="iris")
    with pytest.raises(ValueError, match="seq_len must be at least 2"):
        generated.load_adding(seq_len=1)
    with pytest.raises(ValueError, match="n_symbols must be at least 3"):
        generated.load_order(n_symbols=2)
    with pytest.raises(ValueError, match="min_len <= max_len, got 9, 8"):
        generated.load_order(min_len=9, max_len=8)
    with pytest.raises(ValueError, match="side must be"):
        generated.load_synthetic_lm(side="both")
    with pytest.raises(ValueError, match="offset must be >= 0, got -1"):
        generated.load_synthetic_lm(offset=-1)
    with pytest.raises(ValueError, match="marks must be 2, 3 or 4, got 5"):
        generated.load_order(marks=5)
    with pytest.raises(ValueError, match="min_len must be at least marks"):
        generated.load_order(min_len=3, max_len=8, marks=4)


# --- models ------------------------------------------------------------------------------------------

def _fit(model, batch, loss_fn, steps=60, lr=1e-2) -> tuple[float, float]:
    opt = torch.optim.Adam(model.parameters(), lr)
    first = last = None
    for _ in range(steps):
        loss = loss_fn(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        last = float(loss.detach())
        first = last if first is None else first
    return first, last


RECURRENT = {  # problem: (data, classes, loss, output shape of 5 rows)
    "adding": (lambda: generated.load_adding(seq_len=6, n_train=128, n_val=8, n_test=8), 0,
               torch.nn.functional.mse_loss, (5,)),
    "order": (lambda: generated.load_order(min_len=6, max_len=8, n_train=128, n_val=8, n_test=8), 4,
              torch.nn.functional.cross_entropy, (5, 4)),
}


@pytest.mark.parametrize("problem", sorted(RECURRENT))
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrent_net_learns_each_recurrent_problem_a_little(problem, cell):
    torch.manual_seed(0)
    load, classes, loss_fn, shape = RECURRENT[problem]
    data = load()
    model = RecurrentNet(data.input_shape[-1], hidden=16, cell=cell, classes=classes)
    assert model(data.x_train[:5]).shape == shape
    first, last = _fit(model, (data.x_train, data.y_train), lambda m, b: loss_fn(m(b[0]), b[1]))
    assert last < 0.5 * first


def test_recurrent_net_refuses_one_class():
    with pytest.raises(ValueError, match="classes must be 0 .regression. or at least 2, got 1"):
        RecurrentNet(2, classes=1)


def test_causal_language_model_learns_and_never_looks_ahead():
    torch.manual_seed(0)
    data = generated.load_synthetic_lm(n_train=64, n_val=8, n_test=8)
    model = CausalTransformerLM(len(data.vocab), d_model=16, heads=2, layers=1, max_len=data.max_len)
    ids = data.train[:4].clone()
    before = model(ids)
    ids[:, 5:] = 7  # later tokens change: earlier positions' logits do not
    assert torch.allclose(model(ids)[:, :5], before[:, :5], atol=1e-6)

    def loss(m, rows):
        logits = m(rows[:, :-1])
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), rows[:, 1:], ignore_index=PAD)

    first, last = _fit(model, data.train, loss)
    assert last < 0.6 * first


# --- training end to end ----------------------------------------------------------------------------

def tiny(name: str):
    return override(load_task_config(name), {**TINY, **TINY_DATA.get(name, {})})


@pytest.mark.parametrize("name", sorted(TINY_DATA))
def test_each_new_kind_trains_through_train_and_reports_its_metric(name):
    cfg = tiny(name)
    result = train("adam", cfg, seed=0)
    assert result.status == "ok" and result.metric == cfg.metric
    assert result.lr in cfg.lr_grid and len(result.val_curve) == cfg.epochs
    if cfg.metric == "mse":
        assert result.val_metric == pytest.approx(result.val_loss)
    elif cfg.metric == "perplexity":
        assert result.val_metric == pytest.approx(math.exp(result.val_loss))
    else:
        assert 0 <= result.val_metric <= 100
    # The same seed gives the same result.
    assert train("adam", cfg, seed=0).val_metric == result.val_metric


def test_a_failed_run_reports_the_worst_value_of_a_lower_is_better_metric():
    result = train("sgd", tiny("panel_friedman_mlp"), seed=0, lr_grid=[1.0e6])
    assert result.diverged and result.val_metric == math.inf and result.reward == 0.0


def test_panel_tasks_are_trained_one_at_a_time_by_train_batch():
    cfg = tiny("panel_friedman_mlp")
    assert not batchable(cfg) and batchable(load_task_config("panel_digits_cnn"))
    [batched] = train_batch(["adam"], cfg, seed=0)
    assert batched.val_metric == train("adam", cfg, seed=0).val_metric


@pytest.mark.parametrize("name, shape", [("panel_adding_lstm", (6, 2)), ("panel_order_lstm", (8, 8))])
def test_panel_data_loads_through_the_config(name, shape):
    cfg = tiny(name)
    data = load_data(cfg)
    assert data.input_shape == shape and data is load_data(cfg)  # cached per process
