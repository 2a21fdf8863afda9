"""Random search: the baseline every search result is compared with (Lion's lesson: search must beat it).

Draws are uniform over all legal token sequences of the space: each token uniformly from the tokens legal
at its step (the policy's masks), except that where the last group must read the group before it
(`controller.space`, "Dead groups") its op1 picks that result in proportion to the op2 choices it leaves
open (all of them, against one for any other op1).

The interface is PPO's (`controller.samples.Searcher`): ``update`` takes the rewards, learns nothing
and reports the batch's statistics, and the state (the generator, the counter) saves and loads the same
way, so a search loop swaps one for the other with a config key.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from controller.checkpoint import Checkpointed, generator_state
from controller.config import ControllerConfig
from controller.samples import Sample, UpdateStats, check_rewards, make_samples
from controller.space import TokenSpace

log = logging.getLogger(__name__)


def draw_uniform(space: TokenSpace, tokens: torch.Tensor, steps: Sequence[int] | range,
                 generator: torch.Generator) -> torch.Tensor:
    """Draw ``tokens[:, steps]`` in place (ascending steps, the others kept), uniformly over the legal
    completions when ``steps`` covers whole groups; the log-probabilities (n, space.steps) of the draws,
    0 at steps not drawn. Shared by random search and evolution's group redraw."""
    conditional = space.conditional_step
    log_probs = torch.zeros(tokens.shape[0], space.steps)
    for step in steps:
        weights = space.step_masks(step, tokens[:, step - 1]).double()
        if conditional is not None and step == conditional - 1:
            weights = weights.clone()
            weights[:, space.previous_result] *= space.masks[conditional].sum()
        probs = weights / weights.sum(1, keepdim=True)
        tokens[:, step] = torch.multinomial(probs, 1, generator=generator)[:, 0]
        log_probs[:, step] = probs.gather(1, tokens[:, step:step + 1])[:, 0].log().float()
    return log_probs


class RandomSearch(Checkpointed):
    """Uniform sampling over the legal token sequences of the configured space."""

    KIND, NAME = "random", "random search"

    def __init__(self, config: ControllerConfig | None = None) -> None:
        self.config = config or ControllerConfig(kind="random")
        self.space = self.config.vocabulary.token_space()
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.updates = 0
        self._entropy = self.space.log_sequences / self.space.steps  # per token, as the policy's is reported

    def sample(self, n: int | None = None) -> list[Sample]:
        """Draw ``n`` rules (the config's batch_size by default) uniformly."""
        n = self.config.batch_size if n is None else n
        tokens = torch.zeros(n, self.space.steps, dtype=torch.int64)
        log_probs = draw_uniform(self.space, tokens, range(self.space.steps), self.generator)
        return make_samples(self.space, tokens, log_probs, self.updates)

    def update(self, samples: Sequence[Sample], rewards: Sequence[float]) -> UpdateStats:
        """Nothing to learn; checks the rewards and reports the batch."""
        r = check_rewards(samples, rewards)
        stats = UpdateStats(update=self.updates, samples=len(samples), mean_reward=float(r.mean()),
                            max_reward=float(r.max()), baseline=0.0, entropy=self._entropy, approx_kl=0.0,
                            clip_fraction=0.0, loss=0.0, grad_norm=0.0,
                            staleness=self.updates - min(s.version for s in samples))
        self.updates += 1
        log.info("random update %d: reward mean %.4f max %.4f", stats.update, stats.mean_reward,
                 stats.max_reward)
        return stats

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "random", "config": self.config.to_mapping(),
                "generator": generator_state(self.generator), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.restore_common(state)
