"""Reading YAML for configs, bounded: every file and override value goes through `parse_yaml`.

A config is small, plain data. So a file over `MAX_BYTES`, one that is not UTF-8 text, one nested deeper
than `MAX_DEPTH`, or one that uses anchors or aliases is refused with one line that names the file and
the position (line, column and key path). Aliases are refused, not expanded with a cap, because the
expansion is the attack: a 0.3 KB "billion laughs" file of nested aliases stands for 10^9 strings. The
check reads the event stream (libyaml's C parser where installed) before any node is built, so such a
file is refused after reading a few dozen events, in milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from configuration.errors import ConfigError
from configuration.models import check_name

# 256 KiB: a shipped config is a few KB, a run's stored config (16 tasks inline at most) tens of KB; a
# valid file at the limit takes about 1 s to read here (PyYAML builds the values in Python).
MAX_BYTES = 256 << 10
MAX_DEPTH = 32  # nested mappings and lists; a config has about 4 levels
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser when PyYAML was built with it


def load_yaml(path: str | Path, what: str = "config") -> Any:
    """The YAML document in ``path`` as plain data (None for an empty file). Raises FileNotFoundError,
    or ConfigError (one line naming the file) for a file too big, not text, not valid YAML, too deep,
    or using anchors or aliases (or a path longer than any file's, quoted only in part)."""
    try:
        path = Path(check_name(str(path), f"{what}'s path"))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)  # not stat(): a pipe or /dev/zero has no size
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the {what}: {err.strerror or err}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{path}: the {what} is larger than {_size(MAX_BYTES)}, the size limit of a config")
    return parse_yaml(_text(data, str(path)), str(path))


def parse_yaml(text: str, source: str) -> Any:
    """``text`` (a document or an override's value) as plain data; ``source`` names it in errors."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{source}: longer than {_size(MAX_BYTES)}, the limit for a config")
    if "\x00" in text:
        raise ConfigError(f"{source}: not a text file (it holds NUL bytes)")
    try:
        _check_events(text, source)
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader, and the events are checked
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML{_where(err)}: {_problem(err)}") from None
    except RecursionError:  # cannot happen after the depth check; never a traceback if it does
        raise ConfigError(f"{source}: nested too deeply (at most {MAX_DEPTH} levels)") from None


def _text(data: bytes, source: str) -> str:
    if b"\x00" in data:
        raise ConfigError(f"{source}: not a text file (it holds NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{source}: not UTF-8 text (byte {err.start} is 0x{data[err.start]:02x}); "
                          "a config is a YAML text file") from None


def _check_events(text: str, source: str) -> None:
    """Refuse anchors, aliases and deep nesting while streaming the parser's events, before anything
    is built. ``path`` follows the keys, so the error names where in the document it is."""
    path: list[list[Any]] = []  # per open collection: [is_mapping, next scalar is a key, key or index]
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionEndEvent):
            path.pop()
            continue
        if not isinstance(event, yaml.NodeEvent):
            continue
        is_key = bool(path) and path[-1][0] and path[-1][1]
        if is_key:  # a mapping's key; the next node is its value
            path[-1][1:] = [False, event.value if isinstance(event, yaml.ScalarEvent) else "?"]
        elif path:  # a value: a mapping's next node is a key again, a list counts its items
            path[-1][1] = path[-1][0]
            path[-1][2] = path[-1][2] if path[-1][0] else path[-1][2] + 1
        if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
            raise ConfigError(f"{source}: {_at(event, path)}anchors and aliases (&name, *name) are not "
                              "accepted in a config; write the values out")
        if is_key and not isinstance(event, yaml.ScalarEvent):
            raise ConfigError(f"{source}: {_at(event, path)}a key must be a plain value, not a mapping "
                              "or a list")
        if isinstance(event, yaml.CollectionStartEvent):
            if len(path) >= MAX_DEPTH:
                raise ConfigError(f"{source}: {_at(event, path)}nested deeper than {MAX_DEPTH} levels, the "
                                  "limit for a config")
            is_mapping = isinstance(event, yaml.MappingStartEvent)
            path.append([is_mapping, True, None if is_mapping else -1])


def _at(event: yaml.Event, path: list[list[Any]]) -> str:
    keys = ""
    for is_mapping, _, key in path:
        if is_mapping and key is not None:
            keys += f".{key}" if keys else str(key)
        elif not is_mapping and key >= 0:
            keys += f"[{key}]"
    mark = event.start_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{where}{f' (at {keys})' if keys else ''}: " if where or keys else ""


def _where(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _problem(err: yaml.YAMLError) -> str:
    parts = [getattr(err, "context", None), getattr(err, "problem", None)]
    text = ", ".join(p for p in parts if p) or str(err)
    return " ".join(text.split())  # one line


def _size(n: int) -> str:
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"
