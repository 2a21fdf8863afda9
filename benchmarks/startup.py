"""Start-up time of the `nos` commands people type most, against Python's own start in the same run.

    python benchmarks/startup.py [--repeats 5] [--goal 1.0]

Each command runs as a fresh process, ``--repeats`` times, interleaved with the references (so a busy
spell hits all alike), and the median wall time is printed with its ratio to ``python -c pass`` and to
``import typer, rich`` (what any typer CLI pays), and ``import torch`` as the cost the commands avoid.
Run it on a quiet machine: a background job on one of two cores doubles every figure. Exit status 1 if
a command's median is over ``--goal`` seconds (issue 13's goal: 1 s for each).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "nos --help": ["--help"],
    "nos rules names": ["rules", "names"],
    "nos rules show adam": ["rules", "show", "adam"],
}
REFERENCES = {
    "python -c pass": "pass",
    "import typer, rich": "import typer, rich",
    "import torch": "import torch",
}


def _time(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, env=env, timeout=120)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.decode()[-400:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--goal", type=float, default=1.0, help="seconds each command may take")
    args = parser.parse_args()

    nos = shutil.which("nos") or sys.exit("no `nos` on PATH: install the project (README) first")
    # An empty records folder, so that the figures do not depend on what this machine has exported.
    env = dict(os.environ, NOS_RULES_DIR=tempfile.mkdtemp(prefix="nos-startup-"), OMP_NUM_THREADS="1")
    cases = {label: [sys.executable, "-c", code] for label, code in REFERENCES.items()}
    cases |= {label: [nos, *argv] for label, argv in COMMANDS.items()}
    times: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(args.repeats):
        for label, command in cases.items():
            times[label].append(_time(command, env))
    medians = {label: statistics.median(values) for label, values in times.items()}
    base, cli = medians["python -c pass"], medians["import typer, rich"]
    print(f"{'':24s} {'median':>8s} {'/ pass':>7s} {'/ typer':>8s}   runs (s)")
    slow = []
    for label, median in medians.items():
        mark = ""
        if label in COMMANDS:
            mark = "  ok" if median <= args.goal else f"  over the {args.goal:g} s goal"
            slow += [label] if median > args.goal else []
        runs = " ".join(f"{t:.2f}" for t in times[label])
        print(f"{label:24s} {median:7.3f}s {median / base:7.1f} {median / cli:8.2f}   {runs}{mark}")
    sys.exit(1 if slow else 0)


if __name__ == "__main__":
    main()
