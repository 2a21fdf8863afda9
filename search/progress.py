"""The progress bars: the search's (trainings done of the budget, samples drawn, duplicates and invalid
ones among them, trainings per second, the best rule so far) and a comparison's (trainings done of all,
the last one finished), both a `Bar`.

    with SearchProgress(budget=1000, enabled=True) as bar:
        bar.sampled(rows)                                   # a new batch's rows, as screened
        bar.trained(reward=91.2, rule="sign(m) * g")        # one training finished (reward None: not ok)
        bar.duplicate()                                     # a pending row took another training's reward

    with ComparisonProgress(total=8, description="confirm 2 rules", enabled=True) as bar:
        bar.done("adam", 1, evaluation)                     # one (optimizer, seed) training finished

Each is a `rich.progress.Progress` of one task with columns of its own, the estimated time left among
them; with ``enabled=False`` every call is a no-op, so the callers call it unconditionally. A resumed
search starts the counts from the store's.

Without a terminal (``nos search > log``, nohup, a cluster job, CI), a live bar would print nothing until
the end, so each bar prints a plain log line instead, flushed at once: at most one every ``interval``
seconds (``NOS_PROGRESS_INTERVAL``, default 30), whenever something happens, and one at the end. As Ray
Tune does when it has no terminal: trainings done of the budget, rate, time left, the best reward and rule.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Column
from rich.text import Text

from child_tasks.reward import Evaluation as TaskEvaluation
from search.store import Evaluation


def interval_s() -> float:
    """Seconds between log lines without a terminal (``NOS_PROGRESS_INTERVAL``, default 30)."""
    try:
        return max(0.0, float(os.environ.get("NOS_PROGRESS_INTERVAL", "30")))
    except ValueError:
        return 30.0


def duration(seconds: float | None) -> str:
    """``1h02m``, ``4m05s``, ``12s``; ``-`` when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "-"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Bar:
    """A rich progress bar over one task, shown while in a ``with`` block; log lines instead without a
    terminal (module docstring); a no-op when not enabled."""

    def __init__(self, *columns: ProgressColumn, total: int, completed: int = 0, enabled: bool = True,
                 console: Console | None = None, expand: bool = False, **fields: Any) -> None:
        self.console = console or Console()
        self.lines = enabled and not self.console.is_terminal  # log lines instead of a live bar
        self._progress = Progress(*columns, console=self.console, disable=not enabled or self.lines,
                                  transient=False, expand=expand)
        self._task = self._progress.add_task("", total=total, completed=completed, **fields)
        self._start = time.monotonic()
        self._done_at_start = completed
        self._last_line = self._start

    def __enter__(self) -> Bar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
        if self.lines:
            self._log()

    def update(self, **changes: Any) -> None:
        self._progress.update(self._task, **changes)
        if self.lines and time.monotonic() - self._last_line >= interval_s():
            self._log()

    def _log(self) -> None:
        self._last_line = time.monotonic()
        self.console.print(self.line(), highlight=False, soft_wrap=True, markup=False)
        self.console.file.flush()

    def rate_and_left(self) -> tuple[float, float | None]:
        """Trainings per second in this session, and the seconds left at that rate (None: unknown)."""
        task = self._progress.tasks[0]
        elapsed = time.monotonic() - self._start
        rate = (task.completed - self._done_at_start) / elapsed if elapsed > 0 else 0.0
        left = max(0.0, (task.total or 0) - task.completed)
        return rate, (left / rate if rate > 0 else None)

    def line(self) -> str:
        """The log line without a terminal (each bar says what it counts)."""
        task = self._progress.tasks[0]
        rate, left = self.rate_and_left()
        return (f"{task.completed:.0f}/{task.total:.0f} done, {rate:.2f}/s, elapsed "
                f"{duration(time.monotonic() - self._start)}, left {duration(left)}")


class RateColumn(ProgressColumn):
    """Child-task trainings per second in this session."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.fields.get("session", 0) / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:5.2f}/s", style="progress.data.speed")


class SamplesColumn(ProgressColumn):
    """Samples drawn, and how many of them cost no training."""

    def render(self, task: Task) -> Text:
        f = task.fields
        funnel = f" funnel {f['funnel']}" if f.get("funnel") else ""
        return Text(f"{f['samples']} samples ({f['duplicates']} dup, {f['invalid']} invalid){funnel}",
                    style="dim")


class BestColumn(ProgressColumn):
    """The best reward so far and its rule, cut to the terminal's width (one line, ending in …)."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1))

    def render(self, task: Task) -> Text:
        reward, rule = task.fields.get("best_reward"), task.fields.get("best_rule") or ""
        beat = task.fields.get("to_beat")
        text = Text("", no_wrap=True, overflow="ellipsis")
        if beat:
            text.append(f"to beat: {beat[0]} {beat[1]:.2f}  ", style="dim")
        if reward is None:
            text.append("best: -", style="dim")
            return text
        text.append("best ")
        text.append(f"{reward:.2f}", style="bold green")
        text.append(f"  {rule}", style="cyan")
        return text


class SearchProgress(Bar):
    """The bar over one search session; see the module docstring."""

    def __init__(self, budget: int, trained: int = 0, counts: Mapping[str, int] | None = None,
                 enabled: bool = True, best_reward: float | None = None, best_rule: str | None = None,
                 console: Console | None = None, to_beat: tuple[str, float] | None = None) -> None:
        counts = counts or {}
        self.to_beat = to_beat  # (name, reward) of the best baseline at the run's budget
        self.enabled = enabled
        self.budget = budget
        self.best_reward, self.best_rule = best_reward, best_rule
        self.fields = {"samples": sum(counts.values()), "duplicates": counts.get("duplicate", 0),
                       "invalid": counts.get("invalid", 0), "session": 0, "funnel": ""}
        self.stage = 0  # the funnel stage the best rule's reward is from
        super().__init__(TextColumn("[bold]search"), BarColumn(bar_width=16), MofNCompleteColumn(),
                         TextColumn("trainings"), RateColumn(), TimeElapsedColumn(), TextColumn("left"),
                         TimeRemainingColumn(), SamplesColumn(), BestColumn(), total=max(budget, trained),
                         completed=trained, enabled=enabled,
                         console=console, expand=True, best_reward=best_reward, best_rule=best_rule,
                         to_beat=to_beat,
                         **self.fields)

    def __enter__(self) -> SearchProgress:
        super().__enter__()
        return self

    def line(self) -> str:
        task = self._progress.tasks[0]
        rate, left = self.rate_and_left()
        f = self.fields
        best = "-" if self.best_reward is None else f"{self.best_reward:.4g}  {self.best_rule}"
        beat = "" if self.to_beat is None else f"; to beat: {self.to_beat[0]} {self.to_beat[1]:.4g}"
        funnel = f"; funnel {f['funnel']}" if f["funnel"] else ""
        return (f"search: {task.completed:.0f}/{task.total:.0f} trainings, {rate:.2f}/s, elapsed "
                f"{duration(time.monotonic() - self._start)}, left {duration(left)}; {f['samples']} samples "
                f"({f['duplicates']} dup, {f['invalid']} invalid){funnel}{beat}; best {best}")

    def sampled(self, rows: Sequence[Evaluation]) -> None:
        """A new batch's rows as stored: each is a sample; duplicates and invalid ones are counted."""
        self.fields["samples"] += len(rows)
        self.fields["duplicates"] += sum(r.status == "duplicate" for r in rows)
        self.fields["invalid"] += sum(r.status == "invalid" for r in rows)
        self.update(**self.fields)

    def duplicate(self) -> None:
        """A row that waited for a training of its rule took that training's reward."""
        self.fields["duplicates"] += 1
        self.update(**self.fields)

    def trained(self, reward: float | None = None, rule: str | None = None) -> None:
        """One training finished; ``reward`` and ``rule`` when it is an ok one (the best so far is kept).
        Past the budget (a run resumed from a version of nos whose last batch could overrun it), the bar's
        total grows with it."""
        self.fields["session"] += 1
        if reward is not None and self._better(reward):
            self.best_reward, self.best_rule = reward, rule
        task = self._progress.tasks[0]
        total = max(task.total or 0, task.completed + 1)
        self.update(advance=1, total=total, best_reward=self.best_reward, best_rule=self.best_rule,
                    **self.fields)


    def staged(self, counts: Sequence[int], best: tuple[int, float, str] | None,
               to_beat: tuple[str, float] | None) -> None:
        """The funnel's state: rules that completed each stage, the best rule at its highest stage
        (stage, score, rule) and the best baseline at that stage, which replace stage 0's."""
        self.fields["funnel"] = " -> ".join(f"s{i}:{n}" for i, n in enumerate(counts))
        if best is not None and best[0] > 0:
            self.stage, self.best_reward, self.best_rule = best[0], best[1], f"(stage {best[0]}) {best[2]}"
            self.to_beat = to_beat
        self.update(best_reward=self.best_reward, best_rule=self.best_rule, to_beat=self.to_beat,
                    **self.fields)

    def _better(self, reward: float) -> bool:  # once the funnel has a best, stage 0 no longer sets it
        return self.stage == 0 and (self.best_reward is None or reward > self.best_reward)


class ComparisonProgress(Bar):
    """Trainings of a comparison done of all, and the last one finished."""

    def __init__(self, total: int, description: str, enabled: bool = True,
                 console: Console | None = None) -> None:
        self.description = description
        super().__init__(TextColumn(f"[bold]{description}"), BarColumn(), MofNCompleteColumn(),
                         TextColumn("trainings"), TimeElapsedColumn(), TextColumn("left"),
                         TimeRemainingColumn(), TextColumn("{task.fields[last]}"), total=total,
                         enabled=enabled, console=console, last="")

    def line(self) -> str:
        last = self._progress.tasks[0].fields.get("last")
        return f"{self.description}: {super().line()}" + (f"; last: {last}" if last else "")

    def __enter__(self) -> ComparisonProgress:
        super().__enter__()
        return self

    def done(self, label: str, seed: int, result: TaskEvaluation) -> None:
        last = f"{label} seed {seed}: {result.reward:.3f}"
        last += "" if result.status == "ok" else f" ({result.status})"
        self.update(advance=1, last=last)
