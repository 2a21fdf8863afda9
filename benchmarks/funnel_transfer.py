"""Does the funnel find rules that transfer? The held-out panel of each run's exported top rule, runs with
the funnel against runs without it (issue 21, "the measured answer").

    # the runs (search seeds 0-2, each about 10 minutes on 2 cores)
    for s in 0 1 2; do
        nos search --run-dir runs/funnel-s$s --records-dir runs/records --set controller.seed=$s
        nos search --run-dir runs/nofunnel-s$s --records-dir runs/records --set controller.seed=$s \\
            --set "funnel=[]"
    done
    python benchmarks/funnel_transfer.py --with runs/funnel-s* --without runs/nofunnel-s* \\
        --records-dir runs/records --out funnel_transfer.json

For each run, its rank-1 record (the rule the run exported first: ranked by the highest funnel stage it
completed, then its score there) goes through `search.results.panel.run_panel` (5 seeds, the lr-tuned
baselines sgd, momentum, adam, rmsprop and lion; the baselines' values come from the panel's cache after
the first rule) and is stored in the record (``panel``), as ``nos transfer NAME --panel`` does; a record
that has a panel on the same tasks and seeds already is read, not trained again (``--again`` retrains).

Printed: one row per run (the rule, the stage it reached, the confirmation's verdict, W/T/L against each
task's best tuned baseline, wins - losses, the mean normalised gain), then per arm (with, without) the
mean and spread of wins - losses and of the mean normalised gain over its runs, and whether the issue's
goal holds for the funnel's runs: no loss and at least 2 wins. The search's own figures (wall time, busy
fraction) are in each run's log, not here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from configuration.files import write_atomic
from search.cluster import connect, disconnect
from search.results.panel import OUTCOMES, PANEL_SEEDS, PANEL_TASKS, run_panel
from search.results.winners import run_records
from search.store import RunStore


def top_record(run_dir: Path, records_dir: str | None) -> tuple[str, int, str]:
    """The run's rank-1 record: its name, the highest funnel stage its rule completed, its verdict."""
    with RunStore(run_dir, config=None, create=False) as store:
        run_id = store.run_id
        folder = records_dir or store.records_dir
    records = [r for r in run_records(run_id, folder).values()
               if (r.config or {}).get("confirmation", {}).get("search_rank") == 1]
    if not records:
        sys.exit(f"error: {run_dir}: run {run_id} has no exported rank-1 record in {folder}")
    rec = records[0]
    stages = (rec.config or {}).get("confirmation", {}).get("funnel") or {"0": None}
    verdict = rec.verdict.describe() if rec.verdict is not None else "-"
    return rec.name, max(int(s) for s in stages), verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--with", dest="with_", nargs="+", type=Path, default=[], help="runs with the funnel")
    parser.add_argument("--without", nargs="+", type=Path, default=[], help="runs without it")
    parser.add_argument("--records-dir", default=None, help="the runs' records folder (default: each run's)")
    parser.add_argument("--seeds", type=int, default=PANEL_SEEDS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--again", action="store_true", help="train a panel a record has already")
    parser.add_argument("--out", type=Path, default=Path("funnel_transfer.json"))
    args = parser.parse_args()
    console = Console(width=max(Console().width, 160))
    rows = []
    started = connect(None, num_cpus=args.workers)
    try:
        for arm, runs in (("with", args.with_), ("without", args.without)):
            for run_dir in runs:
                name, stage, verdict = top_record(run_dir, args.records_dir)
                panel = _panel(name, args)
                rows.append({"arm": arm, "run": str(run_dir), "record": name, "stage": stage,
                             "verdict": verdict, "panel": panel})
                console.print(f"{arm} funnel: {run_dir}: {name} (stage {stage}): "
                              f"{panel['summary']}", highlight=False, soft_wrap=True)
    finally:
        disconnect(started)
    console.print(_table(rows))
    for line in _arms(rows):
        console.print(line, highlight=False, soft_wrap=True)
    write_atomic(json.dumps({"rows": rows}, indent=2) + "\n", args.out)
    console.print(f"written to {args.out}", highlight=False)


def _panel(name: str, args: argparse.Namespace) -> dict:
    """The record's panel: stored already on the same tasks and seeds, or trained now and stored."""
    import discovered_rules

    rec = discovered_rules.record(name, args.records_dir)
    stored = rec.panel if isinstance(rec.panel, dict) else None
    if stored and not args.again and stored.get("seeds") == list(range(args.seeds)) \
            and sorted(stored.get("tasks", {})) == sorted(PANEL_TASKS):
        return stored
    result = run_panel(name, seeds=args.seeds, directory=args.records_dir, workers=args.workers)
    return result.to_json()


def _table(rows: list[dict]) -> Table:
    table = Table(title="held-out panel of each run's top rule: W/T/L against each task's best tuned "
                  "baseline")
    for column in ["arm", "run", "rule", "stage", *PANEL_TASKS, "W-L", "mean norm. gain", "confirmation"]:
        table.add_column(column, overflow="fold")
    for row in rows:
        cells = {task: f"{OUTCOMES[c['outcome']]} {c['gain']:+.3g}"
                 for task, c in row["panel"]["tasks"].items()}
        summary = row["panel"]["summary"]
        table.add_row(row["arm"], Path(row["run"]).name, row["record"], str(row["stage"]),
                      *(cells.get(t, "-") for t in PANEL_TASKS), f"{summary['wins_minus_losses']:+d}",
                      f"{summary['mean_normalised_gain']:+.3f}", row["verdict"])
    return table


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _arms(rows: list[dict]) -> list[str]:
    lines = []
    for arm in ("with", "without"):
        mine = [r["panel"]["summary"] for r in rows if r["arm"] == arm]
        if not mine:
            continue
        wl = [s["wins_minus_losses"] for s in mine]
        gain = [s["mean_normalised_gain"] for s in mine]
        lines.append(f"{arm} the funnel ({len(mine)} runs): wins - losses {statistics.fmean(wl):+.2f} ± "
                     f"{_spread(wl):.2f}, mean normalised gain {statistics.fmean(gain):+.3f} ± "
                     f"{_spread(gain):.3f}; wins {[s['wins'] for s in mine]}, "
                     f"losses {[s['losses'] for s in mine]}")
        if arm == "with":
            met = all(s["losses"] == 0 and s["wins"] >= 2 for s in mine)
            lines.append(f"goal (every funnel run's top rule: no loss and at least 2 wins): "
                         f"{'met' if met else 'not met'}")
    return lines


if __name__ == "__main__":
    main()
