"""Config handling shared by every package: reading YAML, describing errors, dotted keys and overrides.

One place for what each config (task, controller, run config, rule record) needs, so that every config
is read with the same bounds and reports a mistake in the same words:

- `load_yaml` / `parse_yaml` (configuration.loading): YAML files and override values, refused in one line
  naming the file and the position when too big (256 KiB), not UTF-8 text, nested deeper than 32 levels,
  or using anchors and aliases (checked before anything is expanded);
- `ConfigError`, `validation_error`, `did_you_mean`, `quoted` (configuration.errors): one exception family
  and one wording for pydantic's errors (unknown keys with close matches, missing keys, wrong types), values
  quoted in at most 80 characters;
- `Strict`, `whole`, `Seed`, `Budget`, ... (configuration.models): the one base of every config section
  (unknown keys refused, immutable, finite floats only), the bounded whole numbers (strict: no float is
  rounded, no bool is a number; one definition of each bound, `MAX_BUDGET` ...) and `check_name`, the
  length bound of a value that names a file;
- `parse_overrides`, `apply_overrides`, `set_dotted`, `flatten`, `differences` (configuration.keys): the
  one override syntax, ``--set KEY=VALUE`` with dotted keys and YAML values, and dotted-key helpers.

This package imports nothing else of the project, so that every package may import it: it sits at the
bottom beside `dsl`, and not inside it, because the rule language is usable without YAML or pydantic.
"""

from configuration.errors import (CUTOFF, ConfigError, describe, did_you_mean, expect_mapping, key_path,
                                  quoted, suggestion, validation_error)
from configuration.keys import (ABSENT, apply_overrides, copy, describe_differences, differences, flatten,
                                parse_overrides, set_dotted)
from configuration.loading import MAX_BYTES, MAX_DEPTH, load_yaml, parse_yaml
from configuration.models import (MAX_BATCH, MAX_BUDGET, MAX_DATA, MAX_EPOCHS, MAX_LAYERS, MAX_PATH_CHARS,
                                  MAX_SEEDS, MAX_WIDTH, MAX_WORKERS, SEED_LIMIT, BatchSize, Budget, DataSize,
                                  Epochs, Layers, Seed, Seeds, Strict, Width, Workers, check_name, whole)

__all__ = [
    "ABSENT", "CUTOFF", "MAX_BATCH", "MAX_BUDGET", "MAX_BYTES", "MAX_DATA", "MAX_DEPTH", "MAX_EPOCHS",
    "MAX_LAYERS", "MAX_PATH_CHARS", "MAX_SEEDS", "MAX_WIDTH", "MAX_WORKERS", "SEED_LIMIT", "BatchSize",
    "Budget", "ConfigError", "DataSize", "Epochs", "Layers", "Seed", "Seeds", "Strict", "Width", "Workers",
    "apply_overrides", "check_name", "copy", "describe", "describe_differences", "did_you_mean",
    "differences",
    "expect_mapping", "flatten", "key_path", "load_yaml", "parse_overrides", "parse_yaml", "quoted",
    "set_dotted", "suggestion", "validation_error", "whole",
]
