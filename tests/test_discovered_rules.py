"""discovered_rules: generated optimizers equal dsl's RuleOptimizer, records validate with clear errors,
and load / available / export / record work on reference rules and on records in a folder."""

from __future__ import annotations

import ast
import copy
import datetime
import importlib.util
import itertools
import json
import math
from pathlib import Path

import pytest
import torch

import discovered_rules
from discovered_rules import (RecordError, RuleRecord, Verdict, class_name, export, load, make_record,
                              read_record)
from dsl.codegen import optimizer_source
from discovered_rules.records import write_record
from dsl import KNOWN_RULE_TEXT, canonical_key, known_rules, parse, to_latex, to_sympy
from dsl.optimizer import RuleOptimizer
from tests.reference_optimizers import CASES, batch, small_network, train
from tests.verdict_cases import VERDICT_CASES

torch.set_num_threads(1)

RULES = known_rules()
STEPS = 50
T = 30.0  # shorter than the run: ld reaches 0, cd turns, rd (2 periods) restarts
# Rules of the kinds a search writes, for the parts of the generator the reference rules do not reach:
# clamp of numbers, max/min against numbers, per-step sub-expressions, folded constants, scalar rules.
SEARCHED = [
    "clip(g, 0.001) * exp(sign(m)) + 0.01 * w * cd",
    "max(g, mhat) - min(m3hat, 2) / (abs(vhat) + 1e-08)",
    "bound(g^2) * sign(g) + clamp(g, -rd, ld)",
    "2^(m * 3) * g - log(abs(vmax) + 1) * rd",
    "clamp(1, 2, g) * t + max(t, ld) * g + min(g, 0.5)",
    "clamp(sqrt(1 - beta2^t), eps, g) + bound(2) * m + exp(ld) * (1 - beta1^t) * sqrt(1 - beta1^t)",
    "(g - m) - (m - g) + g / (m / v) - -g^2 * sign(g) + (-2)^2 * g",
    "g * (1 / 0) * 0 + g",  # inf * 0: NaN on both sides
    "beta1 * t",
    "1",
    "w",
]
_counter = itertools.count()


def import_source(source: str, directory: Path, name: str = "generated"):
    """Import a generated module from its file (our own generated code)."""
    path = directory / f"{name}_{next(_counter)}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def settings(name: str) -> dict:
    """lr and the hyper-constants of the reference case that the rule reads, with the short horizon."""
    case = CASES[name]
    read = RULES[name].hypers_read
    return {"lr": case.lr, **{k: v for k, v in {**case.hyper, "T": T}.items() if k in read}}


def generated_class(rule, tmp_path: Path, defaults: dict | None = None, cls: str = "Generated"):
    return getattr(import_source(optimizer_source(rule, cls, defaults or {}), tmp_path), cls)


def weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# --- the generated optimizers ----------------------------------------------------------------------

def test_every_known_rule_is_in_the_reference_table():
    assert set(CASES) == set(RULES)


@pytest.mark.parametrize("name", sorted(RULES))
def test_generated_optimizer_matches_rule_optimizer(name: str, tmp_path: Path):
    values = settings(name)
    model = small_network()
    expected = train(model, RuleOptimizer(model.parameters(), RULES[name], **values), steps=STEPS)
    Generated = generated_class(RULES[name], tmp_path, values)  # the defaults are the settings
    model = small_network()
    got = train(model, Generated(model.parameters()), steps=STEPS)
    assert (expected - weights(small_network())).abs().max() > 1e-3  # it trained
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("text", SEARCHED)
def test_generated_optimizer_matches_on_searched_style_rules(text: str, tmp_path: Path):
    hyper = {k: v for k, v in {"T": 20.0}.items() if k in parse(text).hypers_read}
    model = small_network()
    expected = train(model, RuleOptimizer(model.parameters(), text, lr=0.01, **hyper), steps=25)
    model = small_network()
    got = train(model, generated_class(text, tmp_path)(model.parameters(), lr=0.01, **hyper), steps=25)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("text", [*KNOWN_RULE_TEXT.values(), *SEARCHED, "drop(2, 0.5) * g + 0.1 * noise"])
def test_generated_module_imports_only_torch_and_math(text: str):
    tree = ast.parse(optimizer_source(text, "Opt", {"lr": 0.1}))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0] or ".")
    assert imported <= {"torch", "math"}
    assert str(parse(text)) in ast.get_docstring(tree)  # the docstring gives the rule
    assert ast.get_docstring(tree).count("(as sympy writes it, d = ") == 1


def test_generated_signature_has_the_hyper_constants_the_rule_reads(tmp_path: Path):
    Generated = generated_class(RULES["adabound"], tmp_path, {"lr": 0.02, "gamma": 0.01, "T": 5.0})
    opt = Generated(small_network().parameters())
    group = opt.param_groups[0]
    assert (group["lr"], group["initial_lr"], group["gamma"], group["final_lr"]) == (0.02, 0.02, 0.01, 0.1)
    assert "T" not in group and "beta3" not in group  # adabound reads neither
    with pytest.raises(TypeError, match="T"):
        Generated(small_network().parameters(), T=3.0)
    with pytest.raises(ValueError, match="learning rate"):
        Generated(small_network().parameters(), lr=-1.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(class_name="not valid"), "identifier"),
    (dict(class_name="class"), "identifier"),
    (dict(defaults={"beta4": 0.5}), "unknown default"),
    (dict(defaults={"lr": -0.1}), "lr must be"),
    (dict(defaults={"eps": float("nan")}), "finite"),
    (dict(defaults={"beta1": 1.0}), r"default beta1 must be in \[0, 1\), got 1.0"),
    (dict(defaults={"gamma": 0}), r"default gamma must be in \(0, inf\), got 0"),
])
def test_generator_refuses_bad_arguments(kwargs: dict, match: str):
    with pytest.raises(ValueError, match=match):
        optimizer_source(**{"rule": "g", "class_name": "Opt", **kwargs})


# --- randomness ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["g + 0.1 * noise", "drop(g, 0.3) * m"])
def test_one_source_of_randomness_draws_as_dsl_does(text: str, tmp_path: Path):
    torch.manual_seed(3)
    model = small_network()
    expected = train(model, RuleOptimizer(model.parameters(), text, lr=0.05), steps=20)
    torch.manual_seed(3)
    model = small_network()
    got = train(model, generated_class(text, tmp_path)(model.parameters(), lr=0.05), steps=20)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-12)


def two_steps(opt_class, n: int = 40_000) -> tuple[torch.Tensor, torch.Tensor]:
    """The updates of two steps of lr 1 on a zero weight vector with gradient 1."""
    w = torch.nn.Parameter(torch.zeros(n, dtype=torch.float64))
    opt = opt_class([w], lr=1.0)
    updates = []
    for _ in range(2):
        before = w.detach().clone()
        w.grad = torch.ones_like(w)
        opt.step()
        updates.append(before - w.detach())
    return updates[0], updates[1]


@pytest.mark.parametrize("text", ["noise", "drop(g, 0.3)", "drop(g, 0.5) + noise"])
def test_random_rules_have_dsl_distribution(text: str, tmp_path: Path):
    torch.manual_seed(0)
    ours = two_steps(generated_class(text, tmp_path))
    theirs = two_steps(lambda params, lr: RuleOptimizer(params, text, lr=lr))
    for first, second in (ours, theirs):
        assert first.shape == (40_000,) and torch.isfinite(first).all()
        assert not torch.equal(first, second)  # each step draws anew
        if text == "noise":
            assert abs(first.mean()) < 0.03 and abs(first.std() - 1.0) < 0.03
        elif text == "drop(g, 0.3)":  # the kept fraction, and the kept scaled by 1 / (1 - 0.3)
            kept = first != 0
            assert abs(kept.double().mean() - 0.7) < 0.01
            torch.testing.assert_close(first[kept], torch.full_like(first[kept], 1 / 0.7))
        else:  # drop(1, 0.5) is 0 or 2, plus unit noise: mean 1, variance 1 + 1
            assert abs(first.mean() - 1.0) < 0.05 and abs(first.var() - 2.0) < 0.1


# --- behaving as torch.optim optimizers do ---------------------------------------------------------

BEHAVIOUR_RULES = ["sgd", "momentum", "adam", "amsbound", "powersign_cd"]


@pytest.mark.parametrize("name", BEHAVIOUR_RULES)
def test_state_dict_round_trip_continues_exactly(name: str, tmp_path: Path):
    Generated = generated_class(RULES[name], tmp_path, settings(name))
    full_model = small_network()
    full = train(full_model, Generated(full_model.parameters()), steps=40)
    model = small_network()
    opt = Generated(model.parameters())
    train(model, opt, steps=20)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), opt.state_dict()
    resumed_model = small_network(seed=5)
    resumed_model.load_state_dict(saved_model)
    resumed = Generated(resumed_model.parameters(), lr=123.0)  # the saved groups (lr, initial_lr) win
    resumed.load_state_dict(saved_opt)
    assert resumed.param_groups[0]["initial_lr"] == CASES[name].lr
    torch.testing.assert_close(train(resumed_model, resumed, steps=20), full, rtol=0, atol=0)


@pytest.mark.parametrize("name", BEHAVIOUR_RULES)
def test_deepcopy_keeps_everything(name: str, tmp_path: Path):
    model = small_network()
    opt = generated_class(RULES[name], tmp_path, settings(name))(model.parameters())
    train(model, opt, steps=10)
    model2, opt2 = copy.deepcopy((model, opt))
    assert opt2.param_groups[0]["initial_lr"] == CASES[name].lr
    torch.testing.assert_close(train(model2, opt2, steps=10), train(model, opt, steps=10), rtol=0, atol=0)


def test_state_dicts_are_interchangeable_with_rule_optimizer(tmp_path: Path):
    model = small_network()
    expected = train(model, RuleOptimizer(model.parameters(), RULES["amsgrad"], lr=0.01), steps=30)
    model = small_network()
    theirs = RuleOptimizer(model.parameters(), RULES["amsgrad"], lr=0.01)
    train(model, theirs, steps=15)
    ours = generated_class(RULES["amsgrad"], tmp_path)(model.parameters())
    ours.load_state_dict(theirs.state_dict())  # same state keys: step, m, v, vmax
    torch.testing.assert_close(train(model, ours, steps=15), expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("name", ["adabound", "amsbound"])
def test_adabound_bounds_follow_a_step_lr_scheduler(name: str, tmp_path: Path):
    def run(opt):
        scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=15, gamma=0.3)
        return train(model, opt, steps=STEPS, scheduler=scheduler)

    model = small_network()
    expected = run(RuleOptimizer(model.parameters(), RULES[name], lr=0.01))
    model = small_network()
    opt = generated_class(RULES[name], tmp_path)(model.parameters(), lr=0.01)
    got = run(opt)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.3**3)
    assert opt.param_groups[0]["initial_lr"] == 0.01
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-12)


def test_param_groups_weight_decay_and_maximize(tmp_path: Path):
    def groups(model):
        return [{"params": model[0].parameters(), "lr": 0.02, "beta1": 0.5, "weight_decay": 0.1},
                {"params": model[2].parameters(), "maximize": True}]

    model = small_network()
    expected = train(model, RuleOptimizer(groups(model), RULES["adam"], lr=0.005), steps=STEPS)
    model = small_network()
    opt = generated_class(RULES["adam"], tmp_path)(groups(model), lr=0.005)
    assert [(g["lr"], g["beta1"], g["initial_lr"]) for g in opt.param_groups] == [(0.02, 0.5, 0.02),
                                                                                  (0.005, 0.9, 0.005)]
    torch.testing.assert_close(train(model, opt, steps=STEPS), expected, rtol=1e-6, atol=1e-12)


def test_zero_lr_at_construction_then_warm_up(tmp_path: Path):
    def run(opt, model):
        train(model, opt, steps=3)
        stayed = weights(model)
        for group in opt.param_groups:
            group["lr"] = 0.01
        return stayed, train(model, opt, steps=10)

    model = small_network()
    before = weights(model)
    stayed, expected = run(RuleOptimizer(model.parameters(), RULES["adabound"], lr=0.0), model)
    model = small_network()
    opt = generated_class(RULES["adabound"], tmp_path)(model.parameters(), lr=0.0)
    ours_stayed, got = run(opt, model)
    torch.testing.assert_close(ours_stayed, before, rtol=0, atol=0)
    assert int(opt.state[model[0].weight]["step"]) == 13
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-12)


def test_only_the_state_the_rule_reads_and_params_without_grad_skipped(tmp_path: Path):
    model = small_network()
    frozen = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    for name, buffers in [("sgd", set()), ("momentum", {"m"}), ("adam", {"m", "v"}),
                          ("amsgrad", {"m", "v", "vmax"}), ("powersign", {"m"})]:
        opt = generated_class(RULES[name], tmp_path)([*model.parameters(), frozen], lr=0.01)
        train(model, opt, steps=2)
        assert frozen not in opt.state and torch.equal(frozen, torch.ones(4, dtype=torch.float64))
        assert set(opt.state[model[0].weight]) == {"step"} | buffers


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["adam", "adabound", "powersign_ld"])
def test_generated_optimizer_on_cuda_matches_cpu(name: str, tmp_path: Path):
    Generated = generated_class(RULES[name], tmp_path, settings(name))
    cpu_model = small_network()
    expected = train(cpu_model, Generated(cpu_model.parameters()), steps=20)
    model = small_network().cuda()
    opt = Generated(model.parameters())
    x, y = (t.cuda() for t in batch())
    for _ in range(20):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    torch.testing.assert_close(weights(model).cpu(), expected, rtol=1e-6, atol=1e-10)


# --- records ---------------------------------------------------------------------------------------

def a_record(name: str = "nos_winner", rule: str = "exp(sign(g) * sign(m)) * g", **fields) -> RuleRecord:
    values = dict(task="digits", rewards={0: 0.91, 1: 0.9}, baselines={"adam": [0.9, 0.89]},
                  hyper={"lr": 0.05, "beta1": 0.8}, run_id="run-1", config={"controller": {"lr": 0.1}},
                  date=datetime.date(2024, 5, 1), curves={0: [0.5, 0.9], 1: [0.4, 0.9]})
    return make_record(name, rule, **{**values, **fields})


def test_make_record_fills_the_rule_s_forms():
    rec = a_record(rule="mhat/(sqrt(vhat)+eps)")
    rule = parse(rec.rule)
    assert rec.rule == "mhat / (sqrt(vhat) + eps)"  # written as dsl writes it
    assert rec.formula == str(to_sympy(rule, exact=False)) and rec.latex == to_latex(rule)
    assert rec.canonical_key == canonical_key(rule) == canonical_key(RULES["adam"])
    assert rec.source == "search" and rec.parsed_rule() == RULES["adam"]
    with pytest.raises(TypeError, match="formula"):
        a_record(formula="x")


def test_write_then_read_is_the_same_record(tmp_path: Path):
    rec = a_record(transfer={"cifar10": [{"name": "nos_winner", "mean": 0.7, "values": [0.7, 0.71]}]})
    path = write_record(rec, tmp_path / "nos_winner.json")
    assert read_record(path) == rec
    assert json.loads(path.read_text())["rewards"] == {"0": 0.91, "1": 0.9}
    assert [p.name for p in tmp_path.iterdir()] == ["nos_winner.json"]  # no temporary file left


@pytest.mark.parametrize("case", VERDICT_CASES)
def test_an_old_record_s_verdict_is_measured_again(case: str, tmp_path: Path):
    # Written before the t-test: gain, z and beats (true here, as z >= 2 said on any number of seeds).
    rewards, baselines, (best, outcome) = VERDICT_CASES[case]
    rec = a_record(rewards=dict(enumerate(rewards)), baselines=baselines)
    data = json.loads(rec.model_dump_json())
    data["verdict"] = {"best_baseline": best, "gain": 0.1, "z": 3.0, "beats": True}
    path = tmp_path / "nos_winner.json"
    path.write_text(json.dumps(data))
    v = read_record(path).verdict
    assert v == discovered_rules.verdict(rewards, baselines) and v.outcome == outcome


def test_an_old_record_that_cannot_be_measured_again_never_beats(tmp_path: Path):
    rec = a_record(rewards=dict(enumerate([0.9] * 5)), baselines={})
    data = json.loads(rec.model_dump_json())
    data["verdict"] = {"best_baseline": "adam", "gain": 0.1, "z": 3.0, "beats": True}
    path = tmp_path / "nos_winner.json"
    path.write_text(json.dumps(data))
    assert read_record(path).verdict == Verdict(best_baseline="adam", outcome="does not beat", n=5, gain=0.1,
                                                t=3.0, p=None)


def test_non_finite_curves_round_trip(tmp_path: Path):
    rec = a_record(curves={0: [float("nan"), float("inf"), 1.0]})
    curve = read_record(write_record(rec, tmp_path / "r.json")).curves[0]
    assert math.isnan(curve[0]) and curve[1:] == [float("inf"), 1.0]


def mutate(values: dict, change: str) -> str:
    if change == "bad json":
        return json.dumps(values)[:-2]
    values = copy.deepcopy(values)
    if change.startswith("drop "):
        del values[change[5:]]
    else:
        key, value = change.split("=", 1)
        *parents, last = key.split(".")
        node = values
        for part in parents:
            node = node[part]
        node[last] = json.loads(value)
    return json.dumps(values)


@pytest.mark.parametrize("change, expected", [
    ("bad json", ["not valid JSON"]),
    ("drop task", ["task: required key is missing"]),
    ("drop rule", ["rule: required key is missing"]),
    ('rewards.1="high"', ["rewards.1", "expected a valid number", "'high'"]),
    ('rewards.1="0.9"', ["rewards.1", "expected a valid number"]),  # strict: no guessing
    ('rewards={"first": 0.9}', ["rewards.first (the key)", "integer"]),
    ("rewards.1=true", ["rewards.1"]),
    ('baselines.adam=0.9', ["baselines.adam: expected a valid array"]),
    ('date="yesterday"', ["date"]),
    ('source="found"', ["source", "'search' or 'reference'"]),
    ('rule="exp(g"', ["rule: the rule text does not parse", "expected"]),
    ('rule="g * frobnicate(m)"', ["rule: the rule text does not parse", "frobnicate"]),
    ('name="Nos-Winner"', ["name: must be", "'Nos-Winner'"]),
    ('hyper.beta4=0.5', ["hyper: unknown key 'beta4'", "did you mean beta3"]),
    ('hyper.beta2=1.0', ["hyper", "beta2 must be in [0, 1), got 1.0"]),
    ('hyper.lr=-0.5', ["hyper", "lr must be in [0, inf), got -0.5"]),
    ('canonical_key="xyz"', ["canonical_key"]),
    # forms that do not follow from the rule: an edited file, or another version of dsl
    ('canonical_key="0123456789abcdef"', ["canonical_key '0123456789abcdef' is not the rule's", "again"]),
    ('formula="g"', ["formula 'g' is not the rule's"]),
    # names that make a keyword of the module or class, and text that would break the generated .py
    ('name="none"', ["name: must not be a Python keyword", "'none'"]),
    ('name="true"', ["name: must not be a Python keyword"]),
    ('name="false"', ["name: must not be a Python keyword"]),
    ('name="import"', ["name: must not be a Python keyword"]),
    ('run_id="run\\u0000one"', ["run_id: holds the control character U+0000 at position 3"]),
    ('task="dig\\u0007its"', ["task: holds the control character U+0007"]),
    ('baselines={"ad\\u0000am": [0.9, 0.89]}', ["baselines: holds the control character U+0000"]),
    ('transfer={"\\u001b[2J": []}', ["transfer: holds the control character U+001B"]),
    ('rewrds={}', ["rewrds: unknown key", "did you mean rewards?"]),
    ('rewards={}', ["needs its task and at least one reward"]),
])
def test_malformed_records_name_the_file_and_the_key(change: str, expected: list[str], tmp_path: Path):
    values = json.loads(a_record().model_dump_json())
    path = tmp_path / "broken.json"
    path.write_text(mutate(values, change))
    with pytest.raises(RecordError) as info:
        read_record(path)
    message = str(info.value)
    assert str(path) in message
    for part in expected:
        assert part in message, message


def test_every_problem_is_listed_and_missing_file_is_named(tmp_path: Path):
    values = json.loads(a_record().model_dump_json())
    del values["task"]
    values["rule"] = "exp("
    values["rewards"] = {"0": "x"}
    path = tmp_path / "two.json"
    path.write_text(json.dumps(values))
    with pytest.raises(RecordError, match=r"3 problem\(s\)") as info:
        read_record(path)
    assert all(key in str(info.value) for key in ("task:", "rule:", "rewards.0:"))
    path.write_text("[1, 2]")
    with pytest.raises(RecordError, match="top level"):
        read_record(path)
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        read_record(tmp_path / "nowhere.json")


def test_generated_source_refuses_control_characters_and_bad_lr(tmp_path: Path):
    with pytest.raises(ValueError, match="about would hold the control character U\\+0000"):
        optimizer_source("g", "Sgd", about="run a\x00b")
    Sgd = generated_class("g", tmp_path, cls="Sgd")
    for lr in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError, match="invalid learning rate"):
            Sgd(small_network().parameters(), lr=lr)
    opt = Sgd(small_network().parameters())
    with pytest.raises(ValueError, match="invalid learning rate: nan"):
        opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "lr": float("nan")})


# --- load, available, record, export ---------------------------------------------------------------

def test_a_malformed_record_is_skipped_with_a_warning_naming_it(tmp_path: Path):
    export(a_record(), tmp_path)
    (tmp_path / "broken.json").write_text("{not json")
    edited = {**json.loads(a_record(name="edited").model_dump_json()), "canonical_key": "0123456789abcdef"}
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    (tmp_path / "folder.json").mkdir()
    with pytest.warns(discovered_rules.RecordWarning) as caught:
        names = discovered_rules.available(tmp_path)
    assert "nos_winner" in names and "adam" in names
    assert not {"broken", "edited", "folder"} & set(names)
    messages = sorted(str(w.message) for w in caught)
    assert [m.split(":")[0] for m in messages] == [f"skipped the record {tmp_path / n}.json"
                                                   for n in ("broken", "edited", "folder")]
    assert all("\n" not in m for m in messages)
    assert not any(m.split(": ", 1)[1].startswith(str(tmp_path)) for m in messages)  # not named twice
    assert "not valid JSON" in messages[0]
    assert load("nos_winner", tmp_path) and load("adam", tmp_path)
    with pytest.raises(RecordError, match="broken.json"):  # asked for by name: its error
        load("broken", tmp_path)


@pytest.mark.parametrize("name", ["adam", "powersign", "adabound"])
def test_reference_rules_load_by_name(name: str):
    Opt = load(name)
    assert issubclass(Opt, RuleOptimizer) and Opt.rule == RULES[name] and Opt.__name__ == class_name(name)
    rec = discovered_rules.record(name)
    assert rec.source == "reference" and rec.rule == KNOWN_RULE_TEXT[name] and rec.task is None
    available = discovered_rules.available()
    assert {k: available[k] for k in KNOWN_RULE_TEXT} == KNOWN_RULE_TEXT


def test_export_load_available_round_trip(tmp_path: Path):
    rec = a_record()
    json_path, py_path = export(rec, tmp_path)
    assert (json_path, py_path) == (tmp_path / "nos_winner.json", tmp_path / "nos_winner.py")
    assert discovered_rules.record("nos_winner", tmp_path) == rec
    assert discovered_rules.available(tmp_path)["nos_winner"] == rec.rule
    Loaded = load("nos_winner", tmp_path)
    assert Loaded.__name__ == "NosWinner" and issubclass(Loaded, RuleOptimizer)
    assert Loaded(small_network().parameters()).defaults["lr"] == 0.05  # the record's hyper

    # The exported file and the loaded class train alike, with the record's defaults (beta1 = 0.8).
    module = import_source(py_path.read_text(), tmp_path, "exported")
    doc = " ".join(module.__doc__.split())
    assert "Found by neural optimizer search on the task 'digits' (2024-05-01, run run-1)" in doc
    model = small_network()
    expected = train(model, Loaded(model.parameters()), steps=20)
    model = small_network()
    torch.testing.assert_close(train(model, module.NosWinner(model.parameters()), steps=20), expected,
                               rtol=1e-6, atol=1e-12)
    model = small_network()
    plain = train(model, RuleOptimizer(model.parameters(), rec.rule, lr=0.05), steps=20)
    assert not torch.allclose(plain, expected)  # beta1 = 0.8 did matter


def test_export_refuses_reference_names_and_overwriting(tmp_path: Path):
    with pytest.raises(ValueError, match="reference rule"):
        export(a_record(name="adam"), tmp_path)
    export(a_record(), tmp_path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export(a_record(rule="g"), tmp_path)
    export(a_record(rule="g"), tmp_path, overwrite=True)
    assert discovered_rules.record("nos_winner", tmp_path).rule == "g"


def test_a_record_shadowing_a_reference_rule_in_the_folder_is_an_error(tmp_path: Path):
    write_record(a_record(name="powersign"), tmp_path / "powersign.json")
    for call in (discovered_rules.available, lambda d: load("powersign", d), lambda d: load("adam", d)):
        with pytest.raises(RecordError, match="powersign.*reference"):
            call(tmp_path)


def test_a_record_whose_name_is_not_its_file_is_an_error(tmp_path: Path):
    write_record(a_record(name="first"), tmp_path / "second.json")
    with pytest.raises(RecordError, match="second.json.*'first'"):
        load("second", tmp_path)


def test_unknown_names_list_close_matches(tmp_path: Path):
    export(a_record(), tmp_path)
    with pytest.raises(KeyError) as info:
        load("adamm")
    assert "did you mean adam" in str(info.value) and "powersign" in str(info.value)
    with pytest.raises(KeyError, match="did you mean nos_winner"):
        load("nos_winer", tmp_path)
    with pytest.raises(KeyError, match="no rule named 'zzz'"):
        discovered_rules.record("zzz", tmp_path)
