"""Controller checkpoints: plain tensors and numbers on disk, read back without unpickling objects.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts (the policy's and Adam's state
dicts, the baseline, the sampling generator's state as a uint8 tensor, counters, and the config as plain
data). It is written with `torch.save` and read with ``torch.load(weights_only=True)``, which refuses
anything else, so loading a checkpoint never runs code from the file.

The config travels with the state: a checkpoint loads only into a controller built from the same config
(the seed aside, since the generator state replaces it), because a resumed search that silently changed
its space or its learning rate would not continue the run it claims to.

`Checkpointed` gives every searcher (PPO, evolution, random search) the same ``save`` and ``load`` and
the same checks of the fields they share (kind, config, generator, update count). A damaged or tampered
file (a missing key, a tensor of the wrong shape, a negative count) is a ValueError naming the file and
what is wrong, and leaves the searcher as it was: it is restored into a fresh copy first.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

import torch

from configuration import describe_differences, differences
from controller.config import ControllerConfig

FORMAT = "nos-controller/1"
MAX_CHECKPOINT_BYTES = 256 * 2**20  # a PPO policy of 150 units is about 1 MiB with its optimizer state


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` atomically: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`, tensors and plain data only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no controller checkpoint at {path}")
    try:
        if path.stat().st_size > MAX_CHECKPOINT_BYTES:  # read whole by torch.load: refuse a huge one first
            raise ValueError(f"larger than {MAX_CHECKPOINT_BYTES // 2**20} MiB, the size limit of a "
                             "controller checkpoint")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or EOFError by the damage done
        raise ValueError(f"{path}: not a readable controller checkpoint ({type(err).__name__}: "
                         f"{_one_line(err)})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: not a controller checkpoint of format {FORMAT!r} (found {found!r})")
    return state


def check_kind(state: dict[str, Any], kind: str, name: str) -> None:
    """Raise ValueError, naming the key, when ``state`` was saved by a controller of another kind."""
    if state.get("kind") != kind:
        raise ValueError(f"a {state.get('kind')!r} checkpoint cannot be loaded into {name}: the checkpoint's "
                         f"controller.kind is {state.get('kind')!r}, this controller's {kind!r}")


def check_same_config(saved: dict[str, Any], current: dict[str, Any], kind: str,
                      defaults: dict[str, Any] | None = None) -> None:
    """Raise ValueError naming every setting (dotted key) where ``saved`` and ``current`` differ. A section
    missing from ``saved`` counts as its value in ``defaults``: a checkpoint written before a config
    section existed (e.g. ``evolution``) still resumes when that section is left at its defaults."""
    added = {k: v for k, v in (defaults or {}).items() if k not in saved}
    # A key one side lacks reads as None, as checkpoints always have (a None-default field added later
    # still resumes).
    differ = differences({**added, **saved}, current, ignore=("seed",), missing=None)
    if differ:
        details = "; ".join(describe_differences(differ, "saved", "here", limit=8))
        raise ValueError(f"this {kind} checkpoint was made with another config ({details}); build the "
                         "controller from the saved config (state['config']) to resume it")


def generator_state(generator: torch.Generator) -> torch.Tensor:
    """The generator's state as a tensor (a uint8 copy)."""
    return generator.get_state().clone()


def set_generator_state(generator: torch.Generator, state: torch.Tensor) -> None:
    if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8:
        raise ValueError("the checkpoint's generator state must be a uint8 tensor")
    generator.set_state(state.clone())


def count(state: dict[str, Any], key: str) -> int:
    """A non-negative integer of the checkpoint (an update or draw count), or ValueError naming it."""
    value = state[key]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key!r} must be a whole number >= 0, found {value!r}")
    return value


class Checkpointed:
    """``save``/``load`` and the shared part of ``load_state_dict`` for a searcher whose ``state_dict``
    holds ``kind``, ``config``, ``generator`` and ``updates`` (module docstring)."""

    KIND: ClassVar[str]  # controller.kind
    NAME: ClassVar[str]  # in messages: "a PPO controller"

    def restore_common(self, state: dict[str, Any]) -> None:
        """Check kind and config, then set the generator and the update count (the subclass does the
        rest)."""
        check_kind(state, self.KIND, self.NAME)
        check_same_config(state["config"], self.config.to_mapping(), self.NAME,
                          ControllerConfig().to_mapping())
        set_generator_state(self.generator, state["generator"])
        self.updates = count(state, "updates")

    def save(self, path: str | Path) -> None:
        save_checkpoint(self.state_dict(), path)

    def load(self, path: str | Path) -> None:
        """Load the checkpoint at ``path``; ValueError naming the file if it is not one of ours, was made
        with another config, or is damaged (the searcher is then unchanged)."""
        state = load_checkpoint(path)
        trial = copy.deepcopy(self)
        try:
            trial.load_state_dict(state)
        except ValueError as err:
            raise ValueError(f"{path}: {_one_line(err)}") from None
        except (KeyError, IndexError, TypeError, RuntimeError, AttributeError, OverflowError) as err:
            what = (f"missing key {err}" if isinstance(err, KeyError)
                    else f"{type(err).__name__}: {_one_line(err)}")
            raise ValueError(f"{path}: a damaged controller checkpoint ({what})") from None
        self.__dict__.update(trial.__dict__)


def _one_line(err: Exception, limit: int = 300) -> str:
    """An error's text on one line, cut at ``limit`` (torch lists state-dict problems line by line, and a
    damaged value may print as a whole tensor)."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + " ..."
