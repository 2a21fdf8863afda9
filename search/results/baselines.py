"""The baselines of a run at its own budget: trained once on the run's task and eval seed, cached in the run.

A search reward is one training on the run's task with its ``eval_seed``; the gain a listing shows is that
reward minus the best baseline trained the same way (same task config, budget, seed and time limit), so
the two are measured alike. They are computed on Ray workers (`search.results.comparison`) the first
time they are needed and kept in ``<run_dir>/baselines.json``:

    {"run_id": ..., "task": {the task config}, "seed": 0, "date": "2025-01-01",
     "rewards": {"adam": 93.1, ...}, "curves": {"adam": [71.2, 88.0, ...], ...}}

The file is JSON validated with pydantic (errors name the file and key, worded as every config's); a cache
of another run, task or seed is stale and ignored; baselines missing from it are trained and added.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from rich.console import Console

from configuration import ConfigError, validation_error
from configuration.files import read_bounded, write_atomic
from search.config import SearchConfig
from search.results.comparison import compare_on_ray, contenders
from search.store import RunStore

FILENAME = "baselines.json"


class BaselineCache(BaseModel):
    """The cached baselines of one run (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    run_id: str
    task: dict[str, Any]
    seed: int
    date: str
    rewards: dict[str, float]
    curves: dict[str, list[float | None]]


def read_cache(run_dir: str | Path) -> BaselineCache | None:
    """The run's cache, or None when there is none; ConfigError naming the file for a malformed one."""
    path = Path(run_dir) / FILENAME
    if not path.is_file():
        return None
    what = "baselines cache (delete it to compute the baselines again)"
    try:
        return BaselineCache.model_validate_json(read_bounded(path, 16 * 2**20, "baselines cache").decode())
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text, not a {what}") from None
    except ValidationError as err:
        raise validation_error(str(path), what, err, BaselineCache) from None


def run_baselines(run_dir: str | Path, baselines: Sequence[str], *, compute: bool = True,
                  address: str | None = None, progress: bool = True,
                  console: Console | None = None) -> BaselineCache | None:
    """The run's baselines at its budget: from the cache, training (and caching) those missing when
    ``compute``; None when some are missing and ``compute`` is False."""
    with RunStore(run_dir, read_only=True) as store:
        run_id = store.run_id
        config = SearchConfig.from_mapping(store.config, source=f"{store.path} (the run's config)")
    task, seed = config.suite, config.search.eval_seed
    cache = read_cache(run_dir)
    if cache is not None and (cache.run_id, cache.task, cache.seed) != (run_id, task.to_mapping(), seed):
        cache = None  # another run's or task's: stale
    missing = [b for b in baselines if cache is None or b not in cache.rewards]
    if not missing:
        return cache
    if not compute:
        return None
    search = config.search
    table = compare_on_ray(contenders({}, missing), task, [seed], address=address, workers=search.workers,
                           cpus_per_worker=search.cpus_per_worker, gpu_fraction=search.gpu_fraction,
                           time_limit_s=search.time_limit_s, max_retries=search.max_retries,
                           progress=progress, description="baselines", console=console)
    rewards = {**(cache.rewards if cache else {}), **{r.name: r.rewards[0] for r in table.rows}}
    curves = {**(cache.curves if cache else {}), **{r.name: list(r.results[0].val_curve) for r in table.rows}}
    cache = BaselineCache(run_id=run_id, task=task.to_mapping(), seed=seed,
                          date=datetime.date.today().isoformat(), rewards=rewards,
                          curves={k: [v if v is not None and math.isfinite(v) else None for v in c]
                                  for k, c in curves.items()})
    write_atomic(json.dumps(cache.model_dump(), indent=2) + "\n", Path(run_dir) / FILENAME)
    return cache
