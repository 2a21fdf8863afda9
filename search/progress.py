"""The search's progress bar: samples finished of the budget, trainings per second, the best rule so far.

    with SearchProgress(budget=1000, done=0, enabled=True) as bar:
        bar.finished(evaluated=True, reward=91.2, rule="sign(m) * g")   # one sample finished

A `rich.progress.Progress` with columns of its own; with ``enabled=False`` every call is a no-op, so the
driver calls it unconditionally.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                           TimeElapsedColumn)
from rich.table import Column
from rich.text import Text


class EvalRateColumn(ProgressColumn):
    """Child-task trainings per second in this session (invalid and duplicate samples cost none)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.fields.get("evaluations", 0) / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:5.2f} evals/s", style="progress.data.speed")


class BestColumn(ProgressColumn):
    """The best reward so far and its rule, cut to the terminal's width (one line, ending in …)."""

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1))

    def render(self, task: Task) -> Text:
        reward, rule = task.fields.get("best_reward"), task.fields.get("best_rule") or ""
        if reward is None:
            return Text("best: -", style="dim")
        text = Text("best ", no_wrap=True, overflow="ellipsis")
        text.append(f"{reward:.2f}", style="bold green")
        text.append(f"  {rule}", style="cyan")
        return text


class SearchProgress:
    """The bar over one search session; see the module docstring."""

    def __init__(self, budget: int, done: int = 0, enabled: bool = True, best_reward: float | None = None,
                 best_rule: str | None = None, console: Console | None = None) -> None:
        self.enabled = enabled
        self.best_reward, self.best_rule = best_reward, best_rule
        self.evaluations = 0
        self._progress = Progress(TextColumn("[bold]search"), BarColumn(bar_width=16), MofNCompleteColumn(),
                                  TextColumn("samples"), EvalRateColumn(), TimeElapsedColumn(), BestColumn(),
                                  console=console, disable=not enabled, transient=False, expand=True)
        self._task = self._progress.add_task("search", total=budget, completed=done, evaluations=0,
                                             best_reward=best_reward, best_rule=best_rule)

    def __enter__(self) -> SearchProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def finished(self, evaluated: bool = False, reward: float | None = None, rule: str | None = None) -> None:
        """One sample finished; ``evaluated`` when it was trained, ``reward`` and ``rule`` when it is an ok
        evaluation (the best so far is kept)."""
        self.evaluations += int(evaluated)
        if reward is not None and (self.best_reward is None or reward > self.best_reward):
            self.best_reward, self.best_rule = reward, rule
        self._progress.update(self._task, advance=1, evaluations=self.evaluations,
                              best_reward=self.best_reward, best_rule=self.best_rule)
