"""Regularized (aging) evolution over the controller's token grammar (Real et al. 2019; AutoML-Zero).

A population of the P youngest rules with their rewards. Each child is drawn as:

* the first draws: the warm-start rules (``evolution.warm_start``, spelt by `controller.spelling`),
  then uniform random sequences (random search's draw), until P children have been drawn;
* after that: S members drawn at random without replacement (the tournament), the best of them (the
  first drawn among equals) copied and mutated once.

`update` appends each sample of the batch with its reward to the population, in order, and removes the
oldest beyond P: a member leaves by age, not by rank, which is what keeps the search from settling on
one early lucky rule (regularization, in Real et al.'s word). Rewards come back from the search exactly
as PPO's do: an invalid child carries the search's ``invalid_reward`` and a duplicate the stored reward
of its rule (search.driver), so such children join the population like any other and lose tournaments
on their merits.

Mutations (``evolution.mutations``: name -> relative weight; one is picked among those that can change
the parent), each keeping the sequence legal under the space's masks:

* ``token``: one step, uniformly among the steps with another legal token, redrawn uniformly among its
  other legal tokens;
* ``group``: one group redrawn whole, uniformly over its legal completions (so, rarely, as it was);
* ``operand``: an op1 or op2 of a later group re-pointed at another earlier group's result (@j).

Under ``last_group_reads_previous`` a change that leaves the last group reading neither operand from
the group before it sets its op2 to that group's result, the one legal choice left. A child that spells
its parent's rule (it changed only tokens the rule ignores) is mutated again, up to
``evolution.neutral_tries`` times: the search would hand it back its parent's reward, learning nothing.

There is no policy, so samples carry log-probabilities of 0. Samples may be drawn a few updates ahead of
their update (search.driver's pipelining): they come from the population as it was, the asynchronous
evolution of Real et al. The state (population, generator, counters) saves and loads like PPO's, so a
resumed run draws exactly what the uninterrupted run would have.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from controller.checkpoint import Checkpointed, count, generator_state
from controller.config import MUTATIONS, ControllerConfig
from controller.random_search import draw_uniform
from controller.samples import Sample, UpdateStats, check_rewards, make_samples
from controller.spelling import spell_known

log = logging.getLogger(__name__)


class Evolution(Checkpointed):
    """Regularized evolution with the `controller.samples.Searcher` interface (module docstring)."""

    KIND, NAME = "evolution", "evolution controller"

    def __init__(self, config: ControllerConfig | None = None) -> None:
        self.config = config or ControllerConfig(kind="evolution")
        evo = self.config.evolution
        self.space = self.config.vocabulary.token_space()
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.updates = 0
        self.drawn = 0  # children drawn so far: the first P are the warm start and random draws
        self.population: list[tuple[tuple[int, ...], float]] = []  # (tokens, reward), oldest first
        self.warm = [spell_known(name, self.space) for name in evo.warm_start]
        # In MUTATIONS' order, not the mapping's: a config read back from a run's store may have its keys
        # sorted, and a resumed run must map the generator's draws to the same mutations.
        self.mutations = [(name, evo.mutations[name]) for name in MUTATIONS if evo.mutations.get(name, 0) > 0]
        self._mutate = {"token": self._token, "group": self._group, "operand": self._operand}
        self._refs = {f"@{j}": self.space.operand_token(f"@{j}") for j in range(self.space.groups - 1)}
        self._variable = bool((self.space.masks.sum(1) > 1).any())  # some step has two legal tokens
        # (step, group) of every op1/op2 that may read an earlier group's result, for `operand`
        self._ref_steps = [(5 * g + p, g) for g in range(1, self.space.groups) for p in (0, 1)]
        self._conditional = self.space.conditional_step

    def sample(self, n: int | None = None) -> list[Sample]:
        """Draw ``n`` children (the config's batch_size by default) from the population as it is."""
        n = self.config.batch_size if n is None else n
        rows = []
        for _ in range(n):
            if self.drawn < len(self.warm):
                rows.append(self.warm[self.drawn].clone())
            elif self.drawn < self.config.evolution.population or not self.population:
                row = torch.zeros(1, self.space.steps, dtype=torch.int64)
                draw_uniform(self.space, row, range(self.space.steps), self.generator)
                rows.append(row[0])
            else:
                rows.append(self._child())
            self.drawn += 1
        tokens = torch.stack(rows)
        return make_samples(self.space, tokens, torch.zeros(tokens.shape), self.updates)

    def _draw(self, count: int) -> int:
        """A uniform index below ``count``, from the generator."""
        return int(torch.randint(count, (1,), generator=self.generator))

    def _tournament(self) -> torch.Tensor:
        size = min(self.config.evolution.tournament, len(self.population))
        entrants = torch.randperm(len(self.population), generator=self.generator)[:size].tolist()
        best = entrants[0]
        for i in entrants[1:]:  # the first drawn wins a tie
            if self.population[i][1] > self.population[best][1]:
                best = i
        return torch.tensor(self.population[best][0], dtype=torch.int64)

    def _child(self) -> torch.Tensor:
        parent = self._tournament()
        parent_rule = str(self.space.to_rule(parent)[1]) if self.config.evolution.neutral_tries else None
        child = self.mutate(parent)
        for _ in range(self.config.evolution.neutral_tries):
            if str(self.space.to_rule(child)[1]) != parent_rule:
                break
            child = self.mutate(parent)
        return child

    def mutate(self, tokens: torch.Tensor) -> torch.Tensor:
        """A legal child of ``tokens`` (steps,): one mutation of it (module docstring)."""
        options = [(name, weight) for name, weight in self.mutations if self._can(name, tokens)]
        if not options:
            raise ValueError(f"no mutation of {[n for n, _ in self.mutations]} can change a rule of this "
                             "space (evolution.mutations)")
        weights = torch.tensor([w for _, w in options], dtype=torch.float64)
        name = options[int(torch.multinomial(weights, 1, generator=self.generator))][0]
        child = self._mutate[name](tokens.clone())
        return self._repair(child)

    def _can(self, name: str, tokens: torch.Tensor) -> bool:
        if name == "operand":
            return bool(self._operand_moves(tokens))
        return self._variable

    def _repair(self, tokens: torch.Tensor) -> torch.Tensor:
        step = self._conditional
        if step is not None and not self.space.step_masks(step, tokens[None, step - 1])[0, tokens[step]]:
            tokens[step] = self.space.previous_result
        return tokens

    def _token(self, tokens: torch.Tensor) -> torch.Tensor:
        masks = self.space.masks_for(tokens[None])[0].clone()
        masks[torch.arange(self.space.steps), tokens] = False  # another token than the current one
        steps = masks.any(1).nonzero().flatten()
        step = int(steps[self._draw(len(steps))])
        choices = masks[step].nonzero().flatten()
        tokens[step] = choices[self._draw(len(choices))]
        return tokens

    def _group(self, tokens: torch.Tensor) -> torch.Tensor:
        group = self._draw(self.space.groups)
        row = tokens[None].clone()
        draw_uniform(self.space, row, range(5 * group, 5 * group + 5), self.generator)
        return row[0]

    def _operand_moves(self, tokens: torch.Tensor) -> list[tuple[int, int]]:
        """(step, token) pairs: an operand of a later group re-pointed at another earlier result."""
        moves = []
        for step, group in self._ref_steps:
            for j in range(group):
                ref = self._refs[f"@{j}"]
                if ref == int(tokens[step]):
                    continue
                if step == self._conditional and int(tokens[step - 1]) != self.space.previous_result \
                        and ref != self.space.previous_result:
                    continue  # op2 of the last group must stay the previous result while op1 is not
                moves.append((step, ref))
        return moves

    def _operand(self, tokens: torch.Tensor) -> torch.Tensor:
        moves = self._operand_moves(tokens)
        step, ref = moves[self._draw(len(moves))]
        tokens[step] = ref
        return tokens

    def _entropy(self) -> float:
        """Mean per-step entropy (nats) of the population's tokens: how diverse it still is."""
        if not self.population:
            return 0.0
        tokens = torch.tensor([t for t, _ in self.population], dtype=torch.int64)
        total = 0.0
        for column in tokens.T:
            p = torch.bincount(column).double()
            p = p[p > 0] / len(column)
            total += float(-(p * p.log()).sum())
        return total / tokens.shape[1]

    def update(self, samples: Sequence[Sample], rewards: Sequence[float]) -> UpdateStats:
        """The batch joins the population, in order; the oldest beyond P leave."""
        r = check_rewards(samples, rewards)
        before = [rw for _, rw in self.population]
        for sample, reward in zip(samples, r.tolist()):
            self.population.append((tuple(sample.tokens.tolist()), reward))
        del self.population[:max(0, len(self.population) - self.config.evolution.population)]
        stats = UpdateStats(update=self.updates, samples=len(samples), mean_reward=float(r.mean()),
                            max_reward=float(r.max()),
                            baseline=sum(before) / len(before) if before else float(r.mean()),
                            entropy=self._entropy(), approx_kl=0.0, clip_fraction=0.0, loss=0.0,
                            grad_norm=0.0, staleness=self.updates - min(s.version for s in samples))
        self.updates += 1
        log.info("evolution update %d: reward mean %.4f max %.4f, population %d", stats.update,
                 stats.mean_reward, stats.max_reward, len(self.population))
        return stats

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and plain data (rewards kept as float64)."""
        tokens = torch.tensor([t for t, _ in self.population], dtype=torch.int64)
        tokens = tokens.reshape(-1, self.space.steps)  # (0, steps) for an empty population
        return {"kind": "evolution", "config": self.config.to_mapping(),
                "generator": generator_state(self.generator), "updates": self.updates, "drawn": self.drawn,
                "population_tokens": tokens,
                "population_rewards": torch.tensor([rw for _, rw in self.population], dtype=torch.float64)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.restore_common(state)
        self.drawn = count(state, "drawn")
        tokens, rewards = state["population_tokens"], state["population_rewards"]
        if tokens.ndim != 2 or tokens.shape[1] != self.space.steps or rewards.shape != (len(tokens),):
            raise ValueError(f"the population's tokens {tuple(tokens.shape)} and rewards "
                             f"{tuple(rewards.shape)} "
                             f"do not match a population of {self.space.steps}-token rules")
        for row in tokens:  # each member must be a legal sequence of this space (a mutation relies on it)
            if not bool(self.space.masks_for(row[None])[0].gather(1, row[:, None]).all()):
                raise ValueError(f"the population holds an illegal token sequence {row.tolist()}")
        self.population = [(tuple(t), float(rw)) for t, rw in zip(tokens.tolist(), rewards.tolist())]
