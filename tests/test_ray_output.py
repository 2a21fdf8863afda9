"""Ray's own output goes to the run's ray.log, not the terminal (search.ray_output): Ray's error reports,
the workers' stdout and stderr and the ``ray`` logger, while the search's lines stay on the terminal."""

from __future__ import annotations

import logging
import time

import pytest

from search.ray_output import ray_output

# What Ray's error listener sends a driver when a node's raylet dies (abridged).
RAYLET_DEATH = {"lines": ["Raylet is terminated. Termination is unexpected.",
                          "    [state-dump] NodeManager: 1"], "pid": "raylet", "is_err": False}


def test_the_private_hooks_it_replaces_still_exist():
    # If a Ray release renames them the search still runs but Ray prints to the terminal again: fail here.
    from ray._private import worker
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    assert callable(worker.print_to_stdstream)
    assert all(hasattr(dispatcher, name) for name in ("handlers", "add_handler", "remove_handler"))


def test_rays_reports_and_logger_go_to_the_file_and_come_back_after(tmp_path, capsys):
    from ray._private import worker

    original = worker.print_to_stdstream
    handlers = list(logging.getLogger("ray").handlers)
    path = tmp_path / "run" / "ray.log"
    with ray_output(path) as named:
        assert named == path
        worker.print_to_stdstream(RAYLET_DEATH, ignore_prefix=False)
        worker.print_to_stdstream({"lines": ["a worker's line"], "pid": 123, "ip": "10.0.0.2",
                                   "actor_name": "EvaluationWorker", "is_err": True}, ignore_prefix=False)
        logging.getLogger("ray.worker").warning("a node was marked dead")
    out = capsys.readouterr()
    assert "Raylet" not in out.out + out.err and "marked dead" not in out.out + out.err
    text = path.read_text()
    assert "(raylet, stdout) Raylet is terminated. Termination is unexpected." in text
    assert "(raylet, stdout)     [state-dump] NodeManager: 1" in text
    assert "(EvaluationWorker pid=123 ip=10.0.0.2, stderr) a worker's line" in text
    assert "WARNING ray.worker: a node was marked dead" in text
    assert worker.print_to_stdstream is original and logging.getLogger("ray").handlers == handlers
    with ray_output(path):  # a resumed run appends
        worker.print_to_stdstream(RAYLET_DEATH, ignore_prefix=False)
    assert path.read_text().count("Raylet is terminated") == 2


@pytest.mark.parametrize("path, show", [(None, False), ("ray.log", True)])
def test_shown_or_without_a_file_nothing_is_replaced(tmp_path, path, show):
    from ray._private import worker

    original = worker.print_to_stdstream
    with ray_output(tmp_path / path if path else None, show=show) as named:
        assert named is None and worker.print_to_stdstream is original
    assert not (tmp_path / "ray.log").exists()


def test_a_workers_output_reaches_the_file(ray_session, tmp_path, capsys):
    import ray

    @ray.remote(num_cpus=0)
    def speak() -> int:
        import sys

        print("out-line-from-a-worker")
        print("err-line-from-a-worker", file=sys.stderr)
        return 1

    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    def handlers() -> list:
        return [(name, getattr(h, "func", h), getattr(h, "keywords", None))
                for name, h in dispatcher.handlers]

    before = handlers()
    with ray_output(tmp_path / "before.log"):  # one redirection after another, as searches in a session
        assert handlers() != before
    assert handlers() == before, "the worker-log handlers are put back as they were"
    path = tmp_path / "ray.log"
    with ray_output(path):
        assert ray.get(speak.remote()) == 1
        deadline = time.monotonic() + 20  # Ray's log monitor forwards worker files about once a second
        while time.monotonic() < deadline and "err-line-from-a-worker" not in path.read_text():
            time.sleep(0.2)
    text = path.read_text()
    assert "out-line-from-a-worker" in text and "err-line-from-a-worker" in text
    out = capsys.readouterr()
    assert "line-from-a-worker" not in out.out + out.err
