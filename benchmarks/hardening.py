"""The slowest known rules through `nos rules show` and `nos rules check`: wall time and peak extra memory.

Issue 14's goal is at most 2 s and 500 MB extra per input. Each (command, rule) runs in a fresh Python
process that imports the CLI first; the time is the command's alone and the memory its peak resident
size above the peak after the imports. Adam, timed in the same run, is the reference: the ratio says
how much slower a hostile rule is than an ordinary one on this machine, whatever its load.

    python benchmarks/hardening.py                    # this checkout
    python benchmarks/hardening.py --root /tmp/old    # another checkout (e.g. a git worktree), to compare
    python benchmarks/hardening.py --timeout 30       # give up on one input after 30 s

Figures (2 shared cores, OMP_NUM_THREADS=1, nice 10, --timeout 30), before (a506118) -> after, seconds:
show: (g+m+v+w)^40 5.70 -> 0.60, ^400 over 30 -> 0.55, max tree 11.78 -> 0.72, min-max trees 4.33 -> 0.70,
adam 0.59 -> 0.62; check: max tree 3.07 -> 0.18, min-max trees 1.06 -> 0.18, adam 0.11 -> 0.11. Peak
extra memory after: 58 MB (show), 25 MB (check) for every input, adam's included; before, ^40 took 90 MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def max_tree(depth: int, fn: str = "max") -> str:
    """Balanced max() over 2^depth different sums (sympy compared every pair when merging them)."""
    names = ["g", "m", "v", "w", "m3", "vmax", "ld", "cd"]
    leaves = iter(f"{names[i % 8]} {'+-*/'[i // 8 % 4]} {names[(i % 8 + 1 + i // 8) % 8]}" for i in range(64))

    def build(d: int) -> str:
        return next(leaves) if d == 0 else f"{fn}({build(d - 1)}, {build(d - 1)})"

    return build(depth)


INPUTS = {
    "adam (reference)": "adam",
    "(g+m+v+w)^40 * sign(g)": "(g + m + v + w)^40 * sign(g)",
    "(g+m+v+w)^400 * sign(g)": "(g + m + v + w)^400 * sign(g)",
    "(g+m)^100 / (g^3+1) * sign(g)": "(g + m)^100 / (g^3 + 1) * sign(g)",
    "max tree, depth 6": max_tree(6),
    "min tree 5 - max tree 4": max_tree(5, "min") + " - " + max_tree(4),
}

# Runs in the child: import the CLI, then time one command and measure its peak memory.
CHILD = """
import contextlib, io, json, resource, sys, time
from typer.testing import CliRunner
from search.cli import app
runner = CliRunner()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
result = runner.invoke(app, ["rules", sys.argv[1], sys.argv[2]])
seconds = time.perf_counter() - started
extra = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"s": seconds, "mb": extra / 1024, "exit": result.exit_code,
                  "error": repr(result.exception) if result.exit_code not in (0, 1) else None}))
"""


def run(root: Path, command: str, text: str, timeout: float) -> dict:
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, command, text], cwd=root, capture_output=True,
                             text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"s": float("inf"), "mb": float("nan"), "exit": None, "error": f"over {timeout:g} s"}
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        return {"s": float("nan"), "mb": float("nan"), "exit": out.returncode,
                "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--commands", nargs="+", default=["show", "check"])
    args = parser.parse_args()
    print(f"{'command':8} {'rule':32} {'seconds':>8} {'x adam':>7} {'extra MB':>9}  exit")
    for command in args.commands:
        reference = None
        for label, text in INPUTS.items():
            r = run(args.root, command, text, args.timeout)
            reference = reference or r["s"]
            note = f"  {r['error']}" if r.get("error") else ""
            print(f"{command:8} {label:32} {r['s']:8.2f} {r['s'] / reference:7.1f} {r['mb']:9.0f}  "
                  f"{r['exit']}{note}", flush=True)


if __name__ == "__main__":
    main()
