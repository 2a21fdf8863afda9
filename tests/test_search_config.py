"""Run configs of the search: the shipped configs, overrides, the stored copy, errors a person can act on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from configuration import ConfigError, apply_overrides, parse_overrides
from search.config import DEFAULT_CONFIG, SearchConfig, load_search_config
from tests.search_helpers import tiny_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_quickstart_is_the_default_and_searches_the_embedded_suite_with_ppo() -> None:
    config = load_search_config()
    assert DEFAULT_CONFIG == CONFIGS / "quickstart.yaml"
    assert config.suite.names == ["mnist1d_cnn", "mnist1d_mlp"] and config.controller.kind == "ppo"
    assert all(t.reward == "train_loss" for t in config.suite.tasks), "a continuous, normalised reward"
    assert config.wandb.mode == "disabled" and config.search.workers is None
    assert config.search.max_batches_ahead >= 1, "the workers train the next batch while PPO waits"
    assert (config.confirm.top_k, config.confirm.seeds) == (3, 5), "a verdict takes 5 paired seeds"
    assert "lion" in config.confirm.baselines, "lion among the baselines"


def test_search_and_confirm_defaults() -> None:
    config = SearchConfig.from_mapping(tiny_config())
    assert (config.search.patience, config.search.max_batches_ahead) == (20, 1)
    assert config.confirm.top_k == 0, "no confirm section: nothing is confirmed or exported"
    config = SearchConfig.from_mapping({**tiny_config(), "confirm": {"seeds": 2, "baselines": ["sgd"]}})
    assert (config.confirm.top_k, config.confirm.seeds, config.confirm.baselines) == (5, 2, ("sgd",))
    assert SearchConfig.from_mapping(config.to_mapping()).confirm == config.confirm  # stored with the run


def test_cifar10_config_is_nos_setup() -> None:
    config = load_search_config(CONFIGS / "cifar10_nos.yaml")
    task = config.task_config
    assert (task.task, task.model.name, task.model.width, task.epochs) == ("cifar10", "convnet", 32, 5)
    assert len(task.lr_grid) > 1 and config.search.gpu_fraction == 0.25
    assert config.search.budget > load_search_config().search.budget


def test_a_run_config_may_name_a_list_of_tasks_and_overrides_reach_each() -> None:
    mapping = {**tiny_config(task={"epochs": 12}), "task": ["mnist1d_cnn", "mnist1d_mlp"]}
    config = SearchConfig.from_mapping(mapping)
    assert config.suite.names == ["mnist1d_cnn", "mnist1d_mlp"]
    assert [t.epochs for t in config.suite.tasks] == [12, 12]
    again = SearchConfig.from_mapping(config.to_mapping())
    assert again.suite == config.suite, "stored inline, read back equal"


def test_cluster_launcher_config_installs_the_project_and_runs_nothing_else() -> None:
    cluster = yaml.safe_load((CONFIGS / "cluster.yaml").read_text())
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type", "setup_commands"):
        assert key in cluster
    head = cluster["available_node_types"][cluster["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert any(t["resources"].get("GPU", 0) > 0 for t in cluster["available_node_types"].values())
    assert any("pip install" in c for c in cluster["setup_commands"])


def test_overrides_use_dotted_keys_and_yaml_values() -> None:
    config = load_search_config(None, ["search.budget=7", "controller.kind=random", "task_overrides.epochs=9",
                                       "search.time_limit_s=2.5", "wandb.entity=null"])
    assert (config.search.budget, config.controller.kind, config.task_config.epochs) == (7, "random", 9)
    assert config.search.time_limit_s == 2.5 and config.wandb.entity is None
    assert parse_overrides(["a.b=[1, 2]", "c=x=y"]) == {"a.b": [1, 2], "c": "x=y"}
    raw = {"search": {"budget": 1}}
    assert apply_overrides(raw, ["search.budget=2"]) == {"search": {"budget": 2}}
    assert raw["search"]["budget"] == 1, "the mapping given is left as it was"


def test_nested_task_overrides_set_one_key_of_a_section() -> None:
    config = SearchConfig.from_mapping(tiny_config(task={"model": {"width": 3}}))
    assert config.task_config.model.name == "convnet" and config.task_config.model.width == 3


def test_stored_copy_is_self_contained_and_reads_back_equal() -> None:
    config = SearchConfig.from_mapping(tiny_config())
    stored = config.to_mapping()
    assert isinstance(stored["task"], dict) and stored["task_overrides"] == {}
    assert [t["model"]["width"] for t in stored["task"]["suite"]] == [4]
    again = SearchConfig.from_mapping(stored)
    assert again.task_config == config.task_config and again.to_mapping() == stored
    assert yaml.safe_load(yaml.safe_dump(stored)) == stored  # plain data only


# (mapping, overrides) -> phrases its error must contain
BAD = [
    ({"search": {"budget": 5}}, [], ["task: required key is missing"]),
    ({"task": "digits"}, [], ["search: required key is missing"]),
    ({"task": "digitz", "search": {"budget": 5}}, [], ["task: no task config", "did you mean 'digits'"]),
    ({"task": 5, "search": {"budget": 5}}, [], ["task: expected a task config name"]),
    ({"task": "digits", "search": {"budgt": 5}}, [], ["search.budgt: unknown key", "did you mean budget"]),
    ({"task": "digits", "search": {"budget": 0}}, [], ["search.budget", "greater than or equal to 1"]),
    ({"task": "digits", "search": {"budget": 5, "gpu_fraction": 1.5}}, [],
     ["search.gpu_fraction", "less than"]),
    ({"task": "digits", "search": {"budget": 5, "workers": "many"}}, [], ["search.workers", "valid integer"]),
    ({"task": "digits", "search": {"budget": 5}, "controler": {}}, [], ["controler: unknown key",
                                                                        "did you mean controller"]),
    ({"task": "digits", "search": {"budget": 5}, "controller": {"ppo": {"lrr": 1}}}, [],
     ["controller.ppo.lrr: unknown key", "did you mean lr"]),
    ({"task": "digits", "search": {"budget": 5}, "controller": {"kind": "ppx"}}, [],
     ["controller.kind", "did you mean 'ppo'"]),
    ({"task": "digits", "search": {"budget": 5}, "wandb": {"mode": "ofline"}}, [],
     ["wandb.mode", "did you mean 'offline'"]),
    ({"task": "digits", "search": {"budget": 5}}, ["task_overrides.epochs=0"],
     ["task_overrides: digits", "epochs: expected greater than or equal to 1"]),
    ({"task": "digits", "search": {"budget": 5}}, ["task_overrides.model.widht=3"],
     ["model.widht: unknown key", "did you mean width?"]),
    ({"task": "digits", "search": {"budget": 5}}, ["serach.budget=3"], ["serach: unknown key",
                                                                         "did you mean search"]),
    ({"task": "digits", "search": {"budget": 5}}, ["task.epochs=3"],
     ["task is str", "use task_overrides.epochs"]),
    ({"task": "digits", "search": {"budget": 5}}, ["search.budget"], ["not KEY=VALUE"]),
    ({"task": "digits", "search": {"budget": 5, "patience": 0}}, [], ["search.patience", "greater than"]),
    ({"task": "digits", "search": {"budget": 5, "max_batches_ahead": -1}}, [],
     ["search.max_batches_ahead", "greater than or equal to 0"]),
    ({"task": "digits", "search": {"budget": 5}, "confirm": {"top_k": -1}}, [],
     ["confirm.top_k", "greater than or equal to 0"]),
    ({"task": "digits", "search": {"budget": 5}, "confirm": {"baselines": ["adm"]}}, [],
     ["confirm.baselines", "unknown torch baseline 'adm'", "did you mean 'adam'"]),
    ({"task": "digits", "search": {"budget": 5}, "confirm": {"top": 3}}, [],
     ["confirm.top: unknown key", "did you mean top_k"]),
    # values that passed validation and broke the run after Ray started (issue 14): finite and in range
    ({"task": "digits", "search": {"budget": 5}}, ["search.models_per_worker=0"],
     ["search.models_per_worker", "greater than or equal to 1"]),
    ({"task": "digits", "search": {"budget": 5}}, ["search.invalid_reward=.inf"],
     ["search.invalid_reward", "finite number"]),
    ({"task": "digits", "search": {"budget": 5}}, ["search.invalid_reward=.nan"],
     ["search.invalid_reward", "finite number"]),
    ({"task": "digits", "search": {"budget": 5}}, ["search.eval_seed=1099511627776"],
     ["search.eval_seed", "less than 4294967296"]),
    ({"task": "digits", "search": {"budget": 5}}, ["search.eval_seed=-1"],
     ["search.eval_seed", "greater than or equal to 0"]),
    ({"task": "digits", "search": {"budget": 5}}, ["search.time_limit_s=.inf"],
     ["search.time_limit_s", "finite number"]),
    ({"task": "digits", "search": {"budget": 5}}, ["confirm.budget_scale=.nan"],
     ["confirm.budget_scale", "finite number"]),
    ({"task": "digits", "search": {"budget": 5}}, ["controller.ppo.lr=.nan"],
     ["controller.ppo.lr", "finite number"]),
    ({"task": "digits", "search": {"budget": 5}}, ["controller.seed=-3"],
     ["controller.seed", "greater than or equal to 0"]),
    ({"task": "digits", "search": {"budget": 5}}, ["task_overrides.lr_grid=[0.1, .nan]"],
     ["lr_grid[1]", "finite number"]),
    ({"task": "digits", "search": {"budget": 5}}, ["task_overrides.seeds=[0, 4294967296]"],
     ["seeds[1]", "less than 4294967296"]),
]


@pytest.mark.parametrize(("mapping", "overrides", "phrases"), BAD)
def test_errors_name_the_key_and_what_was_expected(mapping, overrides, phrases) -> None:
    with pytest.raises(ConfigError) as info:
        SearchConfig.from_mapping(mapping, source="run.yaml", overrides=overrides)
    message = str(info.value)
    assert message.startswith("run.yaml")
    for phrase in phrases:
        assert phrase in message, message


def test_every_problem_is_reported_at_once(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"task": "digits", "search": {"budget": -1, "max_retries": -1},
                                    "wandb": {"mod": "offline"}}))
    with pytest.raises(ConfigError, match="3 problem") as info:
        load_search_config(path)
    assert str(path) in str(info.value) and "wandb.mod: unknown key" in str(info.value)


def test_files_that_cannot_be_read(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no run config"):
        load_search_config(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("task: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_search_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_search_config(tmp_path / "list.yaml")
