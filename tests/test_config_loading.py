"""Reading configs: bounded YAML, one wording for every config's mistakes, one override syntax.

Every config of the project (task, controller, run config, rule record) goes through `configuration`:
a hostile or broken file is refused in one line naming the file and the position, within milliseconds;
the same mistake reads the same in every config; ``--set KEY=VALUE`` changes a config on every command.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import configuration.loading
from child_tasks.config import load_task_config, task_config_from_dict
from configuration import (ABSENT, MAX_BYTES, MAX_DEPTH, ConfigError, apply_overrides, differences, flatten,
                           load_yaml, parse_overrides, parse_yaml, set_dotted)
from controller import ControllerConfig, load_controller_config
from discovered_rules import make_record, read_record
from search.cli import app
from search.config import SearchConfig, load_search_config

# The "billion laughs": nine levels of nine aliases stand for 9^9 (~4e8) strings in 0.3 KB.
LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True))
TASK = {"task": "digits", "model": {"name": "convnet", "width": 4}, "epochs": 1, "batch_size": 8,
        "lr_grid": [0.1], "short_run_epochs": 1}


def nested(depth: int) -> str:
    return "x: " + "{a: " * depth + "1" + "}" * depth + "\n"


# name -> (file content, phrase the one-line error holds)
BAD_FILES = {
    "billion laughs": (LAUGHS, "line 1, column 4 (at a): anchors and aliases"),
    "an alias deep inside": ("task: digits\nsearch: {budget: &n 3, patience: *n}\n", "(at search.budget)"),
    "a merge key": ("base: &b {x: 1}\nother: {<<: *b}\n", "anchors and aliases"),
    "nesting deeper than the limit": (nested(MAX_DEPTH + 5), f"nested deeper than {MAX_DEPTH} levels"),
    "nesting far deeper": ("[" * 50_000 + "]" * 50_000, "nest"),  # libyaml's own limit, or ours
    "binary (NUL bytes)": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file"),
    "not UTF-8": ("task: caf\xe9\n".encode("latin-1"), "not UTF-8 text (byte 9 is 0xe9)"),
    "oversized": ("# padding\n" * (MAX_BYTES // 10 + 1), "larger than 256 KiB, the size limit of a config"),
    "invalid YAML": ("task: [digits\n", "not valid YAML at line 2, column 1"),
    "a python tag": ("task: !!python/object/apply:os.system [ls]\n", "not valid YAML at line 1"),
    "a collection as a key": ("? [a, b]\n: 1\n", "a key must be a plain value"),
}


def _bad_file(name: str, tmp_path: Path) -> tuple[Path, str]:
    """BAD_FILES[name] written to a config file, and the phrase its error must hold."""
    content, phrase = BAD_FILES[name]
    path = tmp_path / "config.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path, phrase


@pytest.mark.parametrize("name", BAD_FILES)
@pytest.mark.parametrize("loader", [load_search_config, load_task_config, load_controller_config, load_yaml])
def test_bad_files_are_refused_in_one_line_naming_the_file_within_a_second(name, loader, tmp_path):
    path, phrase = _bad_file(name, tmp_path)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        loader(path)
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert phrase in message, message
    assert elapsed < 1.0, f"{name}: {elapsed:.2f} s"


@pytest.mark.parametrize("name", BAD_FILES)
def test_without_libyaml_the_same_files_are_refused(name, tmp_path, monkeypatch):
    monkeypatch.setattr(configuration.loading, "_Loader", yaml.SafeLoader)  # PyYAML built without libyaml
    path, _ = _bad_file(name, tmp_path)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    assert time.perf_counter() - start < 2.0


def test_the_billion_laughs_is_refused_in_milliseconds(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    assert len(LAUGHS) < 400
    start = time.perf_counter()
    for _ in range(10):
        with pytest.raises(ConfigError, match="anchors and aliases"):
            load_search_config(path)
    assert (time.perf_counter() - start) / 10 < 0.05


def test_nesting_up_to_the_limit_reads(tmp_path):
    assert parse_yaml(nested(MAX_DEPTH - 1), "f.yaml")["x"]["a"]["a"]["a"]
    with pytest.raises(ConfigError, match=f"f.yaml: line 1, column .*nested deeper than {MAX_DEPTH}"):
        parse_yaml(nested(MAX_DEPTH), "f.yaml")


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run config at .*absent.yaml"):
        load_search_config(tmp_path / "absent.yaml")
    with pytest.raises(FileNotFoundError, match="no controller config at"):
        load_controller_config(tmp_path)  # a folder is not a config file
    (tmp_path / "empty.yaml").touch()
    assert load_yaml(tmp_path / "empty.yaml") is None
    with pytest.raises(ConfigError, match="empty.yaml: 6 problem.*\n  task: required key is missing"):
        load_task_config(tmp_path / "empty.yaml")  # an empty file is an empty mapping
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError,
                       match=r"list.yaml: expected a mapping of keys \(task: ..., search: ...\)"):
        load_search_config(tmp_path / "list.yaml")


def record_mistake(values: dict, path: Path) -> None:
    path.write_text(json.dumps(values))
    read_record(path)


def a_record() -> dict:
    return json.loads(make_record("nos_one", "sign(g)", task="digits", rewards={0: 0.5}).model_dump_json())


# config -> (a function that reads a mapping with a mistake, a valid mapping)
CONFIGS = {
    "task": (lambda values, path: task_config_from_dict(values, str(path)), TASK),
    "controller": (lambda values, path: ControllerConfig.from_mapping(values, str(path)),
                   {"kind": "ppo", "ppo": {"lr": 0.01}}),
    "run": (lambda values, path: SearchConfig.from_mapping(values, str(path)),
            {"task": "digits", "search": {"budget": 5}}),
    "record": (record_mistake, None),
}
# (config, change to the valid mapping, phrase): the same mistake worded the same way in every config
MISTAKES = [
    ("task", {"epoch": 3}, "epoch: unknown key; did you mean epochs? (known keys here: name, task, model,"),
    ("controller", {"ppo": {"lrr": 0.1}}, "ppo.lrr: unknown key; did you mean lr? (known keys here: lr,"),
    ("run", {"serach": {}}, "serach: unknown key; did you mean search? (known keys here: task,"),
    ("record", {"rewrds": {}}, "rewrds: unknown key; did you mean rewards? (known keys here: name, rule,"),
    ("task", {"epochs": None}, "epochs: expected a valid integer, got None"),
    # Whole numbers are strict (configuration.models): a string is not parsed as a number.
    ("controller", {"batch_size": "many"}, "batch_size: expected a valid integer, got 'many'"),
    ("run", {"search": {"budget": "many"}}, "search.budget: expected a valid integer, got 'many'"),
    ("record", {"date": 5}, "date: expected a valid date, got 5"),
    ("task", {"model": {"name": "convnett"}}, "model.name: expected one of convnet, wrn, transformer, cnn1d, "
                                              "mlp, rnn, causal_transformer, got 'convnett'; did you mean "
                                              "'convnet'?"),
    ("controller", {"kind": "ppx"}, "kind: expected 'ppo', 'evolution' or 'random', got 'ppx'; did you mean "
                                    "'ppo'?"),
    ("run", {"wandb": {"mode": "ofline"}}, "wandb.mode: expected 'disabled', 'offline' or 'online', got "
                                           "'ofline'; did you mean 'offline'"),
    ("task", {"lr_grid": [0.1, -1]}, "lr_grid[1]: expected greater than 0, got -1"),
    ("record", {"rewards": {"0": "x"}}, "rewards.0: expected a valid number, got 'x'"),
]
MISSING = [("task", "epochs"), ("run", "search"), ("record", "task")]


@pytest.mark.parametrize(("config", "change", "phrase"), MISTAKES)
def test_the_same_mistake_reads_the_same_in_every_config(config, change, phrase, tmp_path):
    read, valid = CONFIGS[config]
    values = {**(valid or a_record()), **change}
    path = tmp_path / f"{config}.yaml"
    with pytest.raises(ConfigError) as info:
        read(values, path)
    message = str(info.value)
    assert message.startswith(f"{path}: 1 problem(s) in the "), message
    assert f"\n  {phrase}" in message, message


@pytest.mark.parametrize(("config", "key"), MISSING)
def test_a_missing_key_says_so(config, key, tmp_path):
    read, valid = CONFIGS[config]
    values = dict(valid or a_record())
    del values[key]
    with pytest.raises(ConfigError) as info:
        read(values, tmp_path / "c")
    assert f"\n  {key}: required key is missing" in str(info.value)


# (arguments, exit status, phrase): the one override syntax on both commands
COMMANDS = [
    (["search", "--set", "search.budgt=3"], 2, "search.budgt: unknown key; did you mean budget?"),
    (["search", "--set=task_overrides.epoch=3"], 2, "epoch: unknown key; did you mean epochs?"),
    (["search", "--set", "search.budget"], 2, "--set 'search.budget': not KEY=VALUE with a dotted KEY"),
    (["search", "--set", "search.budget=[1"], 2, "--set search.budget: not valid YAML"),
    (["search", "--set", "search.budget=&a 3"], 2,
     "--set search.budget: line 1, column 1: anchors and aliases"),
    (["search", "--set", "task.epochs=3"], 2,
     "cannot set task.epochs: task is str 'embedded', not a mapping (use task_overrides.epochs=...)"),
    (["search", "search.budget=3", "task=[digits, mnist1d_cnn]"], 2,
     "overrides are given with --set (as for nos transfer): nos search --set search.budget=3 --set "
     "'task=[digits, mnist1d_cnn]'"),
    (["search", "--set", "task=[digits, mnist1d_cnnn]"], 2,
     "task: suite 'digits+mnist1d_cnnn', task 2: no task config at"),
    (["transfer", "powersign", "--task", "digits", "--set", "epochs=0"], 1,
     "epochs: expected greater than or equal to 1, got 0"),
    (["transfer", "powersign", "--task", "digits", "--set", "model.widht=3"], 1,
     "model.widht: unknown key; did you mean width?"),
    (["transfer", "powersign", "--task", "digits", "--set", "epochs"], 1,
     "--set 'epochs': not KEY=VALUE with a dotted KEY"),
]


@pytest.mark.parametrize(("args", "status", "phrase"), COMMANDS)
def test_both_commands_take_the_same_overrides(args, status, phrase, tmp_path):
    if args[0] == "search":
        args = [*args, "--run-dir", str(tmp_path / "run")]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    output = " ".join(result.output.split())
    assert result.exit_code == status and phrase in output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_nos_search_refuses_the_billion_laughs_in_one_line(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["search", "--config", str(path), "--run-dir", str(tmp_path / "run")],
                                env={"COLUMNS": "400"})
    assert time.perf_counter() - start < 2
    assert result.exit_code == 2 and "anchors and aliases" in result.output
    assert "Traceback" not in result.output


def test_dotted_keys():
    assert parse_overrides(["a.b=[1, 2]", "c=x=y", " d = 3"]) == {"a.b": [1, 2], "c": "x=y", "d": 3}
    raw = {"search": {"budget": 1}, "task": "digits"}
    changed = apply_overrides(raw, ["search.budget=2", "new.key=1"])
    assert changed == {"search": {"budget": 2}, "task": "digits", "new": {"key": 1}}
    assert raw == {"search": {"budget": 1}, "task": "digits"}, "the mapping given is left as it was"
    with pytest.raises(ConfigError, match=r"run.yaml: cannot set task.epochs: task is str 'digits', not a "
                                          r"mapping \(use task_overrides.epochs=...\)"):
        apply_overrides(raw, {"task.epochs": 3}, "run.yaml", hints={"task": "use task_overrides.{rest}=..."})
    values: dict = {}
    set_dotted(values, "model.width", 8)
    assert values == {"model": {"width": 8}} and flatten({"a": {"b": 1, "c": {}}}) == {"a.b": 1, "a.c": {}}
    assert differences({"ppo": {"lr": 1}, "seed": 0}, {"ppo": {"lr": 2}, "x": None}, ignore=["seed"]) == [
        ("ppo.lr", 1, 2), ("x", ABSENT, None)]
    assert differences({"x": None}, {}, missing=None) == []
    with pytest.raises(ConfigError, match="more than 32 dotted parts"):
        parse_overrides([".".join("a" * 40) + "=1"])


# Text built from YAML's punctuation, keys the configs know and a few they do not.
WORDS = ["task", "search", "budget", "controller", "kind", "ppo", "lr", "epochs", "model", "name", "digits",
         "convnet", "suite", "task_overrides", "confirm", "top_k", "wandb", "mode", "null", "1", "-1", "0.5",
         "1e309", "nan", ".inf", "true", "x", "~", "[]", "{}", "'", '"', "&a", "*a", "!!str", "<<", "|", "-"]
yamlish = st.lists(st.one_of(st.sampled_from(WORDS), st.sampled_from([": ", ", ", "\n", "  ", "[", "]", "{",
                                                                     "}", "- ", "#", "="])),
                   max_size=40).map("".join)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.sampled_from(WORDS),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(WORDS), inner, max_size=3),
    max_leaves=10)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=yamlish)
def test_any_text_is_a_config_or_a_config_error(text):
    for read in (lambda v: SearchConfig.from_mapping(v, "f"), lambda v: ControllerConfig.from_mapping(v, "f"),
                 lambda v: task_config_from_dict(v if isinstance(v, dict) else {}, "f")):
        try:
            read(parse_yaml(text, "f"))
        except ConfigError as err:
            assert str(err).startswith("f"), err


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=st.lists(st.tuples(st.sampled_from(["search.budget", "task_overrides.epochs", "task",
                                                     "controller.kind", "controller", "search", "x.y", "",
                                                     "task_overrides.model.width", "confirm.top_k", "a..b"]),
                                    yamlish).map("=".join), max_size=3),
       mapping=st.dictionaries(st.sampled_from(WORDS), values, max_size=4))
def test_any_override_is_a_config_or_a_config_error(overrides, mapping):
    base = {"task": TASK, "search": {"budget": 3}}
    for values in (base, mapping):
        try:
            SearchConfig.from_mapping(values, "f", overrides)
        except ConfigError as err:
            assert str(err).startswith("f"), err
