"""Task configs: the shipped files load, and every kind of mistake is reported with file, key and hint."""

from __future__ import annotations

import textwrap

import pytest

from child_tasks.config import (
    CONFIG_DIR,
    ConfigError,
    TaskConfig,
    available_configs,
    load_task_config,
    override,
    task_config_from_dict,
)

SHIPPED = {
    # name: (task, model, epochs, batch_size, metric)
    "digits": ("digits", "convnet", None, None, "accuracy"),
    "cifar10_convnet": ("cifar10", "convnet", 5, 100, "accuracy"),
    "wrn_cifar10": ("cifar10", "wrn", None, None, "accuracy"),
    "nmt_synthetic": ("nmt", "transformer", None, None, "bleu"),
    "nmt_tiny": ("nmt", "transformer", None, None, "accuracy"),
    "mnist1d_cnn": ("mnist1d", "cnn1d", None, 100, "accuracy"),
    "mnist1d_mlp": ("mnist1d", "mlp", None, 100, "accuracy"),
}

VALID = """
    task: digits
    model: {name: convnet, width: 8}
    epochs: 2
    batch_size: 64
    lr_grid: [1.0e-3, 1.0e-2]
    short_run_epochs: 1
"""


def write(tmp_path, text: str, name: str = "task.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_every_shipped_config_is_listed():
    # The held-out panel's configs (panel_*) are checked by tests/test_panel_tasks.py.
    assert {n for n in available_configs() if not n.startswith("panel_")} == set(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_configs_load_with_their_name(name):
    task, model, epochs, batch, metric = SHIPPED[name]
    cfg = load_task_config(name)
    assert (cfg.name, cfg.task, cfg.model.name, cfg.metric) == (name, task, model, metric)
    assert cfg.data.kind == task
    if epochs is not None:
        assert (cfg.epochs, cfg.batch_size) == (epochs, batch)
    assert cfg == load_task_config(CONFIG_DIR / f"{name}.yaml")  # a bare name is configs/NAME.yaml


def test_nos_child_task_is_the_papers_convnet():
    cfg = load_task_config("cifar10_convnet")
    assert cfg.model.width == 32 and cfg.lr_grid == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]


def test_a_valid_file_anywhere_loads_and_data_defaults_follow_the_task(tmp_path):
    cfg = load_task_config(write(tmp_path, VALID, "mine.yaml"))
    assert isinstance(cfg, TaskConfig) and cfg.name == "mine"
    assert (cfg.data.kind, cfg.data.val_fraction) == ("digits", 0.2)
    assert (cfg.seeds, cfg.blowup_factor) == ([0, 1, 2], 10.0)


# (yaml text added to VALID or replacing a key, fragments the message must contain)
MISTAKES = [
    ("model: {name: convnet, widht: 8}", ["model.widht: unknown key", "did you mean width?"]),
    ("epoch: 3", ["epoch: unknown key", "did you mean epochs?"]),
    ("data: {val_fracton: 0.3}", ["data.val_fracton: unknown key", "did you mean val_fraction"]),
    ("epochs: five", ["epochs: expected a valid integer", "got 'five'"]),
    ("batch_size: 0", ["batch_size: expected greater than or equal to 1", "got 0"]),
    ("lr_grid: [1.0e-3, -1]", ["lr_grid[1]: expected greater than 0", "got -1"]),
    ("task: digit", ["task: expected 'digits', 'mnist1d', 'cifar10', 'nmt'", "did you mean 'digits'"]),
    ("model: {name: convnett}", ["model.name: expected one of convnet, wrn, transformer",
                                 "did you mean 'convnet'"]),
    ("model: {width: 8}", ["model: needs a 'name' key"]),
    ("model: {name: wrn, depth: 15}", ["depth must be 6n+4", "got 15"]),
    ("model: {name: transformer}", ["task 'digits' needs model convnet or wrn or mlp, got 'transformer'"]),
    ("metric: bleu", ["metric 'bleu' is for the nmt task"]),
    ("short_run_epochs: 3", ["short_run_epochs (3.0) is longer than epochs (2)"]),
]


def with_key(text: str) -> str:
    key = text.split(":", 1)[0]
    lines = [line for line in textwrap.dedent(VALID).splitlines() if not line.startswith(f"{key}:")]
    return "\n".join([*lines, text])


@pytest.mark.parametrize("line, fragments", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistakes_name_the_file_the_key_and_what_was_expected(tmp_path, line, fragments):
    path = write(tmp_path, with_key(line))
    with pytest.raises(ConfigError) as info:
        load_task_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: 1 problem(s)"), message
    for fragment in fragments:
        assert fragment in message, message


def test_all_problems_are_reported_at_once(tmp_path):
    path = write(tmp_path, with_key("epochs: five") + "\nepoch: 3\nbatch_size: -1\n")
    with pytest.raises(ConfigError, match="3 problem"):
        load_task_config(path)


def test_missing_file_names_the_path_and_suggests_a_config():
    with pytest.raises(FileNotFoundError, match=r"configs/digitz\.yaml \(did you mean 'digits'\?\); avail"):
        load_task_config("digitz")


def test_missing_required_key_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="epochs: required key is missing"):
        load_task_config(write(tmp_path, VALID.replace("epochs: 2", "")))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_task_config(write(tmp_path, "task: [digits"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_task_config(write(tmp_path, "- digits"))


def test_override_reaches_into_sections_and_validates_again():
    cfg = load_task_config("digits")
    small = override(cfg, {"model.width": 4, "epochs": 1, "short_run_epochs": 1})
    assert (small.model.width, small.epochs, small.name) == (4, 1, "digits")
    assert cfg.model.width != 4  # the original is untouched (configs are frozen)
    with pytest.raises(ConfigError, match="model.widht: unknown key"):
        override(cfg, {"model.widht": 4})


def test_configs_from_dicts_name_their_source():
    with pytest.raises(ConfigError, match="^sweep: 1 problem"):
        task_config_from_dict({"task": "digits", "model": {"name": "convnet"}, "epochs": 1, "batch_size": 8,
                               "lr_grid": [0.1], "short_run_epochs": 1, "seeds": []}, source="sweep")
