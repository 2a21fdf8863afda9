"""A soak: one long real search on a tiny task, with what could grow sampled along the way.

    nice -n 10 python benchmarks/soak.py [--trainings 5000] [--out DIR] [--json PATH] [--tracemalloc]

`search.driver.run_search` on a local Ray with 2 workers (``search.cpus_per_worker: 1``, one torch thread
each), PPO (batches of 50) on the default vocabulary, digits cut to about 0.025 s per training (width 4,
one epoch of batch 128, one lr), ``patience`` large, no funnel, no confirmation, no baselines: the run is
the search loop alone, ``--trainings`` trainings long. A thread of this (the driver's) process samples
every ``--every`` seconds:

- the driver's resident memory (VmRSS), the evaluation workers' (the ``ray::EvaluationWorker``
  processes among this process's descendants, so another session's Ray is never counted) and Ray's own
  processes' (GCS, raylet, dashboard, agents, log monitor: the rest of the descendants, summed);
- the store's bytes (results.sqlite with its -wal), and the trainings it holds (rows sent to a worker);
- the time the controller spent in ``update`` and in ``sample`` and the driver in `search.driver.screen`
  (their functions wrapped), and the time the driver was blocked in ``ray.wait``: the rest of the wall
  time is the scheduling overhead (storing, feeding, bookkeeping).

The table has a row every ``--interval`` trainings (1,000 by default, a fifth of the run when it is
shorter), then the ratios the issue asks for: driver memory at the last row against the first (the first
interval is the warm-up; goal: under 10% growth), the store's bytes per training, the controller's seconds
per update over the first 10 updates and the last 10, and the driver's own time per training in the
second interval (the first holds Ray's start) and the last. As PPO converges, more of its samples are
rules it has trained (duplicates: no training, but screened, stored and learned from), so the samples
per training (``rows/train``) rise and the driver's time per training with them; its time per sample
(``ms/row``) is the figure that should stay flat. ``--tracemalloc`` also prints the driver's allocations
that grew most from the first row to the end (much slower; to find what grows). The load average is
printed at the start and the end: other jobs on the machine slow the workers and the driver alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: the workers inherit it too

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# About 0.025 s per training on one core (2026-12-04): one epoch of 9 steps, one lr, so that a thousand
# trainings take minutes and the driver's own costs show.
TASK = {"model.width": 4, "epochs": 1, "batch_size": 128, "short_run_epochs": 1, "lr_grid": [0.1]}
MIB = 2**20


def soak_config(trainings: int, kind: str, batch_size: int, seed: int) -> dict[str, Any]:
    """The run config: the search loop alone (no funnel, confirmation or baselines), 2 workers."""
    return {"task": "digits", "task_overrides": TASK,
            "controller": {"kind": kind, "seed": seed, "batch_size": batch_size},
            "search": {"budget": trainings, "workers": 2, "cpus_per_worker": 1, "patience": 10_000},
            "funnel": [], "confirm": {"top_k": 0, "baselines": []}, "wandb": {"mode": "disabled"}}


def rss_bytes(pid: int | str = "self") -> int:
    """A process's resident memory (VmRSS), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def descendants(root: int) -> dict[int, str]:
    """pid -> command line of every process below ``root``."""
    parent, command = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError, IndexError):
            continue
    below, frontier = {}, [root]
    while frontier:
        pid = frontier.pop()
        for child, up in parent.items():
            if up == pid and child not in below:
                below[child] = command.get(child, "")
                frontier.append(child)
    return below


class Probe:
    """Timers around the driver's calls, and the samples the thread takes (module docstring)."""

    def __init__(self, run_dir: Path, every_s: float) -> None:
        self.run_dir, self.every_s = run_dir, every_s
        self.update_s: list[float] = []  # one per controller update (a few hundred at most)
        self.sample_s = self.screen_s = self.wait_s = 0.0
        self.samples: list[dict[str, Any]] = []
        self.start = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self.final: dict[str, Any] | None = None  # the sample taken as the pool shuts down
        self.first_row = 0  # trainings at the first table row: tracemalloc's snapshot is taken there
        self.snapshot: Any = None

    def instrument(self) -> None:
        """Wrap the controller's update and sample, the driver's screen and ray.wait with timers."""
        import ray

        import search.driver as driver
        from search.workers import WorkerPool

        make, screen, wait = driver.make_searcher, driver.screen, ray.wait

        def timed_searcher(config: Any) -> Any:
            controller = make(config)
            update, sample = controller.update, controller.sample

            def timed_update(*args: Any, **kwargs: Any) -> Any:
                t = time.perf_counter()
                try:
                    return update(*args, **kwargs)
                finally:
                    self.update_s.append(time.perf_counter() - t)

            def timed_sample(*args: Any, **kwargs: Any) -> Any:
                t = time.perf_counter()
                try:
                    return sample(*args, **kwargs)
                finally:
                    self.sample_s += time.perf_counter() - t

            controller.update, controller.sample = timed_update, timed_sample
            return controller

        def timed_screen(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return screen(*args, **kwargs)
            finally:
                self.screen_s += time.perf_counter() - t

        def timed_wait(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return wait(*args, **kwargs)
            finally:
                self.wait_s += time.perf_counter() - t

        driver.make_searcher, driver.screen, ray.wait = timed_searcher, timed_screen, timed_wait
        shutdown = WorkerPool.shutdown

        def sampled_shutdown(pool: WorkerPool) -> None:  # the last sample while the workers still live
            self.take()
            self.final = self.samples[-1]
            shutdown(pool)

        WorkerPool.shutdown = sampled_shutdown  # type: ignore[method-assign]

    def begin(self) -> None:
        self._thread.start()

    def end(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.take()
            except Exception as err:  # (a failed sample should not end the soak)
                print(f"soak: a sample failed: {type(err).__name__}: {err}", file=sys.stderr)

    def _store_counts(self) -> tuple[int, int]:
        """(trainings, rows) in the store: read through a connection of its own (WAL: never blocks)."""
        import sqlite3

        path = self.run_dir / "results.sqlite"
        if not path.is_file():
            return 0, 0
        db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30.0)
        try:
            trained = db.execute("SELECT COUNT(*) FROM evaluations WHERE attempts > 0 AND status != 'pending'"
                                 ).fetchone()[0]
            rows = db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
        except sqlite3.OperationalError:  # the tables not yet created
            return 0, 0
        finally:
            db.close()
        return int(trained), int(rows)

    def take(self) -> None:
        trained, rows = self._store_counts()
        below = descendants(os.getpid())
        workers = sorted(rss_bytes(p) for p, cmd in below.items() if cmd.startswith("ray::EvaluationWorker"))
        ray_rss = sum(rss_bytes(p) for p, cmd in below.items() if not cmd.startswith("ray::EvaluationWorker"))
        store = store_bytes(self.run_dir)
        sample = {"t": time.perf_counter() - self.start, "trainings": trained, "rows": rows,
                  "driver_rss": rss_bytes(), "worker_rss": workers, "ray_rss": ray_rss, "store_bytes": store,
                  "updates": len(self.update_s), "update_s": sum(self.update_s), "sample_s": self.sample_s,
                  "screen_s": self.screen_s, "wait_s": self.wait_s, "load": os.getloadavg()[0]}
        self.samples.append(sample)
        if self.snapshot is None and trained >= self.first_row and tracemalloc.is_tracing():
            self.snapshot = tracemalloc.take_snapshot()


def store_bytes(run_dir: Path) -> int:
    """The store's size on disk: results.sqlite, its -wal and -shm."""
    return sum(p.stat().st_size for p in run_dir.glob("results.sqlite*") if p.is_file())


def rows_at(samples: list[dict[str, Any]], interval: int, total: int) -> list[dict[str, Any]]:
    """The first sample at or past each multiple of ``interval``, and the last sample."""
    out, mark = [], interval
    for s in samples:
        while s["trainings"] >= mark and mark <= total:
            if not out or out[-1] is not s:
                out.append(s)
            mark += interval
    if samples and (not out or samples[-1]["trainings"] > out[-1]["trainings"]):
        out.append(samples[-1])
    return out


def table(rows: list[dict[str, Any]]) -> list[str]:
    """One line per row: memory, store, rates and the driver's time per training over the interval."""
    lines = [f"{'trainings':>9} {'time s':>7} {'train/s':>7} {'driver MiB':>10} {'workers MiB':>13} "
             f"{'ray MiB':>7} {'store MiB':>9} {'B/train':>7} {'s/update':>8} {'rows/train':>10} "
             f"{'driver ms/train':>15} {'ms/row':>6} {'load':>4}"]
    before = {"t": 0.0, "trainings": 0, "rows": 0, "updates": 0, "update_s": 0.0, "wait_s": 0.0}
    for r in rows:
        done = r["trainings"] - before["trainings"]
        span = r["t"] - before["t"]
        updates = r["updates"] - before["updates"]
        per_update = (r["update_s"] - before["update_s"]) / updates if updates else float("nan")
        drawn = r["rows"] - before["rows"]
        driver_ms = 1000 * (span - (r["wait_s"] - before["wait_s"]))
        workers = "+".join(f"{w / MIB:.0f}" for w in r["worker_rss"]) or "-"
        lines.append(f"{r['trainings']:>9} {r['t']:>7.0f} {done / span if span else 0:>7.1f} "
                     f"{r['driver_rss'] / MIB:>10.1f} {workers:>13} {r['ray_rss'] / MIB:>7.0f} "
                     f"{r['store_bytes'] / MIB:>9.2f} {r['store_bytes'] / max(1, r['trainings']):>7.0f} "
                     f"{per_update:>8.4f} {drawn / done if done else 0:>10.1f} "
                     f"{driver_ms / done if done else 0:>15.2f} {driver_ms / drawn if drawn else 0:>6.2f} "
                     f"{r['load']:>4.1f}")
        before = r
    return lines


def ratios(rows: list[dict[str, Any]], update_s: list[float], summary: Any, closed: int) -> dict[str, Any]:
    """The figures of the closing note (module docstring)."""
    first, last = rows[0], rows[-1]

    def driver_ms_per(a: dict[str, Any], b: dict[str, Any], what: str) -> float:
        done = b[what] - a[what]
        return 1000 * ((b["t"] - a["t"]) - (b["wait_s"] - a["wait_s"])) / done if done else float("nan")

    # The first interval holds Ray's start: the driver's own time is compared from the second on.
    zero = {"t": 0.0, "trainings": 0, "rows": 0, "wait_s": 0.0}
    second = rows[:2] if len(rows) > 2 else (zero, first)
    final = (rows[-2] if len(rows) > 1 else zero, last)
    return {
        "driver_rss_first_mib": first["driver_rss"] / MIB, "driver_rss_last_mib": last["driver_rss"] / MIB,
        "driver_growth_pct": 100 * (last["driver_rss"] / first["driver_rss"] - 1),
        "workers_rss_first_mib": [w / MIB for w in first["worker_rss"]],
        "workers_rss_last_mib": [w / MIB for w in last["worker_rss"]],
        "ray_rss_first_mib": first["ray_rss"] / MIB, "ray_rss_last_mib": last["ray_rss"] / MIB,
        "store_bytes": closed, "store_bytes_per_training": closed / max(1, last["trainings"]),
        "store_bytes_per_row": closed / max(1, last["rows"]),
        "update_s_first10": statistics.mean(update_s[:10]) if update_s else None,
        "update_s_last10": statistics.mean(update_s[-10:]) if update_s else None,
        "driver_ms_per_training_first": driver_ms_per(*second, "trainings"),
        "driver_ms_per_training_last": driver_ms_per(*final, "trainings"),
        "driver_ms_per_row_first": driver_ms_per(*second, "rows"),
        "driver_ms_per_row_last": driver_ms_per(*final, "rows"),
        "overhead_fraction": 1 - last["wait_s"] / last["t"] if last["t"] else None,
        "sample_s": last["sample_s"], "screen_s": last["screen_s"], "update_s": last["update_s"],
        "wait_s": last["wait_s"], "wall_s": last["t"], "trainings": last["trainings"], "rows": last["rows"],
        "trainings_per_s": last["trainings"] / last["t"] if last["t"] else None,
        "busy_fraction": summary.busy_fraction, "updates": summary.updates, "stopped": summary.stopped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trainings", type=int, default=5000, help="the search's budget")
    parser.add_argument("--out", type=Path, help="the run directory (default: a new one under /tmp)")
    parser.add_argument("--json", type=Path, help="write the samples, rows and ratios here")
    parser.add_argument("--interval", type=int, help="trainings between table rows (default 1000, or a "
                        "fifth of a shorter run)")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--kind", default="ppo", choices=["ppo", "random", "evolution"])
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tracemalloc", action="store_true", help="trace the driver's allocations")
    args = parser.parse_args()
    interval = args.interval or (1000 if args.trainings >= 5000 else max(1, args.trainings // 5))

    import torch

    torch.set_num_threads(1)
    from search.driver import run_search

    run_dir = args.out or Path(tempfile.mkdtemp(prefix="nos-soak-")) / "run"
    if (run_dir / "results.sqlite").exists():
        sys.exit(f"{run_dir} already holds a run: give --out a new directory")
    if args.tracemalloc:
        tracemalloc.start(12)
    print(f"soak: {args.trainings} trainings, {args.kind} batch {args.batch_size}, run {run_dir}; "
          f"load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    probe = Probe(run_dir, args.every)
    probe.first_row = interval
    probe.instrument()
    probe.begin()
    try:
        summary = run_search(soak_config(args.trainings, args.kind, args.batch_size, args.seed), run_dir,
                             progress=False)
    finally:
        probe.end()
    closed = store_bytes(run_dir)  # the store closed: its log copied into the file, as a user keeps it
    samples = probe.samples[:probe.samples.index(probe.final) + 1] if probe.final else probe.samples
    rows = rows_at(samples, interval, args.trainings)
    print("\n".join(table(rows)))
    out = ratios(rows, probe.update_s, summary, closed)
    w_first = "+".join(f"{w:.0f}" for w in out["workers_rss_first_mib"])
    w_last = "+".join(f"{w:.0f}" for w in out["workers_rss_last_mib"])
    print(f"driver memory: {out['driver_rss_first_mib']:.1f} MiB at {rows[0]['trainings']} trainings, "
          f"{out['driver_rss_last_mib']:.1f} MiB at {rows[-1]['trainings']}: "
          f"{out['driver_growth_pct']:+.1f}% (goal: under 10%)")
    print(f"workers' memory: {w_first} MiB -> {w_last} MiB; Ray's processes {out['ray_rss_first_mib']:.0f} "
          f"-> {out['ray_rss_last_mib']:.0f} MiB")
    wal = max(r["store_bytes"] for r in rows) - out["store_bytes"]
    print(f"store: {out['store_bytes'] / MIB:.2f} MiB closed, {out['store_bytes_per_training']:.0f} bytes "
          f"per training ({out['store_bytes_per_row']:.0f} per row, {out['rows']} rows; while open the "
          f"-wal adds up to {wal / MIB:.1f} MiB)")
    if out["update_s_first10"] is not None:
        print(f"controller update: {out['update_s_first10']:.4f} s (first 10) -> "
              f"{out['update_s_last10']:.4f} s (last 10) of {len(probe.update_s)}; sample "
              f"{out['sample_s']:.1f} s, screen {out['screen_s']:.1f} s in all")
    print(f"scheduling overhead: driver {out['driver_ms_per_training_first']:.2f} ms per training "
          f"({out['driver_ms_per_row_first']:.2f} per sample) in the second interval, "
          f"{out['driver_ms_per_training_last']:.2f} ({out['driver_ms_per_row_last']:.2f}) in the last; "
          f"{100 * (out['overhead_fraction'] or 0):.0f}% of the wall time outside ray.wait; "
          f"workers busy {100 * (summary.busy_fraction or 0):.0f}%")
    print(f"wall {out['wall_s']:.0f} s, {out['trainings']} trainings, {out['trainings_per_s']:.2f}/s, "
          f"{summary.updates} updates, stopped: {summary.stopped}; load average "
          f"{os.getloadavg()[0]:.2f} at the end")
    if probe.snapshot is not None:
        grown = tracemalloc.take_snapshot().compare_to(probe.snapshot, "traceback")
        print(f"driver allocations grown since {interval} trainings (tracemalloc):")
        for stat in grown[:8]:
            print(f"  {stat.size_diff / 1024:+.0f} KiB in {stat.count_diff:+d} blocks")
            for line in stat.traceback.format()[-6:]:
                print("    " + line)
    if args.json:
        args.json.write_text(json.dumps({"config": soak_config(args.trainings, args.kind, args.batch_size,
                                                               args.seed),
                                         "samples": probe.samples, "rows": rows, "ratios": out,
                                         "update_s": probe.update_s}, indent=1))


if __name__ == "__main__":
    main()
