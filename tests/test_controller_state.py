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
