"""Search quality on the real reward: which searcher finds better rules for the same number of trainings?

Runs `nos search` (the quickstart's run config: the embedded MNIST-1D suite) once per searcher and seed,
each with the same budget in trainings and no confirmation, on a local Ray with one worker of one thread
per CPU. Each run lives in ``OUT/<searcher>-<seed>`` and is resumed when it exists, so the benchmark can be
interrupted and run again. Then it prints, and plots to ``OUT/search_quality.png``:

* best-so-far reward against trainings (in the order results arrived): mean and range over the seeds;
* each run's best reward at the budget, paired by seed against random search's;
* the mean reward of each run's 10 best distinct rules at the end;

and confirms each searcher's best rule (the best of its runs) on fresh evaluation seeds (1..N; the
searches used seed 0) against the lr-tuned baselines, with each rule's paired difference to the best
baseline and its z (mean difference over its standard error; every optimizer sees the same seeds).

    python benchmarks/search_quality.py                           # ppo, evolution, random; seeds 0-2
    python benchmarks/search_quality.py --budget 100 --seeds 0 --searchers random   # a smoke run

A finished run already in ``OUT/<searcher>-<seed>`` (e.g. a quickstart run of that searcher and seed,
copied there) is used as it is.

It takes long (budget x searchers x seeds trainings, then the confirmation): run it in the background,
nothing else on the machine, and say what else ran.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402

from child_tasks.compare import paired  # noqa: E402
from search.config import load_search_config  # noqa: E402
from search.driver import run_search  # noqa: E402
from search.results.comparison import compare_on_ray, contenders  # noqa: E402
from search.store import FILENAME, RunStore  # noqa: E402

BASELINES = ("adam", "momentum", "sgd", "rmsprop")


def run_one(out: Path, searcher: str, seed: int, budget: int, config_path: str | None) -> Path:
    run_dir = out / f"{searcher}-{seed}"
    if (run_dir / FILENAME).exists():
        with RunStore(run_dir, config=None, create=False) as store:
            done = sum(store.trained_by_batch().values()) >= store.config["search"]["budget"]
        if not done:  # interrupted: continue it (a finished run, e.g. a copied quickstart run, is kept)
            run_search(None, run_dir, resume=True, progress=False)
    else:
        config = load_search_config(config_path, [f"controller.kind={searcher}", f"controller.seed={seed}",
                                                  f"search.budget={budget}", "confirm.top_k=0"])
        run_search(config, run_dir, progress=False)
    return run_dir


def curve(run_dir: Path) -> tuple[list[float], list[float], list]:
    """Best-so-far reward after each training (in the order results arrived), the rewards of the 10
    best distinct rules, and the best row."""
    with RunStore(run_dir, config=None, create=False) as store:
        trained = [r for r in store.evaluations() if r.attempts > 0 and r.status in ("ok", "diverged")]
        best = store.best(10)
    trained.sort(key=lambda r: (r.finished_at or 0.0, r.id))
    out, top = [], float("-inf")
    for row in trained:
        top = max(top, row.reward if row.status == "ok" else 0.0)
        out.append(top)
    return out, [r.reward for r in best], best[0] if best else None


def plot(curves: dict[str, list[list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for searcher, runs in curves.items():
        n = min(len(c) for c in runs)
        xs = list(range(1, n + 1))
        columns = [[c[i] for c in runs] for i in range(n)]
        ax.plot(xs, [statistics.fmean(col) for col in columns], label=f"{searcher} (mean of {len(runs)})")
        ax.fill_between(xs, [min(col) for col in columns], [max(col) for col in columns], alpha=0.2)
    ax.set_xlabel("trainings")
    ax.set_ylabel("best reward so far (1 = tuned Adam)")
    ax.set_title("search quality on the quickstart's reward")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--searchers", nargs="+", default=["ppo", "evolution", "random"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=150, help="trainings per run (default 150, the "
                        "quickstart's)")
    parser.add_argument("--config", default=None, help="run config (default: configs/quickstart.yaml)")
    parser.add_argument("--confirm-seeds", type=int, default=5, help="fresh evaluation seeds 1..N")
    parser.add_argument("--out", type=Path, default=Path("runs/search_quality"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    curves: dict[str, list[list[float]]] = {}
    finals: dict[str, list[float]] = {}
    winners: dict[str, tuple[float, str]] = {}
    for searcher in args.searchers:
        for seed in args.seeds:
            run_dir = run_one(args.out, searcher, seed, args.budget, args.config)
            c, top10, best = curve(run_dir)
            curves.setdefault(searcher, []).append(c)
            finals.setdefault(searcher, []).append(c[min(args.budget, len(c)) - 1] if c else 0.0)
            print(f"{searcher} seed {seed}: {len(c)} trainings, best {c[-1] if c else float('nan'):.4f} "
                  f"({best.rule if best else '-'}), top-10 mean "
                  f"{statistics.fmean(top10) if top10 else float('nan'):.4f}", flush=True)
            if best is not None and (searcher not in winners or best.reward > winners[searcher][0]):
                winners[searcher] = (best.reward, best.rule)
    plot(curves, args.out / "search_quality.png")
    print(f"\nbest-so-far at {args.budget} trainings, per seed {args.seeds}:")
    for searcher, values in finals.items():
        line = f"  {searcher:10s} " + " ".join(f"{v:.4f}" for v in values)
        if searcher != "random" and "random" in finals:
            above = sum(a > b for a, b in zip(values, finals["random"], strict=True))
            line += f"   above random in {above} of {len(values)} seeds"
        print(line)
    print(f"plot: {args.out / 'search_quality.png'}")

    config = load_search_config(args.config)
    seeds = list(range(1, args.confirm_seeds + 1))
    rules = {f"{searcher}_best": rule for searcher, (_, rule) in winners.items()}
    table = compare_on_ray(contenders(rules, list(BASELINES)), config.suite, seeds, progress=False,
                           description="confirm")
    table.print(Console(width=180))  # a log is not an 80-column terminal
    best_baseline = max(BASELINES, key=lambda b: table.row(b).mean)
    print(f"each searcher's best rule against the best tuned baseline ({best_baseline}), paired over seeds "
          f"{seeds}:")
    for label, rule in rules.items():
        diff, z = paired(table.row(label).rewards, table.row(best_baseline).rewards)
        print(f"  {label:16s} {rule}\n  {'':16s} gain {diff:+.4f}, z {z:+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
