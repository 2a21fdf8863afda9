"""The held-out transfer panel for several rules: each one's table and summary, and the panel's wall time.

    python benchmarks/transfer_panel.py                          # the anchors: adam, lion, powersign, addsign
    python benchmarks/transfer_panel.py nos_ab12cd_1 "sign(m) * g" --seeds 5 --workers 2 --out panel.json
    python benchmarks/transfer_panel.py adam --tasks panel_digits_cnn,panel_tabular_mlp --seeds 2

Each rule (a reference rule's or a record's name, or rule text) goes through `search.results.panel.run_panel`
on the panel's tasks (``--tasks``: a comma-separated subset, names or paths; default `PANEL_TASKS`) on one
local Ray with ``--workers`` workers of one thread each (default: one per core). The baselines' values are
cached (``$NOS_CACHE_DIR/panel``), so the first rule pays for the baselines and the others train only
themselves: each rule's line says which baselines were read from the cache. Printed per rule: the table
rule x task, the summary, the wall time of the rule's panel and each task's span (its first training's
start to its last's end) and worker-seconds; at the end, the win/tie/loss matrix of every rule. The JSON
(``--out``) holds every panel's data (`PanelResult.to_json`). Nothing is written into the records: `nos
transfer NAME --panel` stores a panel with its record. Set OMP_NUM_THREADS=1 on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from configuration.files import write_atomic
from search.cluster import connect, disconnect
from search.results.panel import OUTCOMES, PANEL_BASELINES, PANEL_SEEDS, PANEL_TASKS, PanelResult, run_panel

ANCHORS = ("adam", "lion", "powersign", "addsign")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rules", nargs="*", default=list(ANCHORS),
                        help="rule names (reference or record) or rule text; default: " + ", ".join(ANCHORS))
    parser.add_argument("--seeds", type=int, default=PANEL_SEEDS, help="seeds 0..N-1 (default %(default)s)")
    parser.add_argument("--tasks", default=",".join(PANEL_TASKS), help="comma-separated panel tasks")
    parser.add_argument("--baselines", default=",".join(PANEL_BASELINES), help="comma-separated baselines")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="Ray workers, one thread each (default: one per core)")
    parser.add_argument("--records-dir", default=None, help="where records named on the line are read")
    parser.add_argument("--out", type=Path, default=Path("transfer_panel.json"),
                        help="the JSON of everything (default %(default)s)")
    args = parser.parse_args()
    if args.seeds < 1 or args.workers < 1:
        sys.exit("error: --seeds and --workers must be at least 1")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]

    console = Console(width=max(Console().width, 160))
    started = connect(None, num_cpus=args.workers)  # one Ray for every rule's panel
    results: list[PanelResult] = []
    seconds: dict[str, float] = {}
    try:
        for rule in args.rules:
            start = time.perf_counter()
            try:
                result = run_panel(rule, seeds=args.seeds, baselines=baselines, tasks=tasks,
                                   directory=args.records_dir, workers=args.workers, save=False,
                                   console=console)
            except (ValueError, LookupError, OSError, RuntimeError) as err:
                sys.exit(f"error: {rule}: {' '.join(str(err).split())}")
            seconds[result.rule] = time.perf_counter() - start
            results.append(result)
            console.print(result.to_rich())
            console.print(_timing(result, seconds[result.rule]), highlight=False, soft_wrap=True)
    finally:
        disconnect(started)
    console.print(_matrix(results))
    document = {"seeds": list(range(args.seeds)), "tasks": tasks, "baselines": baselines,
                "workers": args.workers, "seconds": seconds, "panels": [r.to_json() for r in results]}
    write_atomic(json.dumps(document, indent=2) + "\n", args.out)
    console.print(f"written to {args.out}", highlight=False, soft_wrap=True)


def _timing(result: PanelResult, total: float) -> str:
    """The rule's panel wall time (data, references and Ray included) and each task's span and
    worker-seconds, with the baselines read from the cache."""
    parts = [f"{c.task}: {result.task_wall_s.get(c.task, 0.0):.0f} s span, {c.seconds:.0f} worker-s"
             + (f", cached {'/'.join(c.cached)}" if c.cached else "") for c in result.cells]
    return (f"{result.rule}: panel {total:.0f} s in all, {result.wall_s:.0f} s training; "
            + "; ".join(parts))


def _matrix(results: list[PanelResult]) -> Table:
    """Win (W), tie (T) or loss (L) against each task's best baseline, every rule x task, and each rule's
    summary."""
    tasks = list(dict.fromkeys(c.task for r in results for c in r.cells))
    table = Table(title="held-out panel: W/T/L against each task's best tuned baseline")
    for column in ["rule", *tasks, "W-L", "mean norm. gain"]:
        table.add_column(column, justify="left" if column == "rule" else "right")
    for r in results:
        cells = {c.task: f"{OUTCOMES[c.outcome]} {c.gain:+.3g}" for c in r.cells}
        s = r.summary
        table.add_row(r.rule, *(cells.get(t, "-") for t in tasks), f"{s['wins_minus_losses']:+d}",
                      f"{s['mean_normalised_gain']:+.3f}")
    return table


if __name__ == "__main__":
    main()
