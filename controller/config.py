"""Controller configs: the search space, the policy network and PPO's settings, validated with pydantic.

A config is a YAML mapping (or a dict), typically the ``controller:`` section of a run config:

    kind: ppo                # or evolution, or random: the baseline every search result is compared with
    seed: 0
    batch_size: 100          # rules sampled per update
    vocabulary: {operands: nos, unary: nos, binary: nos, groups: 2, last_group_reads_previous: true}
    policy: {hidden_size: 150, temperature: 1.0, tanh_constant: 2.5}
    ppo: {lr: 0.005, epochs: 4, clip: 0.2, entropy_coef: 0.005, risk_seeking: 0.1, elite_replay: 0}
    evolution: {population: 300, tournament: 20, mutations: {token: 1, group: 1, operand: 1},
                warm_start: [], neutral_tries: 0}

    cfg = ControllerConfig.from_mapping(raw)      # or load_controller_config("path.yaml")

Every problem is reported at once, each with its key path (``ppo.clip``) and what was expected; an
unknown key is an error with the closest known keys suggested, because a misspelt key silently ignored
would change an experiment without anyone noticing. Every whole number is strict and bounded
(`configuration.models`: batch_size at most 10**5, hidden sizes 16384, PPO epochs 10**4), so that a
config that validates cannot fail later inside torch. Names of operands and functions are checked by the
rule language itself (`dsl.GroupVocabulary`), so its suggestions for misspelt names come through.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from configuration import (MAX_BATCH, MAX_EPOCHS, MAX_WIDTH, BatchSize, ConfigError, Epochs, Seed, Strict,
                           Width, did_you_mean, expect_mapping, load_yaml, validation_error, whole)
from controller.space import TokenSpace
from controller.spelling import spell_known
from dsl import KNOWN_RULE_TEXT, GroupVocabulary, RuleError
from dsl.groups import ALL_BINARY, ALL_OPERANDS, ALL_UNARY, NOS_BINARY, NOS_OPERANDS, NOS_UNARY

# Named lists a config may give instead of spelling every name out.
PRESETS: dict[str, dict[str, tuple[str, ...]]] = {
    "operands": {"nos": tuple(NOS_OPERANDS), "all": tuple(ALL_OPERANDS)},
    "unary": {"nos": tuple(NOS_UNARY), "all": tuple(ALL_UNARY)},
    "binary": {"nos": tuple(NOS_BINARY), "all": tuple(ALL_BINARY)},
}




class VocabularyConfig(Strict):
    """The search space: which names the groups choose from, and how many groups a rule has."""

    operands: tuple[str, ...] = Field(PRESETS["operands"]["nos"], description="a preset name or a list")
    unary: tuple[str, ...] = Field(PRESETS["unary"]["nos"], description="a preset name or a list")
    binary: tuple[str, ...] = Field(PRESETS["binary"]["nos"], description="a preset name or a list")
    groups: whole(8) = Field(2, description="groups of a rule, at most 8")
    last_group_reads_previous: bool = Field(
        True, description="the last group must read the result of the group before it: the same rules, "
        "without spellings whose earlier group is never read (controller.space, 'Dead groups')")

    @field_validator("operands", "unary", "binary", mode="before")
    @classmethod
    def _preset(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str):
            presets = PRESETS[info.field_name]
            if value not in presets:
                raise ValueError(f"a preset name ({' or '.join(presets)}) or a list of names, got {value!r}")
            return presets[value]
        return value

    @model_validator(mode="after")
    def _names_are_known(self) -> VocabularyConfig:
        try:
            self.group_vocabulary()
        except RuleError as err:
            raise ValueError(str(err)) from None
        return self

    def group_vocabulary(self) -> GroupVocabulary:
        """The rule language's vocabulary object for this space."""
        return GroupVocabulary(self.operands, self.unary, self.binary, self.groups)

    def token_space(self) -> TokenSpace:
        """The controller's token space for this vocabulary."""
        return TokenSpace(self.group_vocabulary(), self.last_group_reads_previous)


class PolicyConfig(Strict):
    """The LSTM policy. Logits are ``tanh_constant * tanh(z / temperature)`` when tanh_constant is set
    (as in NAS and ENAS controllers: bounded logits keep every legal token reachable), else
    ``z / temperature``; z is the output layer's value."""

    hidden_size: Width = Field(150, description=f"the LSTM's width, at most {MAX_WIDTH}")
    embedding_size: Width | None = Field(None, description="token embedding width; hidden_size if unset")
    init_range: float = Field(0.08, gt=0.0, description="weights start uniform in [-init_range, init_range]")
    temperature: float = Field(1.0, gt=0.0)
    tanh_constant: float | None = Field(2.5, gt=0.0)


class PPOConfig(Strict):
    """PPO on the sampled token sequences (see controller.ppo for the update and why these defaults)."""

    lr: float = Field(0.005, gt=0.0, description="Adam's learning rate")
    epochs: Epochs = Field(4, description=f"passes over each batch, at most {MAX_EPOCHS}")
    minibatches: BatchSize = Field(1, description="each epoch's batch is split into this many steps")
    clip: float = Field(0.2, gt=0.0, lt=1.0, description="per-token ratio clipped to [1 - clip, 1 + clip]")
    entropy_coef: float = Field(0.005, ge=0.0)
    baseline_decay: float = Field(0.9, ge=0.0, lt=1.0, description="EMA: b <- decay * b + (1 - decay) * r")
    risk_seeking: float | None = Field(
        0.1, gt=0.0, le=1.0, description="risk-seeking policy gradient (Petersen et al. 2021): learn only "
        "from the top fraction of a batch, with the batch's reward quantile at 1 - risk_seeking as the "
        "baseline")
    elite_replay: whole(MAX_BATCH, 0) = Field(0, description="replay the best this many distinct sequences "
                                              "seen so far in every update (priority queue training, "
                                              f"Abolafia et al. 2018), at most {MAX_BATCH}; 0: off")
    normalize_advantages: bool = Field(True, description="divide advantages by their batch std")
    max_grad_norm: float | None = Field(1.0, gt=0.0)
    adam_eps: float = Field(1e-8, gt=0.0)


MUTATIONS = ("token", "group", "operand")  # controller.evolution says what each does


class EvolutionConfig(Strict):
    """Regularized (aging) evolution (controller.evolution): population P, tournament S, the mutations
    and their relative weights, and known rules (dsl.known names) the first population starts from."""

    population: BatchSize = Field(300, description=f"P: the population keeps the P youngest rules (at most "
                                  f"{MAX_BATCH})")
    tournament: BatchSize = Field(20, description="S: a parent is the best of S members drawn at random")
    mutations: dict[str, float] = Field(
        {"token": 1.0, "group": 1.0, "operand": 1.0},
        description="name -> relative weight (or a list of names, weighted alike): token (redraw one token "
        "among those legal at its step), group (redraw a whole group), operand (re-point an operand at "
        "another group's result)")
    warm_start: tuple[str, ...] = Field((), max_length=1000,
                                        description="known rules (dsl.known) in the first population")
    neutral_tries: whole(1000, 0) = Field(0, description="a child that spells its parent's rule (it changed "
                                          "only tokens the rule ignores) is mutated again, up to this many "
                                          "times (at most 1000); 0 (the default) keeps it: such drift is "
                                          "free, and PowerSign is one token from some")

    @field_validator("mutations", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return {name: 1.0 for name in value}
        return value

    @field_validator("mutations")
    @classmethod
    def _known_mutations(cls, value: dict[str, float]) -> dict[str, float]:
        for name, weight in value.items():
            if name not in MUTATIONS:
                close = did_you_mean(name, MUTATIONS, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise ValueError(f"unknown mutation {name!r}; {hint}known: {', '.join(MUTATIONS)}")
            if not weight >= 0.0 or weight == float("inf"):
                raise ValueError(f"mutation {name!r}: a weight must be a finite number >= 0, got {weight!r}")
        if not any(value.values()):
            raise ValueError(f"at least one mutation needs a weight above 0 (of {', '.join(MUTATIONS)})")
        return value

    @field_validator("warm_start", mode="before")
    @classmethod
    def _one_name(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("warm_start")
    @classmethod
    def _known_rules(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name not in KNOWN_RULE_TEXT:
                close = did_you_mean(name, KNOWN_RULE_TEXT)
                hint = f"did you mean {', '.join(close)}? " if close else ""
                raise ValueError(f"{name!r} is not a known rule; {hint}known: {', '.join(KNOWN_RULE_TEXT)}")
        return value

    @model_validator(mode="after")
    def _tournament_fits(self) -> EvolutionConfig:
        if self.tournament > self.population:
            raise ValueError(f"tournament (S = {self.tournament}) must not exceed population "
                             f"(P = {self.population}): a tournament draws S distinct members")
        return self


class ControllerConfig(Strict):
    """Everything a controller (PPO, evolution or random search) is built from."""

    kind: Literal["ppo", "evolution", "random"] = "ppo"
    seed: Seed = 0
    batch_size: BatchSize = Field(100, description=f"rules sampled per update, at most {MAX_BATCH}")
    vocabulary: VocabularyConfig = VocabularyConfig()
    policy: PolicyConfig = PolicyConfig()
    ppo: PPOConfig = PPOConfig()
    evolution: EvolutionConfig = EvolutionConfig()

    @model_validator(mode="after")
    def _warm_start_expressible(self) -> ControllerConfig:
        # Only now is the vocabulary known; the error names the rule and the key.
        for name in self.evolution.warm_start:
            try:
                spell_known(name, self.vocabulary.token_space())
            except RuleError as err:
                raise ValueError(f"evolution.warm_start: {err}") from None
        return self

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, source: str = "<mapping>") -> ControllerConfig:
        """Validate a config given as a mapping (a YAML document's); ``source`` names it in errors."""
        values = expect_mapping(values, source, "kind: ..., ppo: ...")
        try:
            return cls.model_validate(dict(values))
        except ValidationError as err:
            raise validation_error(source, "controller config", err, cls) from None

    def to_mapping(self) -> dict[str, Any]:
        """Plain data (lists, numbers, strings): YAML-ready, and safe in a weights-only checkpoint."""
        return self.model_dump(mode="json")


def load_controller_config(path: str | Path, section: str | None = None) -> ControllerConfig:
    """Read a YAML file; ``section`` picks a key of it (``controller`` in a run config)."""
    path = Path(path)
    raw = load_yaml(path, "controller config")
    source = str(path)
    if section is not None:
        if not isinstance(raw, Mapping) or section not in raw:
            raise ConfigError(f"{path}: no {section!r} section")
        raw, source = raw[section], f"{path} [{section}]"
    return ControllerConfig.from_mapping(raw, source=source)

