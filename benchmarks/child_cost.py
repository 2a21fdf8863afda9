"""What a child evaluation costs on CPU (issue 3, section 5), each figure against a reference from this run.

1. Seconds per full evaluation (lr grid + final training) of one rule on the digits task, one thread.
   Target <= 3 s. Reference: a bare training loop of the same number of steps (same network, batch
   size and torch SGD, no evaluation, no guards): the ratio is what the harness adds.
2. Overhead of training with a rule of the language against the same rule as torch's optimizer: the adam
   rule through RuleOptimizer against torch.optim.Adam, same network, data and steps, timed in
   alternating blocks; the ratio of median block times, on the digits task's ConvNet and on the NOS
   ConvNet at 32x32x3. Target <= 1.10.
3. Steps per second of the NOS ConvNet (32 filters) on 32x32x3 inputs, batch 100, synthetic tensors,
   with torch SGD (the reference) and with the PowerSign rule, on one thread and on --threads, and what
   one NOS CIFAR-10 evaluation (configs/cifar10_convnet.yaml) would take at that rate.

    python benchmarks/child_cost.py [--rule powersign] [--repeats 5] [--rounds 15] [--threads N]

Parts 1 and 2 run on one thread (a search worker's setting). The machine may be shared: only ratios
within one run are comparable.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from child_tasks.config import load_task_config  # noqa: E402
from child_tasks.datasets import load_digits  # noqa: E402
from child_tasks.models import ConvNet  # noqa: E402
from child_tasks.train import train  # noqa: E402
from dsl import known_rules  # noqa: E402
from dsl.optimizer import RuleOptimizer  # noqa: E402


def bare_loop(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
              steps: int, batch: int, gen: torch.Generator) -> None:
    for _ in range(steps):
        index = torch.randint(0, len(y), (batch,), generator=gen)
        loss = F.cross_entropy(model(x[index]), y[index])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()  # train() reads every loss for its guards; so does the reference


def evaluation_cost(rule: str, repeats: int) -> None:
    config = load_task_config("digits")
    data = load_digits(config.data.split_seed, config.data.val_fraction, config.data.test_fraction)
    train(rule, config, seed=0, threads=1)  # warm-up: imports, data, first-call allocations
    seconds, bare = [], []
    for i in range(repeats):
        result = train(rule, config, seed=i, threads=1)
        seconds.append(result.wall_time)
        torch.manual_seed(i)
        model = ConvNet(data.input_shape, data.num_classes, config.model.width)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        start = time.perf_counter()
        bare_loop(model, opt, data.x_train, data.y_train, result.total_steps, config.batch_size,
                  torch.Generator().manual_seed(i))
        bare.append(time.perf_counter() - start)
    med, ref = statistics.median(seconds), statistics.median(bare)
    print(f"1. full evaluation of {rule!r} on digits ({len(config.lr_grid)} lrs, {result.total_steps} steps "
          f"in all), one thread, median of {repeats}: {med:.2f} s  (target 3 s: {med / 3:.2f} of it)")
    print(f"   bare loop of the same steps (reference): {ref:.2f} s; "
          f"evaluation / bare loop = {med / ref:.2f}")


def convnet_rate(threads: int, rounds: int) -> None:
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(1000, 3, 32, 32, generator=gen), torch.randint(0, 10, (1000,), generator=gen)
    variants = {"torch SGD": lambda p: torch.optim.SGD(p, lr=0.01),
                "powersign rule": lambda p: RuleOptimizer(p, known_rules()["powersign"], lr=0.01)}
    runs = {}
    for name, make in variants.items():
        torch.manual_seed(0)
        model = ConvNet((3, 32, 32), 10, width=32)
        runs[name] = (model, make(model.parameters()))
        bare_loop(*runs[name], x, y, 3, 100, gen)  # warm-up
    block = 10
    times = {name: [] for name in variants}
    for _ in range(max(3, rounds // 3)):
        for name, (model, opt) in runs.items():
            start = time.perf_counter()
            bare_loop(model, opt, x, y, block, 100, gen)
            times[name].append((time.perf_counter() - start) / block)
    config = load_task_config("cifar10_convnet")
    spe = (50000 - config.data.val_size) // config.batch_size
    steps = spe * config.epochs + round(config.short_run_epochs * spe) * (len(config.lr_grid) - 1)
    ref = statistics.median(times["torch SGD"])
    print(f"3. NOS ConvNet (32 filters) on 32x32x3, batch 100, {torch.get_num_threads()} thread(s):")
    for name in variants:
        med = statistics.median(times[name])
        print(f"   {name:15s} {1 / med:6.1f} steps/s  ({med / ref:.2f} x torch SGD's step time)")
    print(f"   one NOS CIFAR-10 evaluation ({steps} steps, evaluation passes not counted) at torch SGD's "
          f"rate: {steps * ref / 60:.1f} min")


def rule_overhead(rounds: int) -> None:
    torch.set_num_threads(1)
    config = load_task_config("digits")
    data = load_digits(config.data.split_seed, config.data.val_fraction, config.data.test_fraction)
    variants = {"torch.optim.Adam (reference)": lambda p: torch.optim.Adam(p, lr=1e-3),
                "adam rule, RuleOptimizer": lambda p: RuleOptimizer(p, known_rules()["adam"], lr=1e-3)}
    for shape, width, batch, label in [(None, config.model.width, config.batch_size, "digits task's ConvNet"),
                                       ((3, 32, 32), 32, 100, "NOS ConvNet on 32x32x3")]:
        if shape is None:
            x, y = data.x_train, data.y_train
            shape = data.input_shape
        else:
            gen = torch.Generator().manual_seed(0)
            x, y = torch.randn(500, *shape, generator=gen), torch.randint(0, 10, (500,), generator=gen)
        runs, times = {}, {name: [] for name in variants}
        for name, make in variants.items():
            torch.manual_seed(0)
            model = ConvNet(shape, 10, width)
            runs[name] = (model, make(model.parameters()))
            bare_loop(*runs[name], x, y, 3, batch, torch.Generator().manual_seed(0))
        block = 20 if shape[1] <= 8 else 4
        for r in range(rounds):
            for name, (model, opt) in runs.items():
                gen = torch.Generator().manual_seed(r)  # the same batches for both
                start = time.perf_counter()
                bare_loop(model, opt, x, y, block, batch, gen)
                times[name].append(time.perf_counter() - start)
        ref = statistics.median(times[next(iter(variants))])
        print(f"2. training steps with a rule vs torch's optimizer, {label} (batch {batch}), one thread, "
              f"median of {rounds} alternated blocks of {block} steps:")
        for name in variants:
            med = statistics.median(times[name])
            print(f"   {name:30s} {med / block * 1e3:7.2f} ms/step   ratio {med / ref:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rule", default="powersign", help="rule (name or text) for the evaluation cost")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="threads for part 3 (default: torch's)")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()  # parts 1 and 3 set one thread
    evaluation_cost(args.rule, args.repeats)
    rule_overhead(args.rounds)
    for threads in dict.fromkeys([1, args.threads or default_threads]):
        convnet_rate(threads, args.rounds)


if __name__ == "__main__":
    main()
