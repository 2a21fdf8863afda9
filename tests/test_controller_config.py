"""Controller configs: defaults, presets and subsets, YAML loading, and errors a person can act on."""

from __future__ import annotations

import pytest

from controller import ConfigError, ControllerConfig, load_controller_config, make_searcher
from controller import PPOController, RandomSearch
from dsl import nos_vocabulary
from dsl.groups import ALL_OPERANDS


def test_defaults_are_the_nos_space_and_its_controller() -> None:
    config = ControllerConfig()
    assert config.vocabulary.group_vocabulary() == nos_vocabulary(2)
    assert config.policy.hidden_size == 150 and config.policy.init_range == 0.08
    assert config.ppo.clip == 0.2
    assert ControllerConfig.from_mapping(None) == config == ControllerConfig.from_mapping({})


def test_presets_and_subsets() -> None:
    config = ControllerConfig.from_mapping({"vocabulary": {"operands": "all", "unary": ["identity", "exp"],
                                                           "binary": ["mul"], "groups": 1}})
    assert config.vocabulary.operands == tuple(ALL_OPERANDS)
    assert config.vocabulary.group_vocabulary().choices(0, 2) == ("identity", "exp")


def test_yaml_file_and_section(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("task: digits\ncontroller:\n  kind: random\n  batch_size: 20\n  ppo: {lr: 0.01}\n")
    config = load_controller_config(path, section="controller")
    assert (config.kind, config.batch_size, config.ppo.lr) == ("random", 20, 0.01)
    assert isinstance(make_searcher(config), RandomSearch)
    assert isinstance(make_searcher(config.model_copy(update={"kind": "ppo"})), PPOController)
    with pytest.raises(ConfigError, match="no 'search' section"):
        load_controller_config(path, section="search")
    (tmp_path / "bad.yaml").write_text("kind: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_controller_config(tmp_path / "bad.yaml")
    with pytest.raises(FileNotFoundError):
        load_controller_config(tmp_path / "missing.yaml")


# mapping -> phrases its error must contain
BAD = [
    ({"ppo": {"lrr": 0.1}}, ["ppo.lrr: unknown key", "did you mean lr"]),
    ({"polcy": {}}, ["polcy: unknown key", "did you mean policy"]),
    ({"ppo": {"clip": 1.5}}, ["ppo.clip", "less than 1"]),
    ({"ppo": {"epochs": 0}}, ["ppo.epochs", "greater than or equal to 1"]),
    ({"policy": {"temperature": -1}}, ["policy.temperature", "greater than 0"]),
    ({"kind": "genetic"}, ["kind", "'ppo', 'evolution' or 'random'"]),
    ({"vocabulary": {"operands": ["g", "mhta"]}},
     ["vocabulary: unknown operand 'mhta'", "did you mean mhat"]),
    ({"vocabulary": {"unary": "most"}}, ["vocabulary.unary", "a preset name (nos or all)", "'most'"]),
    ({"vocabulary": {"binary": ["mul", "mul"]}}, ["without repeats"]),
    ({"vocabulary": {"groups": 9}}, ["vocabulary.groups", "less than or equal to 8"]),
    ({"batch_size": "many"}, ["batch_size", "valid integer"]),
    ({"ppo": {"risk_seeking": 1.5}}, ["ppo.risk_seeking", "less than or equal to 1"]),
    ({"ppo": {"risk_seeking": 0}}, ["ppo.risk_seeking", "greater than 0"]),
    ({"ppo": {"elite_replay": -3}}, ["ppo.elite_replay", "greater than or equal to 0"]),
    ({"ppo": {"elite_reply": 5}}, ["ppo.elite_reply: unknown key", "did you mean elite_replay"]),
    ({"vocabulary": {"last_group_reads_previous": "sometimes"}},
     ["vocabulary.last_group_reads_previous", "valid boolean", "'sometimes'"]),
    ({"vocabulary": {"last_group_reads_prev": True}},
     ["vocabulary.last_group_reads_prev: unknown key", "did you mean last_group_reads_previous"]),
]


@pytest.mark.parametrize(("mapping", "phrases"), BAD)
def test_errors_name_the_key_and_the_expectation(mapping, phrases) -> None:
    with pytest.raises(ConfigError) as info:
        ControllerConfig.from_mapping(mapping, source="test.yaml")
    message = str(info.value)
    assert message.startswith("test.yaml: 1 problem(s)")
    for phrase in phrases:
        assert phrase in message


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError, match="3 problem") as info:
        ControllerConfig.from_mapping({"ppo": {"lr": 0, "clip": 2}, "seeds": 1})
    assert all(k in str(info.value) for k in ("ppo.lr", "ppo.clip", "seeds"))


def test_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        ControllerConfig.from_mapping(["ppo"])  # type: ignore[arg-type]
