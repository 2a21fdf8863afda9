"""Calibration of a reward: does it tell the reference optimizers apart, without ties, cheaply enough?

For each task or suite given, evaluates sgd, momentum, adam, rmsprop (torch's), powersign, addsign and
adabound (the rule language's) exactly as a search evaluates a rule (`child_tasks.reward.evaluate`: the
task's lr choice, its seeds per evaluation, the same training seeds for every optimizer) at evaluation
seeds 0..N-1, on one thread per process, and prints:

* each optimizer's reward, mean ± std over the evaluation seeds, with the validation metric beside it;
* for each of the 21 pairs, the paired difference of rewards and its z (mean difference over its
  standard error; the seeds are shared, so the differences are paired);
* how many pairs separate at |z| >= 3, how many tie exactly (the same mean), and how many (pair, seed)
  rewards are exactly equal;
* seconds per evaluation (every lr and every averaged seed), median and max, on one core, after one
  untimed evaluation per process (a search worker loads its data and warms torch once, at its start);
* the spread between the optimizers' means against the largest seed std.

    python benchmarks/reward_calibration.py                          # the quickstart's suite vs digits
    python benchmarks/reward_calibration.py --tasks mnist1d_cnn --seeds 5 --jobs 2
    python benchmarks/reward_calibration.py --tasks mnist1d_cnn --set epochs=20   # try other values

Each ``--tasks`` entry is a task config, or several joined by ``+`` (a suite). ``--jobs 2`` runs two
evaluations at a time in two processes of one thread each: seconds per evaluation are each process's
own, so they hold for one core only when nothing else runs (say what else ran when you report them).
Exits 1 when the first entry misses a target (--min-separated pairs, no ties, --max-seconds).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch and numpy load their thread pools
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402
from rich.console import Console  # noqa: E402

from child_tasks.compare import ComparisonRow, ComparisonTable  # noqa: E402
from child_tasks.reward import evaluate  # noqa: E402
from child_tasks.suite import Suite, load_suite  # noqa: E402
from configuration import parse_overrides  # noqa: E402

OPTIMIZERS = ["sgd", "momentum", "adam", "rmsprop", "powersign", "addsign", "adabound"]
DEFAULT_TASKS = ["embedded", "digits"]


def _init(suite: Suite) -> None:
    """One thread, then one untimed evaluation: a search worker pays for loading data and warming torch
    once, when it starts, not in every evaluation."""
    torch.set_num_threads(1)
    evaluate("sgd", suite.tasks, 10**6, threads=1)


def _evaluate(job: tuple[str, Suite, int]):
    name, suite, seed = job
    return name, seed, evaluate(name, suite.tasks, seed, threads=1)


def calibrate(suite: Suite, seeds: list[int], optimizers: list[str], jobs: int) -> ComparisonTable:
    work = [(name, suite, seed) for seed in seeds for name in optimizers]
    if jobs > 1:
        with ProcessPoolExecutor(jobs, initializer=_init, initargs=(suite,)) as pool:
            done = list(pool.map(_evaluate, work))
    else:
        _init(suite)
        done = [_evaluate(job) for job in work]
    found = {(name, seed): ev for name, seed, ev in done}
    table = ComparisonTable(suite.name, suite.tasks[0].metric, seeds)
    table.rows = [ComparisonRow(name, [found[name, s] for s in seeds]) for name in optimizers]
    return table


def report(table: ComparisonTable, z_min: float) -> dict[str, float]:
    table.print(Console(width=180))  # a log file is not an 80-column terminal
    print(f"paired differences of rewards (row minus column), z = mean / standard error, over seeds "
          f"{table.seeds}:")
    pairs = list(itertools.combinations([r.name for r in table.rows], 2))
    separated = ties = seed_ties = 0
    for a, b in pairs:
        diff, z = table.paired(a, b)
        equal = sum(x == y for x, y in zip(table.row(a).rewards, table.row(b).rewards, strict=True))
        separated += abs(z) >= z_min
        ties += diff == 0  # the same mean: the pair cannot be ordered at all
        seed_ties += equal
        note = "  TIE" if diff == 0 else f"  ({equal} seed(s) equal)" if equal else ""
        print(f"  {a:>9s} - {b:<9s} {diff:+8.4f}  z {z:+8.2f}{note}")
    seconds = [e.wall_time for row in table.rows for e in row.results]
    print("seconds per evaluation (median, max): " + ", ".join(
        f"{row.name} {statistics.median(e.wall_time for e in row.results):.2f} "
        f"{max(e.wall_time for e in row.results):.2f}" for row in table.rows))
    out = {"separated": separated, "pairs": len(pairs), "ties": ties, "seed_ties": seed_ties,
           "median_s": statistics.median(seconds),
           "max_s": max(seconds), "spread": table.spread, "max_std": table.max_std}
    print(f"{table.task}: {separated} of {len(pairs)} pairs at |z| >= {z_min:g}; {ties} pairs tied on the "
          "mean, "
          f"{seed_ties} (pair, seed) ties; "
          f"seconds per evaluation median {out['median_s']:.2f}, max {out['max_s']:.2f}; "
          f"spread {table.spread:.3f} = "
          f"{table.spread / table.max_std if table.max_std else float('inf'):.1f} x the largest seed std "
          f"{table.max_std:.3f}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS,
                        help="task configs, or suites as NAME+NAME (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=5, help="evaluation seeds 0..N-1 (default 5)")
    parser.add_argument("--optimizers", nargs="+", default=OPTIMIZERS)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of every task (YAML value; dotted keys: model.width=32)")
    parser.add_argument("--jobs", type=int, default=1, help="processes of one thread each (default 1)")
    parser.add_argument("--z", type=float, default=3.0, help="|z| that counts as separated (default 3)")
    parser.add_argument("--min-separated", type=int, default=15)
    parser.add_argument("--max-seconds", type=float, default=3.0)
    args = parser.parse_args()
    changes = parse_overrides(args.set)  # the commands' syntax: dotted keys, YAML values
    seeds = list(range(args.seeds))
    summary = []
    for spec in args.tasks:
        suite = load_suite(spec.split("+") if "+" in spec else spec, changes or None).with_references(print)
        for task in suite.tasks:
            print(f"{task.name}: {task.task} {task.model.model_dump()}, reward {task.reward}, "
                  f"{task.seeds_per_evaluation} seed(s) per evaluation, {task.epochs} epochs of batch "
                  f"{task.batch_size}, short runs {task.short_run_epochs} epochs, lr grid {task.lr_grid}")
        start = time.perf_counter()
        table = calibrate(suite, seeds, args.optimizers, args.jobs)
        summary.append((spec, report(table, args.z), time.perf_counter() - start))
    print(f"\nsummary ({len(seeds)} seeds, {len(args.optimizers)} optimizers, {args.jobs} process(es)):")
    print(f"  {'task or suite':32s} {'|z|>=' + format(args.z, 'g'):>8s} {'ties':>5s} {'seed ties':>9s} "
          f"{'s/eval':>7s} "
          f"{'max s':>6s} {'spread/std':>10s} {'wall s':>7s}")
    for spec, out, wall in summary:
        ratio = out["spread"] / out["max_std"] if out["max_std"] else float("inf")
        print(f"  {spec:32s} {out['separated']:>4d}/{out['pairs']:<3d} {out['ties']:>5d} "
              f"{out['seed_ties']:>9d} "
              f"{out['median_s']:>7.2f} {out['max_s']:>6.2f} {ratio:>10.1f} {wall:>7.0f}")
    first = summary[0][1]
    ok = (first["separated"] >= args.min_separated and first["ties"] == first["seed_ties"] == 0
          and first["max_s"] <= args.max_seconds)
    print(f"{'PASS' if ok else 'FAIL'}  {summary[0][0]}: >= {args.min_separated} pairs separated, no ties, "
          f"every evaluation <= {args.max_seconds:g} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
