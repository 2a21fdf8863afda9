"""Random search: the baseline every search result is compared with (Lion's lesson: search must beat it).

Each token is drawn uniformly from the tokens legal at its step, with the same masks as the policy's.
Since which tokens are legal depends on the step alone, this is the uniform distribution over all legal
token sequences of the space. The interface is PPO's (`controller.samples.Searcher`): ``update`` takes
the rewards, learns nothing and reports the batch's statistics, and the state (the generator, the
counter) saves and loads the same way, so a search loop swaps one for the other with a config key.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from controller.checkpoint import (check_same_config, generator_state, load_checkpoint, save_checkpoint,
                                   set_generator_state)
from controller.config import ControllerConfig
from controller.samples import Sample, UpdateStats, check_rewards, make_samples
from controller.space import TokenSpace

log = logging.getLogger(__name__)


class RandomSearch:
    """Uniform sampling over the legal token sequences of the configured space."""

    def __init__(self, config: ControllerConfig | None = None) -> None:
        self.config = config or ControllerConfig(kind="random")
        self.space = TokenSpace(self.config.vocabulary.group_vocabulary())
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.updates = 0
        counts = self.space.masks.sum(1)
        self._log_probs = -counts.double().log().float()  # log(1 / legal choices) at each step
        self._entropy = float(counts.double().log().mean())

    def sample(self, n: int | None = None) -> list[Sample]:
        """Draw ``n`` rules (the config's batch_size by default) uniformly."""
        n = self.config.batch_size if n is None else n
        weights = self.space.masks.float()
        tokens = torch.stack([torch.multinomial(weights[step].expand(n, -1), 1, generator=self.generator)[:, 0]
                              for step in range(self.space.steps)], 1)
        return make_samples(self.space, tokens, self._log_probs.expand(n, -1), self.updates)

    def update(self, samples: Sequence[Sample], rewards: Sequence[float]) -> UpdateStats:
        """Nothing to learn; checks the rewards and reports the batch."""
        r = check_rewards(samples, rewards)
        stats = UpdateStats(update=self.updates, samples=len(samples), mean_reward=float(r.mean()),
                            max_reward=float(r.max()), baseline=0.0, entropy=self._entropy, approx_kl=0.0,
                            clip_fraction=0.0, loss=0.0, grad_norm=0.0,
                            staleness=self.updates - min(s.version for s in samples))
        self.updates += 1
        log.info("random update %d: reward mean %.4f max %.4f", stats.update, stats.mean_reward, stats.max_reward)
        return stats

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "random", "config": self.config.to_mapping(),
                "generator": generator_state(self.generator), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "random":
            raise ValueError(f"a {state.get('kind')!r} checkpoint cannot be loaded into random search")
        check_same_config(state["config"], self.config.to_mapping(), "random search")
        set_generator_state(self.generator, state["generator"])
        self.updates = int(state["updates"])

    def save(self, path: str | Path) -> None:
        save_checkpoint(self.state_dict(), path)

    def load(self, path: str | Path) -> None:
        self.load_state_dict(load_checkpoint(path))
