"""Tiny search configs and process helpers for the search tests: real Ray, real training, seconds each."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
from pathlib import Path
from typing import Any

# The digits task cut down to ~0.1 s per evaluation: width 4, 2 epochs of 8 steps, two lrs.
TINY_TASK = {"model.width": 4, "epochs": 2, "batch_size": 128, "short_run_epochs": 1, "lr_grid": [0.01, 0.1]}
# About two thirds of its rules pass the static checks, with many distinct keys.
SMALL_VOCABULARY = {"operands": ["g", "mhat", "sign(m)", "adam", "rmsprop"],
                    "unary": ["identity", "sign", "drop_0.1"], "binary": ["add", "mul", "keep_left"],
                    "groups": 1}
# Every rule valid, only 14 distinct keys among them: a batch of 16 must hold duplicates.
DUPLICATE_VOCABULARY = {"operands": ["g", "mhat"], "unary": ["identity", "sign"],
                        "binary": ["add", "keep_left"], "groups": 1}


def tiny_config(budget: int = 12, batch_size: int = 6, kind: str = "ppo",
                vocabulary: dict[str, Any] | None = None, task: dict[str, Any] | None = None,
                **search: Any) -> dict[str, Any]:
    """A run config mapping: the tiny digits task, a small space, 2 workers."""
    return {"task": "digits", "task_overrides": TINY_TASK if task is None else task,
            "controller": {"kind": kind, "seed": 0, "batch_size": batch_size,
                           "vocabulary": vocabulary or SMALL_VOCABULARY, "policy": {"hidden_size": 16}},
            "search": {"budget": budget, "workers": 2, **search}}


def nos_command() -> list[str]:
    """The installed `nos` script of this interpreter's environment."""
    script = Path(sys.executable).parent / "nos"
    return [str(script)] if script.exists() else [shutil.which("nos") or "nos"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_session(session_id: int) -> None:
    """SIGKILL every process left in the session ``session_id`` (a subprocess this test started with
    start_new_session=True, so the session id is its pid): Ray's helpers that outlive a killed driver."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session_id and int(entry.name) != os.getpid():
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass
