"""One process per run directory: an advisory lock that a second `nos search --resume` is refused by.

    with RunLock(run_dir):       # RunLockedError if another live process holds it
        ...                      # search, resume, confirm

The lock is ``fcntl.flock`` on ``run_dir/run.lock``. The kernel releases a flock when its holder exits,
however it exits (``kill -9`` included), so a lock file left behind by a dead process is stale by
construction: the next run takes it without asking anyone to delete anything. The holder writes its
pid, host and start time into the file, so the refusal can say who holds it. (The ``filelock`` package
does the same locking, but its Unix lock truncates the file on every attempt, the losing ones included,
which would erase the holder's note.) flock is advisory and local to one machine's kernel: it protects
a run directory against a second process on the same machine, the case that happens (a forgotten
terminal, a retried job); on a network file system shared by several machines it may not hold.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from search.store import StoreError

LOCK_FILE = "run.lock"


class RunLockedError(StoreError):
    """Another live process holds the run directory's lock (a StoreError: the CLI reports it as one)."""


class RunLock:
    """An exclusive, non-blocking lock on a run directory (module docstring); a context manager."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_note(fd)
            os.close(fd)
            raise RunLockedError(f"{self.path.parent} is in use by another nos process ({holder}); wait for "
                                 "it to finish or stop it, then resume") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        note = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        os.write(fd, note.encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock; the file stays, harmless
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_note(fd: int) -> str:
    try:
        note = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        note = ""
    return note or "holder unknown"
