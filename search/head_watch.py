"""When the Ray head goes away mid-search: one line saying so and how to resume, instead of a hang.

A driver whose cluster loses its head (the GCS) waits in Ray's calls; after Ray's reconnect timeout
(60 s by default) Ray's core ends the process with a C++ log line and nothing that says what to do. The
search's results are safe all along (each row is committed to the store as it arrives, and a resume
trains only what did not finish), so the useful thing is to stop early and say how to go on. `watch_head`
asks the GCS for its cluster id every `PROBE_EVERY_S` (the same request `search.cluster.check_gcs`
sends); after `GONE_AFTER_S` without an answer it writes ``error: ...`` with the resume command to
stderr and ends the process with status 1. The main thread may be inside a Ray call that will not return,
so the exit cannot wait for it; what the store holds is what a resume reads.

    with watch_head(gcs_address(), lambda: f"nos search --resume {run_dir} --address {address}"):
        ...  # the search
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

from search.cluster import ClusterError, check_gcs

PROBE_EVERY_S = 1.0
GONE_AFTER_S = 15.0  # well inside Ray's own 60 s, long enough for a GCS that restarts (GCS fault tolerance)


def gcs_address() -> str | None:
    """The GCS address (HOST:PORT) of the Ray this process is connected to, or None."""
    try:
        import ray

        return ray.get_runtime_context().gcs_address if ray.is_initialized() else None
    except Exception:  # a private detail of the runtime context: without it, nothing is watched
        return None


@contextlib.contextmanager
def watch_head(address: str | None, resume: Callable[[], str], gone_after_s: float = GONE_AFTER_S,
               exit: Callable[[int], None] = os._exit) -> Iterator[None]:
    """Inside: if the GCS at ``address`` stops answering for ``gone_after_s``, say so with ``resume()``
    (the command that continues the run) and end the process (``exit(1)``). None: nothing is watched."""
    if not address:
        yield
        return
    stop = threading.Event()
    thread = threading.Thread(target=_watch, args=(address, resume, gone_after_s, exit, stop),
                              name="nos-head-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _watch(address: str, resume: Callable[[], str], gone_after_s: float, exit: Callable[[int], None],
           stop: threading.Event) -> None:
    host, _, port = address.rpartition(":")
    last_answer = time.monotonic()
    while not stop.wait(PROBE_EVERY_S):
        try:
            check_gcs(address, (host.strip("[]"), int(port)), timeout=min(2.0, gone_after_s))
            last_answer = time.monotonic()
            continue
        except ClusterError:
            pass
        except Exception:  # the probe itself broke (not the head): keep the search going
            last_answer = time.monotonic()
            continue
        silent = time.monotonic() - last_answer
        if silent >= gone_after_s and not stop.is_set():
            sys.stderr.write(f"error: the Ray cluster's head (GCS at {address}) has not answered for "
                             f"{silent:.0f} s, so the search stops here. Every result recorded so far is in "
                             f"the run's store; when the head is back, continue with: {resume()}\n")
            sys.stderr.flush()
            exit(1)
            return
