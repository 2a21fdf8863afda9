"""Where Ray's own output goes while a search runs: a log file in the run directory, not the terminal.

A driver connected to Ray prints what Ray sends it: the raylets' and the GCS's error reports (a lost
node's "Raylet is terminated" with its last 20 lines of state dump), the evaluation workers' stdout and
stderr, and the warnings of the ``ray`` logger. On a cluster that loses a node this buries nos's own
progress. Inside `ray_output(path)` all of it is appended to ``path`` instead (``ray.log`` in the run
directory, named once when the search starts), each line with where it came from; nos prints one line
per fault itself (`search.scheduling`). ``show=True`` (``nos --debug``, or ``search.ray_logs: terminal``)
leaves Ray printing as it does.

    with ray_output(run_dir / RAY_LOG):
        started = connect(address, num_cpus, worker_logs=True)
        ...
        disconnect(started)

Ray has no public hook for the driver's copy of these lines, so this replaces two things of
``ray._private.worker`` for the time being and puts them back after: ``print_to_stdstream``, which both
the error listener and the worker-log dispatcher call, and the ``ray`` logger's handlers. If a Ray release
renames them, the search still runs and Ray prints as before (tests/test_ray_output.py fails first).
Ray's processes keep their own files in the session's ``logs`` folder; the file's header names it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

RAY_LOG = "ray.log"  # in the run directory


@contextlib.contextmanager
def ray_output(path: Path | None, show: bool = False) -> Iterator[Path | None]:
    """Inside: Ray's lines to the driver are appended to ``path`` (None or ``show``: printed as Ray prints
    them). Yields the file's path, or None when nothing is redirected."""
    if path is None or show:
        yield None
        return
    try:
        from ray._private import worker as ray_worker
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:  # a Ray without these: it prints as before
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8", errors="backslashreplace") as file:
        sink = _Sink(file)
        sink.write_line(f"===== {time.strftime('%Y-%m-%d %H:%M:%S')}: Ray's lines to this search's driver "
                        "(Ray's processes keep theirs in the session's logs folder, below) =====")
        original = ray_worker.print_to_stdstream
        ray_logger = logging.getLogger("ray")
        handlers, propagate = list(ray_logger.handlers), ray_logger.propagate
        file_handler = logging.StreamHandler(sink)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        writer = sink.print_to_stdstream  # one bound method: each attribute access makes a new one
        ray_worker.print_to_stdstream = writer
        # A handler of an already-connected driver was bound to the old function: move it too.
        replaced = _replace_handler(dispatcher, original, writer)
        for handler in handlers:
            ray_logger.removeHandler(handler)
        ray_logger.addHandler(file_handler)
        ray_logger.propagate = False
        try:
            yield path
        finally:
            sink.note_session()
            ray_worker.print_to_stdstream = original
            if replaced:
                _replace_handler(dispatcher, writer, original)
            ray_logger.removeHandler(file_handler)
            for handler in handlers:
                ray_logger.addHandler(handler)
            ray_logger.propagate = propagate
            sink.closed = True


class _Sink:
    """Writes Ray's line batches and log records to the file, from any thread."""

    def __init__(self, file: IO[str]) -> None:
        self.file = file
        self.lock = threading.Lock()
        self.closed = False
        self.session_noted = False

    def write_line(self, line: str) -> None:
        with self.lock:
            if not self.closed:
                self.file.write(line.rstrip("\n") + "\n")
                self.file.flush()

    def write(self, text: str) -> None:  # the logging handler's stream
        if text.strip():
            self.write_line(text)

    def flush(self) -> None:
        pass

    def print_to_stdstream(self, data: dict[str, Any], ignore_prefix: bool = False) -> None:
        """Ray's ``print_to_stdstream(data, ignore_prefix)``: a batch of lines from one process."""
        self.note_session()
        source = _source(data)
        stream = "stderr" if data.get("is_err") else "stdout"
        for line in data.get("lines") or []:
            self.write_line(f"({source}, {stream}) {line}")

    def note_session(self) -> None:
        """Name Ray's session log folder once, when Ray is connected."""
        if self.session_noted:
            return
        folder = _session_logs()
        if folder:
            self.session_noted = True
            self.write_line(f"Ray's session logs (raylet, GCS, every worker): {folder}")


def _source(data: dict[str, Any]) -> str:
    pid = data.get("pid")
    if pid in ("raylet", "autoscaler"):
        return str(pid)
    name = data.get("actor_name") or data.get("task_name") or "worker"
    ip = data.get("ip")
    return f"{name} pid={pid}" + (f" ip={ip}" if ip else "")


def _session_logs() -> str | None:
    try:
        import ray

        if not ray.is_initialized():
            return None
        node = ray._private.worker.global_worker.node
        return str(node.get_logs_dir_path()) if node is not None else None
    except Exception:  # a private attribute: naming the folder is a courtesy, never a failure
        return None


def _replace_handler(dispatcher: Any, old: Any, new: Any) -> bool:
    """Point the worker-log dispatcher's handlers that call ``old`` (partials of it) at ``new``."""
    import functools

    found = False
    for name, handler in list(getattr(dispatcher, "handlers", [])):
        if getattr(handler, "func", handler) == old:  # ==: a bound method equals another of its own
            keywords = getattr(handler, "keywords", None) or {}
            dispatcher.remove_handler(name)
            dispatcher.add_handler(name, functools.partial(new, **keywords))
            found = True
    return found
