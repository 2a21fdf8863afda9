"""The controller: an LSTM that emits rules token by token, trained with PPO; regularized evolution; and
the random-search baseline both are compared with. Imports only `dsl` of this project's packages.

    from controller import ControllerConfig, make_searcher

    searcher = make_searcher(ControllerConfig.from_mapping(raw_yaml["controller"]))
    samples = searcher.sample()                       # a batch of `Sample`s, each with .rule
    stats = searcher.update(samples, rewards)         # `UpdateStats`: rewards, entropy, KL, clip fraction
    searcher.save("run/controller.pt"); searcher.load("run/controller.pt")

Modules: `config` (validated settings), `space` (tokens and masks of the group grammar), `policy` (the
LSTM), `samples` (what a sample carries, the shared interface), `ppo`, `random_search`, `checkpoint`
(weights-only save/load), `synthetic` (a reward without training, for checking that search learns).
"""

from controller.config import (ConfigError, ControllerConfig, EvolutionConfig, PolicyConfig, PPOConfig,
                               VocabularyConfig, load_controller_config)
from controller.evolution import Evolution
from controller.policy import LSTMPolicy
from controller.ppo import PPOController, approx_kl, ppo_loss
from controller.random_search import RandomSearch
from controller.samples import Sample, SampleBatch, Searcher, UpdateStats
from controller.space import TokenSpace
from controller.synthetic import SyntheticReward, elementwise_similarity

SEARCHERS: dict[str, type[PPOController | Evolution | RandomSearch]] = {
    "ppo": PPOController, "evolution": Evolution, "random": RandomSearch}


def make_searcher(config: ControllerConfig) -> PPOController | Evolution | RandomSearch:
    """The controller the config's ``kind`` names: "ppo", "evolution" or "random"."""
    return SEARCHERS[config.kind](config)


__all__ = [
    "SEARCHERS", "ConfigError", "ControllerConfig", "Evolution", "EvolutionConfig", "LSTMPolicy", "PPOConfig",
    "PPOController", "PolicyConfig", "RandomSearch", "Sample", "SampleBatch", "Searcher", "SyntheticReward",
    "TokenSpace", "UpdateStats", "VocabularyConfig", "approx_kl", "elementwise_similarity",
    "load_controller_config", "make_searcher", "ppo_loss",
]
