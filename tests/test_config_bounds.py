"""Every number a config takes is strict and bounded, checked when it is loaded: hostile ``--set`` values
are one short error naming the key and its bound, within seconds, and any override either validates
within every bound or is a ConfigError (a property test)."""

from __future__ import annotations

import time
import types
import typing
from typing import Any

import annotated_types
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

import search.driver  # noqa: F401  (imported here, so that no case below times the imports)
from child_tasks.config import TaskConfig, load_task_config
from configuration import (
    MAX_BATCH,
    MAX_BUDGET,
    MAX_EPOCHS,
    MAX_PATH_CHARS,
    MAX_WIDTH,
    MAX_WORKERS,
    ConfigError,
    flatten,
)
from search.cli import app
from search.config import MAX_STAGES, SearchConfig
from tests.search_helpers import tiny_config

runner = CliRunner()
HUGE = 10**30
BASE = {"task": "digits", "search": {"budget": 3}}


# --- every whole number is strict and bounded ------------------------------------------------------

def _constraints(field: Any) -> tuple[list[Any], Any]:
    """A field's constraints (its own and those of an ``Annotated`` type, also inside ``X | None``) and
    its type without them."""
    metas, annotation = list(field.metadata), field.annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else annotation
    while typing.get_origin(annotation) is typing.Annotated:
        annotation, *extra = typing.get_args(annotation)
        metas += [m for info in extra for m in getattr(info, "metadata", [])]
    return metas, annotation


def _models(*roots: type[BaseModel]) -> list[type[BaseModel]]:
    """Every config model reachable from ``roots`` through their fields (unions and lists included)."""
    seen: list[type[BaseModel]] = []
    todo: list[Any] = list(roots)
    while todo:
        node = todo.pop()
        if isinstance(node, type) and issubclass(node, BaseModel):
            if node not in seen:
                seen.append(node)
                todo += [f.annotation for f in node.model_fields.values()]
        else:
            todo += list(typing.get_args(node))
    return seen


def _whole_numbers(model: type[BaseModel]) -> list[tuple[str, list[Any]]]:
    out = []
    for name, field in model.model_fields.items():
        metas, annotation = _constraints(field)
        if annotation is int:
            out.append((f"{model.__name__}.{name}", metas))
        elif typing.get_origin(annotation) is list and typing.get_args(annotation):
            item, extra = typing.get_args(annotation)[0], []
            while typing.get_origin(item) is typing.Annotated:
                item, *infos = typing.get_args(item)
                extra += [m for info in infos for m in getattr(info, "metadata", [])]
            if item is int:
                out.append((f"{model.__name__}.{name}[]", extra))
    return out


def test_every_whole_number_of_every_config_is_strict_and_bounded_both_ways() -> None:
    # A search config names its tasks, which are task configs (child_tasks.config).
    fields = [entry for model in _models(SearchConfig, TaskConfig) for entry in _whole_numbers(model)]
    assert len(fields) > 60, "the task, controller and search sections are all walked"
    for name, metas in fields:
        kinds = {type(m).__name__ for m in metas}
        assert "Strict" in kinds, f"{name} takes floats and bools"
        assert kinds & {"Le", "Lt"} and kinds & {"Ge", "Gt"}, f"{name} is not bounded both ways: {metas}"


def _check_bounds(model: BaseModel, where: str = "") -> None:
    """Every whole number of a validated config is an int (not a bool) within its field's bounds."""
    for name, field in type(model).model_fields.items():
        value, key = getattr(model, name), f"{where}{name}"
        metas, _ = _constraints(field)
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if isinstance(item, BaseModel):
                _check_bounds(item, f"{key}.")
            elif isinstance(item, int | float) and not isinstance(item, bool):
                for m in metas:
                    check = _BOUNDS.get(type(m))
                    assert check is None or check(item, m), f"{key} = {item} passed {m}"


_BOUNDS = {annotated_types.Ge: lambda v, b: v >= b.ge, annotated_types.Le: lambda v, b: v <= b.le,
           annotated_types.Gt: lambda v, b: v > b.gt, annotated_types.Lt: lambda v, b: v < b.lt}


# --- hostile --set values: one short error naming the key and the bound, within seconds ---------------

LONG_TASK = "x" * 100_000
FUNNEL = "[" + ", ".join(["{promote: 0.5}"] * (MAX_STAGES + 1)) + "]"
HOSTILE = [  # (override, what the error line says)
    (f"search.budget={HUGE}", f"search.budget: expected less than or equal to {MAX_BUDGET}, got {HUGE}"),
    ("search.budget=1.0e+30", "search.budget: expected a valid integer, got 1e+30"),
    ("search.budget=1e30", "search.budget: expected a valid integer, got '1e30'"),
    ("search.budget=2.5", "search.budget: expected a valid integer, got 2.5"),
    ("search.budget=true", "search.budget: expected a valid integer, got True"),
    ("search.budget=-1", "search.budget: expected greater than or equal to 1, got -1"),
    ("search.workers=100000000", f"search.workers: expected less than or equal to {MAX_WORKERS}"),
    ("search.patience=0", "search.patience: expected greater than or equal to 1"),
    (f"controller.batch_size={HUGE}", f"controller.batch_size: expected less than or equal to {MAX_BATCH}"),
    ("controller.policy.hidden_size=1000000000",
     f"controller.policy.hidden_size: expected less than or equal to {MAX_WIDTH}"),
    ("controller.ppo.epochs=4.0", "controller.ppo.epochs: expected a valid integer, got 4.0"),
    ("controller.seed=-3", "controller.seed: expected greater than or equal to 0"),
    ("controller.evolution.population=false", "controller.evolution.population: expected a valid integer"),
    (f"task_overrides.epochs={HUGE}", f"epochs: expected less than or equal to {MAX_EPOCHS}"),
    ("task_overrides.batch_size=true", "batch_size: expected a valid integer, got True"),
    ("task_overrides.model.width=1e9", "model.width: expected a valid integer, got '1e9'"),
    ("confirm.top_k=1000000", "confirm.top_k: expected less than or equal to 1000"),
    ("confirm.seeds=0", "confirm.seeds: expected greater than or equal to 1"),
    ("confirm.budget_scale=1e300", "confirm.budget_scale: expected less than or equal to 100, got '1e300'"),
    ("confirm.budget_scale=1.0e+300", "confirm.budget_scale: expected less than or equal to 100"),
    (f"funnel={FUNNEL}", f"funnel: List should have at most {MAX_STAGES} items"),
    ("funnel=[{promote: 0.5, seeds: 1000}]", "funnel[0].seeds: expected less than or equal to 64"),
    ("funnel=[{promote: 0.5, budget_scale: 1.0e+9}]", "funnel[0].budget_scale: expected less than or equal"),
    (f"task={LONG_TASK}", f"task: a task config name or path is at most {MAX_PATH_CHARS} characters, got "
                          "100000 ('xxxx"),
]


@pytest.mark.parametrize(("override", "says"), HOSTILE, ids=[o[:40] for o, _ in HOSTILE])
def test_a_hostile_override_is_one_short_error_naming_the_key_and_its_bound(override, says, tmp_path):
    start = time.perf_counter()
    result = runner.invoke(app, ["search", "--set", override, "--run-dir", str(tmp_path / "run"),
                                 "--no-progress"], terminal_width=400)
    elapsed = time.perf_counter() - start
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output[:500]
    # The project's one format: the config and its overrides (each quoted in at most 80 characters),
    # then one line per problem (a task config's, under task_overrides, indented one level more).
    assert len(lines) in (2, 3) and lines[0].startswith("error: ") and "1 problem(s)" in lines[0], lines
    assert lines[-1].strip().startswith(says), lines[-1]
    assert len(result.output) < 600, f"{len(result.output)} characters"
    assert elapsed < 2.0, f"{elapsed:.2f} s"
    assert not (tmp_path / "run").exists(), "refused before anything is written"


def test_a_task_path_too_long_for_a_file_is_refused_wherever_it_is_given(tmp_path) -> None:
    stage = {"promote": 0.5, "task": None}
    for load in (load_task_config, lambda name: SearchConfig.from_mapping({**BASE, "task": [name]}),
                 lambda name: SearchConfig.from_mapping({**BASE, "funnel": [{**stage, "task": name}]})):
        with pytest.raises(ConfigError) as info:
            load(LONG_TASK)
        assert f"at most {MAX_PATH_CHARS} characters" in str(info.value) and len(str(info.value)) < 400
    result = runner.invoke(app, ["search", "--config", "/" + LONG_TASK, "--run-dir", str(tmp_path)])
    assert result.exit_code == 2 and len(result.output) < 300, result.output[:300]
    assert f"at most {MAX_PATH_CHARS} characters" in result.output


def test_more_workers_than_the_cluster_holds_is_one_line_on_connecting(ray_session, tmp_path) -> None:
    # The session's Ray holds 2 CPUs: a third worker would wait in Ray for ever.
    start = time.perf_counter()
    result = runner.invoke(app, ["search", "--run-dir", str(tmp_path / "run"), "--no-progress",
                                 "--set", "task=digits", "--set", "search.budget=2",
                                 "--set", "search.workers=3", "--set", "confirm.top_k=0",
                                 "--set", "confirm.baselines=[]"], terminal_width=400)
    elapsed = time.perf_counter() - start
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last == ("error: search.workers is 3, but the Ray cluster holds 2 workers (2 CPUs at 1 each); set "
                    "search.workers to at most 2, or leave it unset to follow the cluster"), last
    assert elapsed < 5.0, f"{elapsed:.2f} s"  # (the digits data and the store come first)


def test_the_local_workers_bound_keeps_ray_from_being_asked_for_a_huge_instance(tmp_path) -> None:
    with pytest.raises(ConfigError, match=f"search.workers: expected less than or equal to {MAX_WORKERS}"):
        SearchConfig.from_mapping(tiny_config(workers=MAX_WORKERS + 1))
    assert SearchConfig.from_mapping(tiny_config(workers=MAX_WORKERS)).search.workers == MAX_WORKERS


# --- the property: any override validates within every bound, or is a ConfigError --------------------

_TASK_KEYS = ["task_overrides.epochs", "task_overrides.batch_size", "task_overrides.eval_batch_size",
              "task_overrides.model.width", "task_overrides.seeds_per_evaluation", "task_overrides.lr_grid",
              "task_overrides.data.split_seed", "task_overrides.short_run_epochs"]
NUMERIC_KEYS = sorted(k for k, v in flatten(SearchConfig.from_mapping(BASE).model_dump(mode="json")).items()
                      if isinstance(v, int | float) and not isinstance(v, bool)) + _TASK_KEYS
JUNK_KEYS = ["task", "funnel", "search", "search.nope", "controller.ppo", "confirm"]
KEYS = st.sampled_from(NUMERIC_KEYS + JUNK_KEYS)
EDGES = [0, 1, -1, 2**31, 2**32, 2**63, HUGE, -HUGE, MAX_BUDGET, MAX_BUDGET + 1, MAX_BATCH + 1,
         MAX_WORKERS + 1, MAX_WIDTH + 1, MAX_EPOCHS + 1, 1e30, -0.0, 0.5, float("inf"), float("nan")]
# Mostly plausible values (so that many configs validate and their bounds are checked), and hostile ones.
PLAUSIBLE = st.one_of(st.integers(min_value=0, max_value=64), st.floats(min_value=0.0, max_value=1.0))
HOSTILE_VALUES = st.one_of(st.sampled_from(EDGES), st.integers(), st.floats(), st.booleans(), st.none(),
                           st.text(max_size=12),
                           st.sampled_from(["1e30", "x" * 5000, "digits", "[1, 2]", "{a: 1}"]),
                           st.lists(st.integers(min_value=-3, max_value=3), max_size=3))
VALUES = st.one_of(PLAUSIBLE, PLAUSIBLE, HOSTILE_VALUES)


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=st.lists(st.tuples(KEYS, VALUES).map(lambda kv: f"{kv[0]}={_yaml(kv[1])}"), min_size=1,
                          max_size=2))
def test_any_override_validates_within_every_bound_or_is_a_short_config_error(overrides) -> None:
    try:
        config = SearchConfig.from_mapping(BASE, "run.yaml", overrides)
    except ConfigError as err:
        event("refused")
        message = str(err)
        assert message.startswith("run.yaml"), message[:200]
        # Each override is quoted in at most 80 characters, each problem in one line.
        assert len(message) < 3000 and all(len(line) < 700 for line in message.splitlines()), message[:300]
        return
    event("accepted")
    _check_bounds(config)
    assert 1 <= config.search.budget <= MAX_BUDGET and type(config.search.budget) is int
