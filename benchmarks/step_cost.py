"""Cost of one optimizer step over ~10M float32 parameters, as ratios to torch.optim.Adam(foreach=True).

All variants live in one process and are timed in alternation, round after round, so that the machine's
noise falls on all of them alike; each figure is the median over rounds divided by the reference's
median from the same run. Also prints the optimizer state memory of our Adam against torch's.

    python benchmarks/step_cost.py [--layers 10] [--size 1024] [--rounds 30] [--threads N] [--processes 3]

This machine's memory bandwidth swings between runs (the same step measures up to 2x apart from one
process to the next), so by default the measurement is repeated in ``--processes`` fresh processes; each
prints its own table, and the summary gives each figure's ratios per process and their median. Ratios
are only ever taken within one process.

Targets (issue 2): our adam multi-tensor <= 1.15, our adam fused <= 0.25, our adabound fused at least
4x faster than the adabound package, and our adam's state no larger than torch's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dsl import known_rules  # noqa: E402
from dsl.optimizer import RuleOptimizer  # noqa: E402


def make_params(layers: int, size: int, seed: int) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(size, size, generator=gen) * 0.02) for _ in range(layers)]
    for p in params:
        p.grad = torch.randn(size, size, generator=gen) * 1e-3
    return params


def state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values()
               if isinstance(v, torch.Tensor))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--processes", type=int, default=3, help="repeat in this many fresh processes")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one process's figures
    args = parser.parse_args()
    if args.processes > 1:
        summarise(args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)  # the adabound package's deprecated calls
    import adabound

    rules = known_rules()
    variants = {
        "torch Adam foreach (reference)": lambda p: torch.optim.Adam(p, lr=1e-3, foreach=True),
        "torch Adam single-tensor": lambda p: torch.optim.Adam(p, lr=1e-3, foreach=False),
        "torch Adam fused": lambda p: torch.optim.Adam(p, lr=1e-3, fused=True),
        "our adam, multi-tensor": lambda p: RuleOptimizer(p, rules["adam"], lr=1e-3, foreach=True),
        "our adam, fused": lambda p: RuleOptimizer(p, rules["adam"], lr=1e-3, fused=True),
        "adabound package": lambda p: adabound.AdaBound(p, lr=1e-3),
        "our adabound, multi-tensor": lambda p: RuleOptimizer(p, rules["adabound"], lr=1e-3, foreach=True),
        "our adabound, fused": lambda p: RuleOptimizer(p, rules["adabound"], lr=1e-3, fused=True),
    }
    opts = {}
    for i, (name, make) in enumerate(variants.items()):
        opts[name] = make(make_params(args.layers, args.size, seed=i))
        start = time.perf_counter()
        for _ in range(3):  # warm-up, compilation included
            opts[name].step()
        print(f"warm-up {name}: {time.perf_counter() - start:.1f}s", file=sys.stderr)

    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, opt in opts.items():
            start = time.perf_counter()
            opt.step()
            times[name].append(time.perf_counter() - start)

    n_params = args.layers * args.size * args.size
    ref_name = next(iter(variants))
    ref = statistics.median(times[ref_name])
    print(f"one step over {n_params / 1e6:.1f}M float32 parameters, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} alternated rounds; reference {ref_name}: {ref * 1e3:.1f} ms")
    for name in variants:
        med = statistics.median(times[name])
        print(f"  {name:32s} {med * 1e3:8.2f} ms   ratio {med / ref:5.2f}")
    ours_ab = statistics.median(times["our adabound, fused"])
    pkg_ab = statistics.median(times["adabound package"])
    print(f"our adabound fused is {pkg_ab / ours_ab:.1f}x faster than the adabound package")
    ours_mem = state_bytes(opts["our adam, multi-tensor"])
    torch_mem = state_bytes(opts[ref_name])
    print(f"optimizer state: our adam {ours_mem} bytes, torch Adam {torch_mem} bytes "
          f"(ratio {ours_mem / torch_mem:.4f})")
    if args.json:
        figures = {name: statistics.median(times[name]) / ref for name in TARGETS if name in times}
        figures |= {"adabound speed-up": pkg_ab / ours_ab, "state memory": ours_mem / torch_mem,
                    "reference ms": ref * 1e3}
        print("FIGURES " + json.dumps(figures))


# Each figure of the summary, and the target for it.
TARGETS = {
    "our adam, multi-tensor": "<= 1.15",
    "our adam, fused": "<= 0.25",
    "torch Adam fused": "(about 0.12)",
    "adabound speed-up": ">= 4 (x faster than the package)",
    "state memory": "<= 1",
    "reference ms": "",
}


def summarise(args: argparse.Namespace) -> None:
    """Run the measurement in fresh processes; print each one's table, then the figures side by side."""
    runs = []
    for i in range(args.processes):
        cmd = [sys.executable, __file__, "--processes", "1", "--json", "--layers", str(args.layers),
               "--size", str(args.size), "--rounds", str(args.rounds)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        print(f"--- process {i + 1} of {args.processes}")
        print("\n".join(line for line in out.splitlines() if not line.startswith("FIGURES ")), flush=True)
        runs.append(json.loads(next(line for line in out.splitlines() if line.startswith("FIGURES "))[8:]))
    print(f"--- summary over {args.processes} processes "
          "(ratios to torch Adam foreach, each within its process)")
    for name, target in TARGETS.items():
        values = [r[name] for r in runs]
        print(f"  {name:28s} median {statistics.median(values):7.2f}   per process "
              f"{', '.join(f'{v:.2f}' for v in values):28s} target {target}")


if __name__ == "__main__":
    main()
