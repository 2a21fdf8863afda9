"""The one base of every config model, and the bounded value types several configs share.

Every section of every config (task, controller, run config, rule record) derives from `Strict`:

- ``extra="forbid"``: an unknown key is an error (with a close match, `configuration.errors`), since a
  misspelt setting silently left at its default would change an experiment without anyone noticing;
- ``frozen=True``: a config is a value; changes go through overrides, which validate again;
- ``allow_inf_nan=False``: no float setting is infinite or NaN. YAML spells them ``.inf`` and ``.nan``,
  and a reward, lr or time limit of that kind passes every ``ge``/``gt`` check (NaN compares false, and
  pydantic skips the check) and breaks the run later, after Ray has started.

`Seed` bounds a seed to what every generator takes (numpy's take 32 bits; torch's 64, and an evaluation
seed is multiplied by at most 64 seeds per evaluation, `child_tasks.reward`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

SEED_LIMIT = 2**32


class Strict(BaseModel):
    """A config section: unknown keys refused, immutable, finite floats only (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Seed = Annotated[int, Field(ge=0, lt=SEED_LIMIT, description=f"a whole number in [0, {SEED_LIMIT})")]
