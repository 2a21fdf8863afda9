"""Transfer: a rule against the baselines on another child task, on Ray, saved with the rule.

    result = transfer("nos_3f9a1c_1", "convnet", baselines=("adam", "sgd"), seeds=3)
    result.table.print()            # child_tasks.ComparisonTable: mean ± std per optimizer over the seeds
    result.saved_to                 # [the record (its ``transfer`` field: task -> rows)] or [a JSON file]

Tasks: ``convnet`` (configs/cifar10_convnet.yaml), ``wrn`` (configs/wrn_cifar10.yaml), ``nmt``
(configs/nmt_synthetic.yaml), or any task config name or path, changed with ``--set KEY=VALUE`` overrides
(YAML values, dotted keys: ``epochs=2``, ``model.width=8``; `configuration.parse_overrides`). The CIFAR-10
tasks read local data; a missing data set is reported before Ray starts, naming the variable to set. The
comparison is `search.results.comparison.compare_on_ray`: one Ray call per optimizer and seed, seeds 0..N-1
(the task's seeds when N is not given). A discovered rule trains with its record's hyper-constants (its lr too
is chosen from the task's grid) and its rows are stored in its record under the task's name (with the
overrides, if any, in brackets), replacing an earlier transfer to the same task. A reference rule has no
record: its rows go to ``transfer_<rule>_<task>.json`` in the current directory, or to ``out`` (which, given
for a record, gets the same JSON file as well). Neither has rule text (``text=``, under a name the caller
chooses, as `nos transfer` does for text: ``rule_<first 8 digits of its canonical key>``): its rows go to
the JSON file, whose ``text`` holds the rule.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

import discovered_rules
from child_tasks.compare import ComparisonTable
from child_tasks.config import TaskConfig, load_task_config, override
from configuration import parse_overrides
from configuration.files import json_safe, write_atomic
from discovered_rules import RuleRecord
from discovered_rules.records import write_record
from dsl import KNOWN_RULE_TEXT
from search.config import DEFAULT_BASELINES
from search.results.comparison import Contender, compare_on_ray, contenders

TASK_ALIASES = {"convnet": "cifar10_convnet", "wrn": "wrn_cifar10", "nmt": "nmt_synthetic"}


@dataclass(frozen=True)
class TransferResult:
    rule: str
    task_key: str  # the key of the rows in the record's transfer field
    task: TaskConfig
    table: ComparisonTable
    saved_to: list[Path]  # the record, and the JSON file (a reference rule's, or out)


def resolve_task(task: str, overrides: Sequence[str] = ()) -> tuple[TaskConfig, str]:
    """The task config of an alias, config name or path with ``KEY=VALUE`` overrides, and its key:
    the config's name, with the overrides in brackets when there are any."""
    config = load_task_config(TASK_ALIASES.get(task, task))
    changes = parse_overrides(overrides, config.name or task)
    if changes:
        config = override(config, changes)
    name = config.name or config.task
    key = f"{name} [{', '.join(f'{k}={v}' for k, v in changes.items())}]" if changes else name
    return config, key


def transfer(name: str, task: str, *, baselines: Sequence[str] = DEFAULT_BASELINES, seeds: int | None = None,
             overrides: Sequence[str] = (), directory: str | Path | None = None,
             out: str | Path | None = None,
             address: str | None = None, workers: int | None = None, progress: bool = True,
             console: Console | None = None, text: str | None = None) -> TransferResult:
    """Compare rule ``name`` (a reference rule or a record in ``directory``; with ``text``, that rule text
    labelled ``name``) with ``baselines`` on ``task`` and save the rows (module docstring). Raises
    UnknownRule (close matches listed), FileNotFoundError or ValueError for a bad task, override or missing
    data, ComparisonError when a training fails."""
    folder = discovered_rules.folder(directory)
    rec = None if name in KNOWN_RULE_TEXT or text is not None else discovered_rules.record(name, folder)
    config, key = resolve_task(task, overrides)
    seed_list = list(range(seeds)) if seeds is not None else list(config.seeds)
    rule = text if text is not None else KNOWN_RULE_TEXT[name] if rec is None else rec.rule
    rows = contenders({name: rule}, list(baselines))
    if rec is not None:  # its hyper-constants; its lr is chosen from the task's grid like the others'
        hyper = {k: v for k, v in rec.hyper.items() if k != "lr"}
        rows[0] = Contender(rows[0].label, rows[0].optimizer, hyper)
    table = compare_on_ray(rows, config, seed_list, address=address, workers=workers, progress=progress,
                           description=f"transfer {name} to {key}", console=console)
    table_rows = json_safe(table.to_rows())  # rows as plain JSON: NaN and inf as None
    saved = []
    if rec is not None:
        updated = RuleRecord.model_validate({**rec.model_dump(), "transfer": {**(rec.transfer or {}),
                                                                              key: table_rows}})
        saved.append(write_record(updated, folder / f"{name}.json"))
    if rec is None or out is not None:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_")
        path = Path(out) if out is not None else Path.cwd() / f"transfer_{name}_{slug}.json"
        document = {"rule": name, "text": rows[0].optimizer, "task": key, "seeds": seed_list,
                    "date": datetime.date.today().isoformat(), "task_config": config.model_dump(mode="json"),
                    "rows": table_rows}
        write_atomic(json.dumps(document, indent=2) + "\n", path)
        saved.append(path)
    return TransferResult(name, key, config, table, saved)
