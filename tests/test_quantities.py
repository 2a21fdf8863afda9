"""The state buffers and step quantities are one table each (dsl.quantities): every form of a row agrees
with its others, so the single-tensor, multi-tensor, fused and generated paths compute the same thing."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from dsl.evaluate import step_quantities
from dsl.fused import STATE_NAMES, _Step
from dsl.quantities import BIAS_CORRECTED, STATE, STEP_QUANTITIES, eta_ratio, needed_quantities
from dsl.vocabulary import OPERANDS, hyper_defaults

GROUP = {**hyper_defaults(), "beta1": 0.8, "beta2": 0.95, "beta3": 0.7, "T": 50.0, "lr": 0.02,
         "initial_lr": 0.05}


@pytest.mark.parametrize("name", list(STATE))
def test_each_buffer_form_computes_the_same_update(name: str):
    gen = torch.Generator().manual_seed(0)
    g, old, v_now = (torch.randn(40, generator=gen, dtype=torch.float64) for _ in range(3))
    new = {"v": v_now.abs()}  # the buffers this step already updated (vmax reads v)
    buffer = STATE[name]
    expected = buffer.traced(old.clone(), g, GROUP, new)  # the fused path's, out of place

    single = old.clone()
    buffer.tensor(single, g, GROUP, new)
    many = [old.clone(), old.clone()]
    buffer.foreach(many, [g, g], GROUP, {k: [t, t] for k, t in new.items()})
    generated = {"torch": torch, "group": GROUP, "g": g, name: old.clone(), **{k: t for k, t in new.items()
                                                                           if k != name}}
    exec(buffer.source, generated)  # the generated optimizer's statement, run as it is written
    for got in (single, *many, generated[name]):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)


def test_the_fused_step_takes_one_argument_per_buffer_in_table_order():
    params = list(inspect.signature(_Step.forward).parameters)
    assert tuple(params[3:-1]) == STATE_NAMES == tuple(STATE)


def test_bias_corrections_come_from_the_buffers_and_name_operands():
    assert BIAS_CORRECTED == {"mhat": ("m", "inv_bc1"), "vhat": ("v", "inv_bc2"), "m3hat": ("m3", "inv_bc3")}
    for hat, (base, _) in BIAS_CORRECTED.items():
        assert OPERANDS[hat].state == (base,)


@pytest.mark.parametrize("t", [1.0, 7.0, 50.0, 123.0])
def test_each_step_quantity_form_computes_the_same_value(t: float):
    floats = step_quantities(t, GROUP, eta_ratio(GROUP))
    tensors = step_quantities(torch.tensor(t, dtype=torch.float64),
                              {k: torch.tensor(v, dtype=torch.float64) for k, v in GROUP.items()},
                              torch.tensor(eta_ratio(GROUP), dtype=torch.float64))
    generated: dict = {"math": math, "t": t, "group": GROUP}
    for quantity in STEP_QUANTITIES.values():
        if quantity.helper:
            exec(quantity.helper, generated)
        generated[quantity.name] = eval(quantity.source, generated)  # the generated `_per_step`'s line
        assert isinstance(floats[quantity.name], float), quantity.name
        assert floats[quantity.name] == pytest.approx(float(tensors[quantity.name]), rel=1e-12, abs=1e-15)
        assert generated[quantity.name] == pytest.approx(floats[quantity.name], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("group", [
    {"final_lr": 0.1, "initial_lr": 0.05, "lr": 0.01},
    {"final_lr": 0.1, "initial_lr": 0.0, "lr": 0.01},  # a warm-up from zero
    {"final_lr": 0.1, "initial_lr": 0.0, "lr": 0.0},
])
def test_eta_ratio_and_its_generated_helper_agree(group: dict):
    generated: dict = {}
    exec(STEP_QUANTITIES["eta"].helper, generated)
    assert generated["_eta_ratio"](group) == eta_ratio(group)


@pytest.mark.parametrize(("names", "expected"), [
    ({"ld"}, ["frac", "ld"]),
    ({"cd", "rd", "ld"}, ["frac", "ld", "cd", "rd"]),
    ({"vhat", "g"}, ["inv_bc2"]),
    ({"bound_high", "bound_low", "m3hat"}, ["inv_bc3", "eta", "bound_low", "bound_high"]),
    ({"t", "g", "beta1"}, []),
])
def test_needed_quantities_reads_what_each_reads_in_computing_order(names: set, expected: list):
    assert [q.name for q in needed_quantities(names)] == expected
