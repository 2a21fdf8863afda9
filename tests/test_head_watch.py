"""search.head_watch: a head that stops answering ends the search with one line and the resume command;
one that answers is left alone."""

from __future__ import annotations

import threading
import time

from search.head_watch import gcs_address, watch_head
from tests.search_helpers import free_port


def test_a_head_that_stops_answering_ends_the_search_with_the_resume_command(capsys):
    exits: list[int] = []
    ended = threading.Event()

    def exit(status: int) -> None:
        exits.append(status)
        ended.set()

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    with watch_head(address, lambda: "nos search --resume runs/r1 --address " + address, gone_after_s=2.0,
                    exit=exit):
        assert ended.wait(timeout=20)
    assert exits == [1] and 2.0 <= time.monotonic() - start < 15
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: the Ray cluster's head")
    assert f"GCS at {address}" in err and "continue with: nos search --resume runs/r1 --address" in err


def test_a_head_that_answers_is_left_alone(ray_session, capsys):
    address = gcs_address()
    assert address and ":" in address
    exits: list[int] = []
    with watch_head(address, lambda: "unused", gone_after_s=1.5, exit=exits.append):
        time.sleep(4)
    assert exits == [] and capsys.readouterr().err == ""


def test_nothing_is_watched_without_an_address():
    with watch_head(None, lambda: "unused", exit=lambda status: (_ for _ in ()).throw(AssertionError)):
        pass
