"""Progress without a terminal: log lines, flushed, at most one per interval and one at the end, with
the trainings done, rate, time left and the best rule; with a terminal the live bar shows time left."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from search.progress import ComparisonProgress, SearchProgress, duration


def _piped() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=200), out


def test_without_a_terminal_a_search_logs_lines_with_rate_time_left_and_the_best(monkeypatch) -> None:
    monkeypatch.setenv("NOS_PROGRESS_INTERVAL", "0")  # a line at every event
    console, out = _piped()
    with SearchProgress(budget=10, trained=2, counts={"ok": 2, "duplicate": 1}, console=console,
                        to_beat=("adam", 0.875)) as bar:
        assert bar.lines
        bar.trained(reward=0.9, rule="sign(m) * g")
        bar.trained(reward=None)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines  # two events and the end
    assert re.fullmatch(r"search: 3/10 trainings, [0-9.]+/s, elapsed \d+s, left (\d+s|-); 3 samples \(1 dup, "
                        r"0 invalid\); to beat: adam 0\.875; best 0\.9  sign\(m\) \* g", lines[0]), lines[0]
    assert lines[-1].startswith("search: 4/10 trainings")


def test_lines_are_rate_limited(monkeypatch) -> None:
    monkeypatch.setenv("NOS_PROGRESS_INTERVAL", "3600")
    console, out = _piped()
    with ComparisonProgress(total=4, description="confirm 1 rule", console=console) as bar:
        for _ in range(4):
            bar.update(advance=1, last="adam seed 1: 0.500")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("confirm 1 rule: 4/4 done")
    assert "last: adam seed 1" in lines[0]


def test_a_terminal_gets_the_live_bar_with_time_left_and_no_lines() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200)
    with SearchProgress(budget=10, console=console, to_beat=("sgd", 0.25)) as bar:
        assert not bar.lines
        bar.trained(reward=0.5, rule="g")
    assert "left" in out.getvalue() and "to beat: sgd 0.25" in out.getvalue()
    assert "search:" not in out.getvalue()


def test_disabled_prints_nothing() -> None:
    console, out = _piped()
    with SearchProgress(budget=10, enabled=False, console=console) as bar:
        bar.trained(reward=0.5, rule="g")
    assert out.getvalue() == ""


@pytest.mark.parametrize("seconds, text", [(None, "-"), (float("inf"), "-"), (7.4, "7s"), (65, "1m05s"),
                                           (3725, "1h02m")])
def test_durations_read_as_people_write_them(seconds, text) -> None:
    assert duration(seconds) == text
