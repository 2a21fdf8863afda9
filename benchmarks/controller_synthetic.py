"""Does a searcher learn? PPO, regularized evolution and random search on a synthetic reward, no training.

The reward (`controller.synthetic.SyntheticReward`) is the similarity between a rule's updates and a
hidden target rule's updates on fixed probes (by default independent random operands), 1.0 only for a
rule with the target's canonical key. Target: PowerSign, ``exp(sign(g) * sign(m)) * g``; space: NOS's
2-group grammar.

    python benchmarks/controller_synthetic.py [--seeds 0 ... 19] [--budget 5000]
        [--searchers ppo evolution random] [--target RULE] [--space nos|small]
        [--probes independent|training] [--config YAML] [--set evolution.population=200 ...]

The budget is fixed in advance and counts distinct rules (canonical keys) a search has drawn, which is
what a real search trains (duplicates reuse stored rewards; `--max-samples` caps the draws of a searcher
that keeps drawing rules it has seen). A search stops at its first hit: a rule with the target's
canonical key, or a rule equal to the target on fresh held-out probes (largest relative difference
<= 1e-6, `controller.synthetic.heldout_difference`; checked for rules whose reward is >= 0.999), counted
separately. Printed per searcher: hits of the seeds with the 95% Wilson interval, how many hits were by
held-out probes only, the median number of distinct rules to the first hit, and a one-sided Fisher exact
test against random search (H1: the searcher's hit rate is higher); then the time of sampling plus one
update on a batch of 100 rules for each searcher (target < 1 s). Evolution never warm-starts here: a
benchmark must not start from its own target, and its defaults start from nothing.

Issue 12's figure is PowerSign, 20 seeds, 5,000 distinct rules: the best learned searcher >= 16 of 20,
random search <= 2 of 20. The measured figures, every variant tried (PPO's over four sessions,
evolution's tuning on seeds 100-109, never the reported ones) and why PowerSign is hard in this space
(its two signs' product is independent of each sign on independent probes, so no ingredient of it is
rewarded: the best rules plateau at 0.58-0.59, two tokens from it) are in benchmarks/README.md,
"Results" and "Why PowerSign is hard on the synthetic reward".
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from scipy.stats import fisher_exact

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from configuration import apply_overrides, load_yaml  # noqa: E402
from controller import SEARCHERS, ControllerConfig, Searcher, SyntheticReward  # noqa: E402
from controller.synthetic import heldout_difference  # noqa: E402
from dsl import canonical_key  # noqa: E402

TARGET = "exp(sign(g) * sign(m)) * g"
SPACES = {
    "nos": {},
    "small": {"operands": ["g", "g^2", "mhat", "vhat", "sign(g)", "sign(m)", "1", "2", "adam"],
              "unary": ["identity", "neg", "exp", "log_abs", "sqrt_abs", "sign"],
              "binary": ["add", "sub", "mul", "div", "keep_left"], "groups": 2},
}
CANDIDATE = 0.999  # rules rewarded at least this are checked on the held-out probes
HELDOUT_TOLERANCE = 1e-6


@dataclass
class Outcome:
    """One search: the distinct rules drawn up to its first hit (or the budget), how it hit, where it got."""

    distinct: int
    samples: int
    hit: str | None  # "key", "probes" (equal on the held-out probes only) or None
    best: tuple[float, str]


class Judge:
    """The reward and the hit test, cached by token sequence and canonical key across searches."""

    def __init__(self, target: str, probes: str) -> None:
        self.reward = SyntheticReward(target, probes=probes)
        self._by_tokens: dict[tuple[int, ...], tuple[float, str, str | None]] = {}
        self._heldout: dict[str, bool] = {}

    def __call__(self, sample) -> tuple[float, str, str | None]:
        """(reward, canonical key or "none", hit kind or None) of a sample."""
        tokens = tuple(sample.tokens.tolist())
        if tokens not in self._by_tokens:
            rule = sample.rule
            value = self.reward(rule)
            key = canonical_key(rule) if rule is not None else "none"
            hit = "key" if key == self.reward.target_key else None
            if hit is None and value >= CANDIDATE:
                if key not in self._heldout:
                    diff = heldout_difference(rule, self.reward.target)
                    self._heldout[key] = diff <= HELDOUT_TOLERANCE
                hit = "probes" if self._heldout[key] else None
            self._by_tokens[tokens] = (value, key, hit)
        return self._by_tokens[tokens]


def search(searcher: Searcher, judge: Judge, budget: int, batch: int, max_samples: int) -> Outcome:
    """Run until the first hit, ``budget`` distinct rules, or ``max_samples`` draws."""
    seen: set[str] = set()
    drawn, best = 0, (0.0, "none")
    while len(seen) < budget and drawn < max_samples:
        samples = searcher.sample(batch)
        rewards = []
        for i, s in enumerate(samples):
            value, key, hit = judge(s)
            seen.add(key)
            if value > best[0]:
                best = (value, str(s.rule))
            if hit is not None:
                return Outcome(len(seen), drawn + i + 1, hit, best)
            if len(seen) >= budget:
                return Outcome(len(seen), drawn + i + 1, None, best)
            rewards.append(value)
        drawn += len(samples)
        searcher.update(samples, rewards)
    return Outcome(len(seen), drawn, None, best)


def wilson(hits: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion hits / n."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def time_batch(config: ControllerConfig, judge: Judge, repeats: int = 5) -> float:
    """Median seconds of sample(100) + update on a batch of 100 (rewards computed beforehand, not timed:
    a search's workers give them). Evolution is timed past its random first population."""
    searcher = SEARCHERS[config.kind](config.model_copy(update={"batch_size": 100}))
    for _ in range(3):
        samples = searcher.sample(100)
        searcher.update(samples, [judge(s)[0] for s in samples])
    times = []
    for _ in range(repeats):
        samples = searcher.sample(100)
        rewards = [judge(s)[0] for s in samples]
        start = time.perf_counter()
        searcher.update(searcher.sample(100), rewards)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def base_config(args: argparse.Namespace) -> ControllerConfig:
    raw = dict(load_yaml(args.config, what="controller config")) if args.config else {}
    if SPACES[args.space]:
        raw["vocabulary"] = SPACES[args.space]
    raw = apply_overrides(raw, args.set, source="benchmark config")
    config = ControllerConfig.from_mapping(raw, source="benchmark config")
    if config.evolution.warm_start and "evolution" in args.searchers:
        print(f"note: evolution warm-starts from {', '.join(config.evolution.warm_start)}")
    return config


def report(outcomes: dict[str, list[Outcome]]) -> None:
    print(f"{'searcher':10s} {'hits':>7s}  {'95% Wilson':>13s}  {'by probes':>9s}  {'median to hit':>13s}  "
          "p vs random (one-sided Fisher)")
    random_hits = sum(o.hit is not None for o in outcomes.get("random", []))
    for kind, results in outcomes.items():
        n, hits = len(results), sum(o.hit is not None for o in results)
        low, high = wilson(hits, n)
        needed = [o.distinct for o in results if o.hit is not None]
        median = f"{statistics.median(needed):.0f}" if needed else "-"
        by_probes = sum(o.hit == "probes" for o in results)
        p = "-"
        if kind != "random" and "random" in outcomes:
            nr = len(outcomes["random"])
            p = f"{fisher_exact([[hits, n - hits], [random_hits, nr - random_hits]], 'greater')[1]:.2g}"
        print(f"{kind:10s} {hits:3d}/{n:<3d}  [{low:.2f}, {high:.2f}]  {by_probes:9d}  {median:>13s}  {p}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(20)))
    parser.add_argument("--budget", type=int, default=5000, help="distinct rules per search")
    parser.add_argument("--max-samples", type=int, default=30_000, help="draws per search at most (a search "
                        "that settles on rules it has seen stops there, short of the budget)")
    parser.add_argument("--searchers", nargs="+", choices=list(SEARCHERS), default=list(SEARCHERS))
    parser.add_argument("--target", default=TARGET, help="the hidden rule, as text (default: PowerSign)")
    parser.add_argument("--probes", default="independent", choices=["training", "independent"],
                        help="operand probes of the similarity (controller.synthetic); training-like ones "
                        "rank e * g above PowerSign's ingredients")
    parser.add_argument("--config", type=str, default=None, help="a controller YAML (default: defaults)")
    parser.add_argument("--space", choices=list(SPACES), default="nos", help="the vocabulary (see above)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides, e.g. ppo.lr=0.01 evolution.tournament=20 batch_size=50")
    parser.add_argument("--no-timing", action="store_true", help="skip the batch-of-100 timing")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a shared 2-core machine: one thread, or every process's timings suffer
    start = time.perf_counter()
    base = base_config(args)
    vocab = base.vocabulary
    print(f"target {args.target}; space: {vocab.groups} groups, {len(vocab.operands)} operands, "
          f"{len(vocab.unary)} unary, {len(vocab.binary)} binary; budget {args.budget} distinct rules; "
          f"seeds {args.seeds[0]}..{args.seeds[-1]} ({len(args.seeds)})")
    print(f"config: {base.to_mapping()}")
    judge = Judge(args.target, args.probes)
    outcomes: dict[str, list[Outcome]] = {kind: [] for kind in args.searchers}
    for seed in args.seeds:
        for kind in args.searchers:
            config = base.model_copy(update={"seed": seed, "kind": kind})
            t0 = time.perf_counter()
            out = search(SEARCHERS[kind](config), judge, args.budget, config.batch_size, args.max_samples)
            outcomes[kind].append(out)
            result = (f"hit ({out.hit}) after {out.distinct} distinct" if out.hit
                      else f"no hit in {out.distinct} distinct")
            stuck = "" if out.hit else f"; best {out.best[0]:.3f}: {out.best[1]}"
            print(f"seed {seed:3d} {kind:9s}: {result:32s} ({out.samples} samples, "
                  f"{time.perf_counter() - t0:.0f} s{stuck})", flush=True)
    report(outcomes)
    if not args.no_timing:
        for kind in args.searchers:
            seconds = time_batch(base.model_copy(update={"kind": kind}), judge)
            print(f"sampling + one update, batch of 100, {kind}: {seconds:.3f} s (target < 1 s)")
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
