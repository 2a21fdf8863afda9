"""Calibration of the embedded digits task: does its reward separate optimizers, and cheaply enough?

Trains sgd, momentum, adam, rmsprop (torch's), powersign, addsign and adabound (the rule language's) on
the digits task, each with its own lr chosen by NOS's short runs, over several seeds, on one thread, and
prints the table of validation accuracy (mean ± std over seeds) with three checks (issue 3, section 4):

* spread: best mean minus worst mean, at least 3 accuracy points;
* noise: the largest seed-to-seed std of any one optimizer, below the spread;
* cost: seconds per full evaluation (lr grid + final training) of one rule, at most 3 s on one core.

    python benchmarks/digits_calibration.py                      # the values in configs/digits.yaml
    python benchmarks/digits_calibration.py --seeds 3 4 5        # the same on other seeds
    python benchmarks/digits_calibration.py --set epochs=16 --set model.width=32   # try other values

Exits 1 when a check fails. Seconds are wall time of `train` in this process, one evaluation at a time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from child_tasks.compare import compare  # noqa: E402
from child_tasks.config import load_task_config, override  # noqa: E402

OPTIMIZERS = ["sgd", "momentum", "adam", "rmsprop", "powersign", "addsign", "adabound"]
MIN_SPREAD, MAX_SECONDS = 3.0, 3.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="digits", help="task config name or path (default: digits)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--optimizers", nargs="+", default=OPTIMIZERS)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (YAML value; dotted keys: model.width=32)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = load_task_config(args.config)
    changes = {}
    for item in args.set:
        key, _, value = item.partition("=")
        changes[key] = yaml.safe_load(value)
    if changes:
        config = override(config, changes)
    print(f"task {config.name}: model {config.model.model_dump()}, epochs {config.epochs}, batch "
          f"{config.batch_size}, short run {config.short_run_epochs} epoch(s), lr grid {config.lr_grid}")

    def progress(result) -> None:
        print(f"  {result.optimizer:10s} seed {result.seed}: {result.reward:6.2f} at lr {result.lr}, "
              f"{result.wall_time:.2f}s", file=sys.stderr, flush=True)

    table = compare(args.optimizers, config, args.seeds, threads=1, progress=progress)
    table.print()
    seconds = [r.wall_time for row in table.rows for r in row.results]
    per_eval, worst = statistics.median(seconds), max(seconds)
    checks = [
        (f"spread {table.spread:.2f} >= {MIN_SPREAD:g} points", table.spread >= MIN_SPREAD),
        (f"largest seed std {table.max_std:.2f} < spread {table.spread:.2f}", table.max_std < table.spread),
        (f"seconds per evaluation: median {per_eval:.2f}, max {worst:.2f} <= {MAX_SECONDS:g}",
         worst <= MAX_SECONDS),
    ]
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
