"""The one base of every config model, and the bounded value types several configs share.

Every section of every config (task, controller, run config, rule record) derives from `Strict`:

- ``extra="forbid"``: an unknown key is an error (with a close match, `configuration.errors`), since a
  misspelt setting silently left at its default would change an experiment without anyone noticing;
- ``frozen=True``: a config is a value; changes go through overrides, which validate again;
- ``allow_inf_nan=False``: no float setting is infinite or NaN. YAML spells them ``.inf`` and ``.nan``,
  and a reward, lr or time limit of that kind passes every ``ge``/``gt`` check (NaN compares false, and
  pydantic skips the check) and breaks the run later, after Ray has started.

Every whole number a config takes is a `whole` number: strict (a float, a bool or a numeric string is
refused, never rounded: ``budget: 1.0e30`` or ``budget: true`` is a mistake, not a budget) and bounded on
both sides, so that a value that validates cannot make a run endless or its memory unbounded later, inside
Ray or torch. The upper bounds are far above any real use; each is defined once here and named in the
error (``search.budget: expected less than or equal to 10000000, got ...``):

    MAX_BUDGET   10**7   trainings of a search        MAX_EPOCHS  10**4   epochs, PPO passes
    MAX_BATCH    10**5   batch sizes, samples/update  MAX_WIDTH   16384   layer widths, hidden sizes
    MAX_WORKERS  4096    evaluation workers           MAX_LAYERS  256     layers of a network
    MAX_DATA     10**7   examples of a data set       MAX_SEEDS   64      seeds averaged in one evaluation

`Seed` bounds a seed to what every generator takes (numpy's take 32 bits; torch's 64, and an evaluation
seed is multiplied by at most 64 seeds per evaluation, `child_tasks.reward`). A value that names a file
(a task config's name or path) is at most `MAX_PATH_CHARS` characters (`check_name`), and an error quotes
only its first characters.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

SEED_LIMIT = 2**32
MAX_BUDGET = 10**7
MAX_BATCH = 10**5
MAX_WORKERS = 4096
MAX_DATA = 10**7
MAX_EPOCHS = 10**4
MAX_WIDTH = 16384
MAX_LAYERS = 256
MAX_SEEDS = 64
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux: a longer name cannot be a file
_QUOTED = 60  # characters of an over-long name quoted in its error


class Strict(BaseModel):
    """A config section: unknown keys refused, immutable, finite floats only (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def whole(most: int, least: int = 1) -> Any:
    """The type of a whole number in [least, most]: strict (floats, bools and strings refused, never
    rounded) and bounded both ways (module docstring)."""
    return Annotated[int, Field(strict=True, ge=least, le=most)]


Seed = Annotated[int, Field(strict=True, ge=0, lt=SEED_LIMIT,
                            description=f"a whole number in [0, {SEED_LIMIT})")]
Budget = whole(MAX_BUDGET)
BatchSize = whole(MAX_BATCH)
Workers = whole(MAX_WORKERS)
DataSize = whole(MAX_DATA)
Epochs = whole(MAX_EPOCHS)
Width = whole(MAX_WIDTH)
Layers = whole(MAX_LAYERS)
Seeds = whole(MAX_SEEDS)


def check_name(value: str, what: str) -> str:
    """``value`` if it can name a file (at most `MAX_PATH_CHARS` characters), else ValueError quoting
    only its start: a 100 KB "name" must not come back whole in the error, nor reach the file system."""
    if len(value) > MAX_PATH_CHARS:
        raise ValueError(f"a {what} is at most {MAX_PATH_CHARS} characters, got {len(value)} "
                         f"({value[:_QUOTED]!r}...)")
    return value
