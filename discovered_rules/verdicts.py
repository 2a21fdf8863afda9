"""Whether a rule beats a baseline: the paired one-sided t-test, the seeds it needs, and the `Verdict` a
record keeps.

A rule and a baseline trained on the same seeds give paired rewards. `paired_test(rule, baseline)` is
scipy's one-sided paired t-test (``ttest_rel(rule, baseline, alternative="greater")``): n pairs, the gain
(mean paired difference, rule minus baseline), t and p. The rule beats the baseline when it has at least
`MIN_SEEDS` pairs and p <= `ALPHA`; with fewer pairs the outcome is "not enough seeds", whatever the gain
(2 seeds at z 2.9 is a t-test with one degree of freedom, p about 0.1). `verdict(rewards, baselines)`
measures a record's rule against its best baseline (the highest mean). It lives beside the record, not in
`child_tasks.compare`, so that a record written before this test (gain, z and beats only) is read with
its verdict recomputed from the per-seed rewards it holds (`RuleRecord`); `search.results.winners` and the
transfer panel use the same function.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Mapping, Sequence
from typing import Annotated, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

MIN_SEEDS = 5  # paired seeds a "beats" needs
ALPHA = 0.05  # the largest one-sided p that counts as beating

Outcome = Literal["beats", "does not beat", "not enough seeds"]


class PairedTest(NamedTuple):
    """A one-sided paired t-test of a > b: n pairs, gain = mean(a - b), its t and p (None below 2 pairs)."""
    n: int
    gain: float
    t: float | None
    p: float | None

    @property
    def outcome(self) -> Outcome:
        if self.n < MIN_SEEDS:
            return "not enough seeds"
        return "beats" if self.gain > 0 and self.p is not None and self.p <= ALPHA else "does not beat"


def paired_test(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """The one-sided paired t-test of ``a`` above ``b`` (same seeds, same order; ValueError otherwise).

    Differences that are all equal have no spread: t is +-inf (p 0 or 1), or 0 (p 0.5) when they are 0,
    where scipy would give nan."""
    if len(a) != len(b):
        raise ValueError(f"a paired test needs as many values on each side, got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    n = len(diffs)
    gain = statistics.fmean(diffs) if diffs else math.nan
    if n < 2:
        return PairedTest(n, gain, None, None)
    if statistics.stdev(diffs) == 0:
        return PairedTest(n, gain, math.copysign(math.inf, gain) if gain else 0.0,
                          0.0 if gain > 0 else 1.0 if gain < 0 else 0.5)
    from scipy.stats import ttest_rel  # about 0.3 s to import: only where a verdict is computed

    with warnings.catch_warnings():  # near-equal differences: scipy warns of lost precision, t stands
        warnings.simplefilter("ignore", RuntimeWarning)
        result = ttest_rel(a, b, alternative="greater")
    return PairedTest(n, gain, float(result.statistic), float(result.pvalue))


Reward = Annotated[float, Field(allow_inf_nan=False)]


class Verdict(BaseModel):
    """A confirmed rule against the best baseline (the highest mean reward) on the confirmation seeds."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, ser_json_inf_nan="constants")

    best_baseline: str
    outcome: Outcome = Field(description=f"'beats' with at least {MIN_SEEDS} paired seeds and a one-sided "
                             f"paired t-test at p <= {ALPHA}; 'not enough seeds' below {MIN_SEEDS}")
    n: int = Field(ge=0, description="paired seeds")
    gain: Reward = Field(description="mean paired difference, rule minus baseline, over the seeds")
    t: float | None = Field(description="the paired t statistic; None with fewer than 2 seeds")
    p: float | None = Field(description="one-sided p of gain > 0; None with fewer than 2 seeds")

    @property
    def beats(self) -> bool:
        return self.outcome == "beats"

    def describe(self) -> str:
        """One line: ``beats adam: n=5, gain +0.012, t 3.1, p 0.018`` or ``does not beat adam: n=2, not
        enough seeds (5 needed), gain +0.03, t 2.9, p 0.11``."""
        return f"{'beats' if self.beats else 'does not beat'} {self.best_baseline}: {self.details()}"

    def details(self) -> str:
        """The numbers behind it: ``n=5, gain +0.012, t 3.1, p 0.018``."""
        parts = [f"n={self.n}"]
        if self.outcome == "not enough seeds":
            parts.append(f"not enough seeds ({MIN_SEEDS} needed)")
        parts.append(f"gain {self.gain:+.4g}")
        if self.t is not None:
            parts.append(f"t {self.t:.3g}")
        if self.p is not None:
            parts.append(f"p {self.p:.2g}")
        return ", ".join(parts)


class OldVerdict(BaseModel):
    """A verdict as records kept it before the t-test (gain > 0 at z >= 2 was "beats", on any number of
    seeds): read, then measured again (`discovered_rules.records.RuleRecord`)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, ser_json_inf_nan="constants")

    best_baseline: str
    gain: Reward
    z: float | None
    beats: bool


def best_baseline(baselines: Mapping[str, Sequence[float]]) -> tuple[str, float] | None:
    """The baseline with the highest mean reward (a record's ``baselines``: name -> rewards per seed), and
    that mean; None when no baseline has a reward."""
    means = {name: statistics.fmean(values) for name, values in baselines.items() if values}
    if not means:
        return None
    name = max(means, key=means.__getitem__)
    return name, means[name]


def verdict(rewards: Sequence[float], baselines: Mapping[str, Sequence[float]]) -> Verdict | None:
    """The rule's rewards against the baseline of highest mean reward, paired by seed; None without a
    baseline."""
    found = best_baseline(baselines)
    if found is None:
        return None
    test = paired_test(rewards, baselines[found[0]])
    return Verdict(best_baseline=found[0], outcome=test.outcome, n=test.n, gain=test.gain, t=test.t, p=test.p)
