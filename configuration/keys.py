"""Dotted keys: the one override syntax, and the one way to flatten, set and compare nested configs.

Every command that changes a config takes ``--set KEY=VALUE`` (repeatable): KEY is dotted into the
config's sections, VALUE is YAML (``--set search.budget=200``, ``--set model.width=8``,
``--set "task=[digits, mnist1d_cnn]"``). Overrides are applied to the raw mapping before validation,
so a misspelt override key is reported like a misspelt key in the file.

    changes = parse_overrides(["search.budget=200"])        # {"search.budget": 200}
    values = apply_overrides(raw, changes, "run.yaml")       # a copy, sections created as needed
    flatten({"ppo": {"lr": 1}})                              # {"ppo.lr": 1}
    differences(saved, given)                                # [("ppo.lr", 0.005, 0.1)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from configuration.errors import ConfigError
from configuration.loading import MAX_DEPTH, parse_yaml

ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "absent"})()  # a key one side does not have


def parse_overrides(items: Sequence[str], source: str | None = None) -> dict[str, Any]:
    """``["search.budget=200", ...]`` as ``{"search.budget": 200}``; values are read as YAML, bounded
    like a config file (no aliases, at most `MAX_DEPTH` levels). ``source`` names the config they change."""
    out: dict[str, Any] = {}
    where = f"{source}: --set" if source else "--set"
    for item in items:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or any(not part for part in parts):
            raise ConfigError(f"{where} {item!r}: not KEY=VALUE with a dotted KEY (e.g. search.budget=200)")
        if len(parts) > MAX_DEPTH:
            raise ConfigError(f"{where} {key[:40]}...: more than {MAX_DEPTH} dotted parts")
        out[key] = parse_yaml(text, f"{where} {key}")
    return out


def apply_overrides(values: Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any],
                    source: str = "config", hints: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A copy of ``values`` (mappings as dicts, lists copied) with ``overrides`` (``KEY=VALUE`` strings or
    a mapping of dotted keys) set. ``hints`` adds a hint, formatted with ``rest`` (the key below the
    parent), when a dotted key runs into a value that is not a mapping at that parent."""
    changes = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides, source)
    out = copy(values)
    for dotted, value in changes.items():
        set_dotted(out, dotted, value, source, hints)
    return out


def set_dotted(values: dict[str, Any], dotted: str, value: Any, source: str = "config",
               hints: Mapping[str, str] | None = None) -> None:
    """Set ``values[a][b][c] = value`` for ``dotted`` "a.b.c", creating sections as needed; a part that
    holds something other than a mapping is a ConfigError naming it."""
    *parents, key = str(dotted).split(".")
    node = values
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parents[:depth + 1])
            hint = (hints or {}).get(where, "")
            hint = f" ({hint.format(rest='.'.join([*parents[depth + 1:], key]))})" if hint else ""
            raise ConfigError(f"{source}: cannot set {dotted}: {where} is {type(child).__name__} "
                              f"{child!r:.60}, not a mapping{hint}")
        node = child
    node[key] = value


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys: ``{"model": {"width": 8}} -> {"model.width": 8}``. An
    empty mapping stays a value (``{"a": {}} -> {"a": {}}``), so that nothing is lost."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(a: Mapping[str, Any], b: Mapping[str, Any], ignore: Sequence[str] = (),
                missing: Any = ABSENT) -> list[tuple[str, Any, Any]]:
    """``(dotted key, a's value, b's value)`` for every key where the two configs differ, sorted by key;
    a key one side lacks has the value ``missing`` there (`ABSENT` unless given)."""
    fa, fb = flatten(a), flatten(b)
    keys = sorted((fa.keys() | fb.keys()) - set(ignore))
    pairs = [(k, fa.get(k, missing), fb.get(k, missing)) for k in keys]
    return [(k, x, y) for k, x, y in pairs if x != y]


def describe_differences(found: Sequence[tuple[str, Any, Any]], first: str, second: str,
                         limit: int | None = None) -> list[str]:
    """``["ppo.lr: saved 0.005, here 0.1", ...]`` for `differences`' output (at most ``limit`` of them)."""
    return [f"{k}: {first} {a!r}, {second} {b!r}" for k, a, b in list(found)[:limit]]


def copy(value: Any) -> Any:
    """A deep copy of plain data: mappings as dicts with str keys, lists and tuples as lists."""
    if isinstance(value, Mapping):
        return {str(k): copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [copy(v) for v in value]
    return value
