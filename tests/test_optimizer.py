"""RuleOptimizer behaves as torch.optim optimizers do: groups, state_dict, copies, schedulers, dtypes."""

from __future__ import annotations

import copy
import pickle
import warnings

import pytest
import torch

from dsl import RuleSyntaxError, known_rules
from dsl.optimizer import RuleOptimizer, optimizer_class
from tests.reference_optimizers import CASES, batch, small_network, train

RULES = known_rules()
PATHS = {"foreach": dict(foreach=True), "fused": dict(fused=True)}
# A spread of rules for the behaviour tests: stateless, one buffer, two, three, step-dependent.
BEHAVIOUR_RULES = ["sgd", "momentum", "adam", "amsbound", "powersign_cd"]


def weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def make(name: str, model: torch.nn.Module, path: str = "foreach", **kw) -> RuleOptimizer:
    case = CASES[name]
    return RuleOptimizer(model.parameters(), RULES[name],
                         **{"lr": case.lr, **case.hyper, **PATHS[path], **kw})


@pytest.mark.parametrize("name", BEHAVIOUR_RULES)
def test_state_dict_round_trip_continues_exactly(name: str):
    full_model = small_network()
    full = train(full_model, make(name, full_model), steps=60)

    model = small_network()
    opt = make(name, model)
    train(model, opt, steps=30)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), opt.state_dict()
    resumed_model = small_network(seed=5)
    resumed_model.load_state_dict(saved_model)
    resumed = make(name, resumed_model, lr=123.0)  # the saved groups (lr, initial_lr) win
    resumed.load_state_dict(saved_opt)
    assert resumed.param_groups[0]["initial_lr"] == CASES[name].lr
    torch.testing.assert_close(train(resumed_model, resumed, steps=30), full, rtol=0, atol=0)


@pytest.mark.parametrize("name", BEHAVIOUR_RULES)
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_keep_everything(name: str, how: str):
    model = small_network()
    opt = make(name, model)
    train(model, opt, steps=10)
    if how == "deepcopy":
        model2, opt2 = copy.deepcopy((model, opt))
    else:
        model2, opt2 = pickle.loads(pickle.dumps((model, opt)))
    assert opt2.rule == opt.rule and opt2.param_groups[0]["initial_lr"] == CASES[name].lr
    torch.testing.assert_close(train(model2, opt2, steps=10), train(model, opt, steps=10), rtol=0, atol=0)


def test_bound_class_pickles_and_takes_lr_positionally():
    PowerSign = optimizer_class(RULES["powersign"], "PowerSign", lr=0.1)
    assert optimizer_class("exp(sign(g) * sign(m)) * g", "PowerSign", lr=0.1) is PowerSign
    model = small_network()
    opt = PowerSign(model.parameters())
    assert opt.defaults["lr"] == 0.1 and PowerSign(model.parameters(), 0.5).defaults["lr"] == 0.5
    train(model, opt, steps=3)
    clone = pickle.loads(pickle.dumps(opt))
    assert type(clone) is PowerSign and clone.state_dict()["state"][0]["m"].shape == (16, 6)
    assert "PowerSign(rule='exp(sign(g) * sign(m)) * g'" in repr(opt)


def test_param_groups_have_their_own_hyperparameters():
    def groups(model, beta_key):
        first, second = model[0], model[2]
        return [{"params": first.parameters(), "lr": 0.02, beta_key: 0.5},
                {"params": second.parameters()}]

    model = small_network()
    ref = torch.optim.Adam([{**g, "betas": (g.pop("beta1"), 0.999)} if "beta1" in g else g
                            for g in groups(model, "beta1")], lr=0.005)
    expected = train(model, ref)
    model = small_network()
    ours = RuleOptimizer(groups(model, "beta1"), RULES["adam"], lr=0.005)
    assert [g["lr"] for g in ours.param_groups] == [0.02, 0.005]
    assert [g["initial_lr"] for g in ours.param_groups] == [0.02, 0.005]
    torch.testing.assert_close(train(model, ours), expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("amsbound", [False, True])
def test_adabound_bounds_follow_lr_schedulers(path: str, amsbound: bool):
    import adabound

    name = "amsbound" if amsbound else "adabound"
    model = small_network()
    ref = adabound.AdaBound(model.parameters(), lr=0.01, amsbound=amsbound)
    expected = train(model, ref, scheduler=torch.optim.lr_scheduler.StepLR(ref, step_size=30, gamma=0.3))
    model = small_network()
    ours = make(name, model, path)
    got = train(model, ours, scheduler=torch.optim.lr_scheduler.StepLR(ours, step_size=30, gamma=0.3))
    assert ours.param_groups[0]["lr"] == pytest.approx(0.01 * 0.3**4)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", ["adabound", "adam", "powersign_rd"])
def test_zero_lr_at_construction_then_warm_up(path: str, name: str):
    model = small_network()
    before = weights(model)
    opt = make(name, model, path, lr=0.0)
    train(model, opt, steps=3)
    torch.testing.assert_close(weights(model), before, rtol=0, atol=0)  # no move, no NaN
    assert int(opt.state[model[0].weight]["step"]) == 3  # yet the state advanced
    for group in opt.param_groups:
        group["lr"] = 0.01
    after = train(model, opt, steps=5)
    assert torch.isfinite(after).all() and not torch.equal(after, before)


def test_parameters_without_gradient_are_skipped_and_state_is_minimal():
    model = small_network()
    frozen = torch.nn.Parameter(torch.ones(4))
    for name, buffers in [("sgd", set()), ("momentum", {"m"}), ("adam", {"m", "v"}),
                          ("amsgrad", {"m", "v", "vmax"}), ("powersign", {"m"})]:
        opt = RuleOptimizer([*model.parameters(), frozen], RULES[name], lr=0.01)
        train(model, opt, steps=2)
        assert frozen not in opt.state and torch.equal(frozen, torch.ones(4))
        assert set(opt.state[model[0].weight]) == {"step"} | buffers


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_dtypes_track_torch_adam(path: str, dtype: torch.dtype):
    model = small_network(dtype=dtype)
    expected = train(model, torch.optim.Adam(model.parameters(), lr=0.01), steps=30, dtype=dtype)
    model = small_network(dtype=dtype)
    opt = RuleOptimizer(model.parameters(), RULES["adam"], lr=0.01, **PATHS[path])
    got = train(model, opt, steps=30, dtype=dtype)
    assert got.dtype == dtype and opt.state[model[0].weight]["m"].dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 0.05
    torch.testing.assert_close(got.float(), expected.float(), rtol=tol, atol=tol)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", ["adam", "adabound", "powersign_ld"])
def test_cuda_matches_cpu(path: str, name: str):
    cpu_model = small_network()
    expected = train(cpu_model, make(name, cpu_model, path), steps=30)
    model = small_network().cuda()
    opt = make(name, model, path)
    x, y = batch()
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x.cuda()), y.cuda()).backward()
        opt.step()
    torch.testing.assert_close(weights(model).cpu(), expected, rtol=1e-6, atol=1e-10)


def test_maximize_and_weight_decay_match_torch():
    model = small_network()
    expected = train(model, torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.1, maximize=True),
                     steps=20)
    for path in PATHS:
        model = small_network()
        opt = RuleOptimizer(model.parameters(), RULES["adam"], lr=0.01, weight_decay=0.1, maximize=True,
                            **PATHS[path])
        torch.testing.assert_close(train(model, opt, steps=20), expected, rtol=1e-6, atol=1e-12)


def test_fused_path_falls_back_when_compile_is_unavailable(monkeypatch):
    import dsl.fused

    def no_compile(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", no_compile)
    monkeypatch.setattr(dsl.fused, "_CACHE", {})
    model = small_network()
    expected = train(model, make("addsign_ld", model), steps=20)
    model = small_network()
    with pytest.warns(RuntimeWarning, match="no compiler here"):
        got = train(model, make("addsign_ld", model, "fused"), steps=20)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(rule="exp(g"), RuleSyntaxError, "expected"),
    (dict(rule="g", beta4=0.5), TypeError, "unknown hyper-constant"),
    (dict(rule="g", lr=-1.0), ValueError, r"lr must be in \[0, inf\), got -1.0"),
    (dict(rule="g", lr=float("nan")), ValueError, "lr must be a finite number, got nan"),
    (dict(rule="g", lr=float("inf")), ValueError, "lr must be a finite number, got inf"),
    (dict(rule="g", foreach=True, fused=True), ValueError, "choose one"),
    (dict(), TypeError, "needs a rule"),
    # hyper-constants out of range: bias corrections and AdaBound's bound would divide by zero
    (dict(rule="g", beta1=1.0), ValueError, r"beta1 must be in \[0, 1\), got 1.0"),
    (dict(rule="g", beta2=-0.1), ValueError, r"beta2 must be in \[0, 1\), got -0.1"),
    (dict(rule="g", gamma=0.0), ValueError, r"gamma must be in \(0, inf\), got 0.0"),
    (dict(rule="g", T=0), ValueError, r"T must be in \(0, inf\), got 0"),
    (dict(rule="g", eps=float("nan")), ValueError, "eps must be a finite number, got nan"),
    (dict(rule="g", weight_decay=-1e-4), ValueError, r"weight_decay must be in \[0, inf\)"),
    (dict(rule="g", final_lr="0.1"), ValueError, "final_lr must be a number, got '0.1'"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        RuleOptimizer(small_network().parameters(), **kwargs)


def test_a_param_group_out_of_range_is_named_and_the_optimizer_is_unchanged():
    model = small_network()
    opt = RuleOptimizer([model[0].weight], RULES["adam"], lr=0.01, beta1=0.0)  # 0 is in range
    with pytest.raises(ValueError, match=r"param group 1: beta1 must be in \[0, 1\), got 1.5"):
        opt.add_param_group({"params": [model[0].bias], "beta1": 1.5})
    assert len(opt.param_groups) == 1
    for lr, problem in [(-1.0, r"lr must be in \[0, inf\)"), (float("nan"), "lr must be a finite number")]:
        with pytest.raises(ValueError, match=rf"param group 1: {problem}"):
            opt.add_param_group({"params": [model[0].bias], "lr": lr})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": [model[0].bias], "beta1": torch.tensor(0.5)})  # as torch.optim allows
    assert opt.param_groups[1]["beta1"] == 0.5


def test_another_optimizer_s_state_is_refused_on_load():
    model = small_network()
    adam = RuleOptimizer(model.parameters(), RULES["adam"], lr=0.01)
    train(model, adam, steps=2)
    sgd = RuleOptimizer(model.parameters(), "g", lr=0.01)
    with pytest.raises(ValueError, match="state dict is of the rule 'mhat / .*not of this optimizer's 'g'"):
        sgd.load_state_dict(adam.state_dict())
    # Without the rule's text (torch's own Adam, or an older save): the missing buffers are named.
    theirs = torch.optim.Adam(model.parameters(), lr=0.01)
    train(model, theirs, steps=1)
    with pytest.raises(ValueError, match="parameter 0 has no m, v, which the rule"):
        RuleOptimizer(model.parameters(), RULES["adam"]).load_state_dict(theirs.state_dict())
    saved = adam.state_dict()
    saved["param_groups"][0]["lr"] = float("inf")
    with pytest.raises(ValueError, match="state dict's param group 0: lr must be a finite number"):
        RuleOptimizer(model.parameters(), RULES["adam"]).load_state_dict(saved)


def test_state_memory_is_no_more_than_torch_adam():
    def state_bytes(opt):
        return sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values())

    model = small_network(dtype=torch.float32)
    theirs = torch.optim.Adam(model.parameters(), lr=0.01)
    train(model, theirs, steps=1, dtype=torch.float32)
    ours = RuleOptimizer(model.parameters(), RULES["adam"], lr=0.01)
    train(model, ours, steps=1, dtype=torch.float32)
    assert state_bytes(ours) <= state_bytes(theirs)


def test_noise_and_dropout_rules_run_on_both_paths():
    for path in PATHS:
        torch.manual_seed(0)
        model = small_network()
        opt = RuleOptimizer(model.parameters(), "drop(g, 0.3) + 0.1 * noise * ld", lr=0.01, **PATHS[path])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            after = train(model, opt, steps=5)
        assert torch.isfinite(after).all()


@pytest.mark.parametrize("text", [
    "clip(g, 0.001) * exp(sign(m)) + 0.01 * w * cd",
    "max(g, mhat) - min(m3hat, 2) / (abs(vhat) + 1e-08)",
    "bound(g^2) * sign(g) + clamp(g, -rd, ld)",
    "2^(m * 3) * g - log(abs(vmax) + 1) * rd",
])
def test_paths_agree_on_searched_style_rules(text: str):
    results = []
    for path in PATHS:
        model = small_network()
        results.append(train(model, RuleOptimizer(model.parameters(), text, lr=0.01, T=20.0, **PATHS[path]),
                             steps=25))
    assert torch.isfinite(results[0]).all()
    torch.testing.assert_close(results[1], results[0], rtol=1e-6, atol=1e-12)


def test_dropout_of_a_constant_draws_per_element_on_both_paths():
    """drop(2, 0.5) * g (a NOS rule: constant operand, dropout unary) masks each element on its own."""
    for path in PATHS:
        model = small_network()
        before = weights(model)
        train(model, RuleOptimizer(model.parameters(), "drop(2, 0.5) * g", lr=0.01, **PATHS[path]), steps=1)
        moved = weights(model) != before
        assert 0.2 < moved.float().mean() < 0.8  # about half the elements, not all or none


def test_a_class_default_for_weight_decay_is_kept_unless_overridden():
    Decayed = optimizer_class("g", "DecayedSGD", lr=0.1, weight_decay=0.5)
    model = small_network()
    assert Decayed(model.parameters()).defaults["weight_decay"] == 0.5
    assert Decayed(model.parameters(), weight_decay=0.0).defaults["weight_decay"] == 0.0
    assert RuleOptimizer(model.parameters(), "g").defaults["weight_decay"] == 0.0
