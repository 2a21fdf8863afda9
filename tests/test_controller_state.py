"""Controller checkpoints: a resumed search continues exactly as an uninterrupted one, bit for bit."""

from __future__ import annotations

import pytest
import torch

from controller import ControllerConfig, Evolution, PPOController, RandomSearch
from controller.checkpoint import FORMAT

torch.set_num_threads(1)


def config(**changes) -> ControllerConfig:
    # Two minibatches, so the shuffling draws from the generator too.
    return ControllerConfig.from_mapping({"vocabulary": {"groups": 2}, "policy": {"hidden_size": 32},
                                          "batch_size": 12, "ppo": {"epochs": 2, "minibatches": 2},
                                          **changes})


def reward(sample) -> float:
    # Cheap and deterministic: how many tokens match a fixed pattern, with a nudge from the token ids.
    return float((sample.tokens % 3 == 0).float().mean()) + 0.01 * int(sample.tokens[0])


def run(searcher, updates: int) -> list:
    last = []
    for _ in range(updates):
        last = searcher.sample()
        searcher.update(last, [reward(s) for s in last])
    return last


@pytest.mark.parametrize("make, ppo", [
    (PPOController, {"epochs": 2, "minibatches": 2}),
    (PPOController, {"epochs": 2, "minibatches": 2, "risk_seeking": 0.25, "elite_replay": 4}),
    (RandomSearch, {}),
    # a population smaller than a batch, so that the draws after the first update are mutants
    (Evolution, {"population": 8, "tournament": 3, "warm_start": ["sgd", "adam"], "neutral_tries": 3}),
    (Evolution, {"population": 30, "tournament": 30, "mutations": {"group": 1, "operand": 2},
                 "neutral_tries": 0}),
])
def test_resumed_run_equals_uninterrupted_run_bit_for_bit(make, ppo, tmp_path) -> None:
    section = {"evolution": ppo, "kind": "evolution"} if make is Evolution else {"ppo": ppo}
    straight = make(config(**section))
    run(straight, 6)

    first = make(config(**section))
    run(first, 2)
    first.save(tmp_path / "controller.pt")
    resumed = make(config(seed=12345, **section))  # a different seed: the loaded generator state must win
    resumed.load(tmp_path / "controller.pt")
    run(resumed, 4)

    assert resumed.updates == straight.updates == 6
    if make is PPOController:
        for (name, a), b in zip(straight.policy.state_dict().items(), resumed.policy.state_dict().values()):
            assert torch.equal(a, b), name
        for a, b in zip(straight.optimizer.state.values(), resumed.optimizer.state.values()):
            assert all(torch.equal(a[k], b[k]) for k in a)
        assert straight.baseline == resumed.baseline
        assert straight.elites == resumed.elites
    if make is Evolution:
        assert straight.population == resumed.population and straight.drawn == resumed.drawn
        assert torch.equal(straight.generator.get_state(), resumed.generator.get_state())
    # and the next draws are the same
    assert [s.groups for s in straight.sample()] == [s.groups for s in resumed.sample()]


def test_checkpoint_holds_only_tensors_and_plain_data(tmp_path) -> None:
    controller = PPOController(config())
    run(controller, 1)
    controller.save(tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=True)  # would refuse any other object
    assert state["format"] == FORMAT and state["kind"] == "ppo"
    assert state["generator"].dtype == torch.uint8
    assert state["config"] == controller.config.to_mapping()


def test_loading_refuses_another_config_kind_or_file(tmp_path) -> None:
    controller = PPOController(config())
    controller.save(tmp_path / "c.pt")
    with pytest.raises(ValueError, match=r"another config \(ppo.lr: saved 0\.005, here 0\.1"):
        PPOController(config(ppo={"epochs": 2, "minibatches": 2, "lr": 0.1})).load(tmp_path / "c.pt")
    with pytest.raises(ValueError, match="'ppo' checkpoint cannot be loaded into random search"):
        RandomSearch(config()).load(tmp_path / "c.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable controller checkpoint"):
        controller.load(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        controller.load(tmp_path / "missing.pt")


class Payload:
    """An arbitrary object: a weights-only load must refuse to unpickle it."""


def test_a_checkpoint_with_arbitrary_objects_is_refused(tmp_path) -> None:
    torch.save({"format": FORMAT, "kind": "ppo", "payload": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a readable controller checkpoint"):
        PPOController(config()).load(tmp_path / "evil.pt")


def _set(key, value):
    return lambda state: state.__setitem__(key, value)


TAMPERED = [  # (searcher, change to its saved state, what the error says)
    (PPOController, lambda s: s.pop("updates"), "missing key 'updates'"),
    (PPOController, _set("updates", -3), "'updates' must be a whole number >= 0, found -3"),
    (PPOController, _set("updates", 2.5), "'updates' must be a whole number >= 0"),
    (PPOController, _set("generator", torch.zeros(7, dtype=torch.uint8)), "damaged controller checkpoint"),
    (PPOController, _set("generator", torch.zeros(7)), "generator state must be a uint8 tensor"),
    (PPOController, lambda s: s["policy"].__setitem__(next(iter(s["policy"])), torch.zeros(3, 3)),
     "damaged controller checkpoint .*size mismatch"),
    (PPOController, lambda s: s["policy"].pop(next(iter(s["policy"]))), "damaged controller checkpoint"),
    (RandomSearch, _set("kind", None), "a None checkpoint cannot be loaded"),
    (RandomSearch, lambda s: s.pop("config"), "missing key 'config'"),
    (Evolution, _set("drawn", -1), "'drawn' must be a whole number >= 0"),
    (Evolution, lambda s: s.__setitem__("population_tokens", s["population_tokens"][:, :3]),
     r"the population's tokens \(\d+, 3\)"),
    (Evolution, lambda s: s["population_tokens"].__setitem__((0, 0), 10_000),
     "damaged controller checkpoint"),
    (Evolution, lambda s: s["population_tokens"].__setitem__((0, 2), 0), "illegal token sequence"),
    (Evolution, lambda s: s.__setitem__("population_rewards", s["population_rewards"][:2]), "do not match"),
]


@pytest.mark.parametrize("make, tamper, message", TAMPERED)
def test_a_tampered_checkpoint_is_one_error_naming_the_file_and_changes_nothing(tmp_path, make, tamper,
                                                                                 message) -> None:
    evolution = {"population": 8, "tournament": 3}
    saved, loaded, twin = (make(config(evolution=evolution)) for _ in range(3))
    run(saved, 2)
    state = saved.state_dict()
    tamper(state)
    torch.save({"format": FORMAT, **state}, tmp_path / "c.pt")
    run(loaded, 1), run(twin, 1)
    with pytest.raises(ValueError, match=message) as caught:
        loaded.load(tmp_path / "c.pt")
    assert str(caught.value).startswith(f"{tmp_path / 'c.pt'}: ") and "\n" not in str(caught.value)
    assert loaded.updates == twin.updates == 1, "a failed load leaves the searcher as it was"
    assert [s.groups for s in loaded.sample()] == [s.groups for s in twin.sample()]
