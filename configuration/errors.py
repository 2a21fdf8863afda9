"""Config errors and their wording: one exception family and one way to describe a pydantic error.

Every config of the project (task, controller, run config, rule record) reports a problem the same way:
``SOURCE: N problem(s) in the task config`` and then one line per problem, ``key.path: what is wrong``.
The cases a person meets most:

    model.widht: unknown key; did you mean width? (known keys here: name, width)
    epochs: required key is missing
    epochs: expected a valid integer, unable to parse string as an integer, got 'five'
    kind: expected 'ppo', 'evolution' or 'random', got 'ppx'; did you mean 'ppo'?
    model.name: expected one of convnet, wrn, ..., got 'convnett'; did you mean 'convnet'?

Key paths are what a person wrote: pydantic's union tags are left out and list items read ``lr_grid[1]``.
Names (keys) are suggested bare, values quoted, always with the same closeness cutoff.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

CUTOFF = 0.6  # difflib's default: 'lrr' finds 'lr', 'ppx' finds 'ppo', 'adm' finds 'adam'
_INPUT_CHARS = 80  # a value quoted in a message is cut to this many characters


class ConfigError(ValueError):
    """A config (a file, a mapping or an override) that cannot be read or does not validate. The message
    names the source and every problem with its key path; subclasses only say what kind of config."""


def did_you_mean(word: object, choices: Iterable[str], n: int = 3) -> list[str]:
    """The choices close to ``word``, closest first (the one cutoff every config message uses)."""
    return difflib.get_close_matches(str(word), list(choices), n=n, cutoff=CUTOFF)


def suggestion(word: object, choices: Iterable[str], quote: bool = False) -> str:
    """``"; did you mean a or b?"`` (names quoted when ``quote``), or "" when nothing is close."""
    close = did_you_mean(word, choices)
    return f"; did you mean {' or '.join(repr(c) if quote else c for c in close)}?" if close else ""


def expect_mapping(values: Any, source: str, example: str) -> Mapping[str, Any]:
    """``values`` (None: empty) if it is a mapping, else a ConfigError naming what was found."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: expected a mapping of keys ({example}), got {type(values).__name__}")
    return values


def validation_error(source: str, what: str, err: ValidationError, model: type[BaseModel],
                     cls: type[ConfigError] = ConfigError,
                     errors: Sequence[Mapping[str, Any]] | None = None) -> ConfigError:
    """One error listing every problem of ``err`` (or of ``errors``, a filtered list of its errors); JSON
    that does not parse is one line."""
    errors = err.errors() if errors is None else errors
    if len(errors) == 1 and errors[0]["type"] == "json_invalid":
        return cls(f"{source}: not valid JSON: {(errors[0].get('ctx') or {}).get('error', errors[0]['msg'])}")
    problems = [describe(e, model) for e in errors]
    return cls(f"{source}: {len(problems)} problem(s) in the {what}\n  " + "\n  ".join(problems))


def describe(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    """One pydantic error of validating ``model`` as ``key.path: what is wrong``."""
    kind, loc = error["type"], tuple(error["loc"])
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        where, parent = key_path(model, loc[:-1])
        is_model = isinstance(parent, type) and issubclass(parent, BaseModel)
        known = list(parent.model_fields) if is_model else []
        key = f"{where}.{loc[-1]}" if where else str(loc[-1])
        listed = f" (known keys here: {', '.join(known)})" if known else ""
        return f"{key}: unknown key{suggestion(loc[-1], known)}{listed}"
    where, node = key_path(model, loc)
    if kind == "missing":
        return f"{where or '(top level)'}: required key is missing"
    message = re.sub(r"^(Value error|Assertion failed), ", "", str(error["msg"]))
    if kind in ("value_error", "assertion_error"):
        # A model-level check names its keys itself (e.g. "short_run_epochs (3.0) is longer than ...").
        return f"{where}: {message}" if where else message
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        field = str(ctx.get("discriminator", "")).strip("'")
        tags = _tags(node, field)
        if kind == "union_tag_not_found":
            return f"{where}: needs a {field!r} key, one of {', '.join(tags)}"
        tag = ctx.get("tag")
        return f"{where}.{field}: expected one of {', '.join(tags)}, got {tag!r}{suggestion(tag, tags, True)}"
    message = message.replace("Input should be", "expected")
    hint = ""
    if kind == "literal_error" and isinstance(error.get("input"), str):
        hint = suggestion(error["input"], re.findall(r"'([^']*)'", str(ctx.get("expected", ""))), True)
    got = f", got {quoted(error['input'])}" if "input" in error else ""
    return f"{where or '(top level)'}: {message}{got}{hint}"


def key_path(model: type[BaseModel], loc: Sequence[Any]) -> tuple[str, Any]:
    """The key path a person wrote for pydantic's ``loc`` (``model.width``, ``lr_grid[1]``, ``rewards.1``,
    ``rewards.x (the key)``), and the type found there (a model class, or None when unknown)."""
    text, node = "", model
    for part in loc:
        node = _optional(node)
        if _is_union(node):  # pydantic names the union's branch (a tag or a type); a person did not write it
            node = _branch(node, part)
            continue
        if part == "[key]":
            text += " (the key)"
            continue
        origin = typing.get_origin(node)
        if isinstance(part, int) and origin in (list, tuple, set, frozenset):
            text += f"[{part}]"
            node = _item(node, part)
            continue
        text += f".{part}" if text else str(part)
        if isinstance(node, type) and issubclass(node, BaseModel) and str(part) in node.model_fields:
            node = _unwrap(node.model_fields[str(part)].annotation)
        elif origin in (dict, Mapping):
            args = typing.get_args(node)
            node = _unwrap(args[1]) if len(args) == 2 else None
        else:
            node = None
    return text, _optional(node)


def _item(sequence: Any, index: int) -> Any:
    """The type of item ``index`` of a list, set or tuple type (``tuple[int, str]``, ``tuple[str, ...]``)."""
    args = typing.get_args(sequence)
    if typing.get_origin(sequence) is tuple and args and args[-1] is not Ellipsis:
        return _unwrap(args[index]) if index < len(args) else None
    return _unwrap(args[0]) if args else None


def _unwrap(node: Any) -> Any:
    while typing.get_origin(node) is typing.Annotated:
        node = typing.get_args(node)[0]
    return node


def _optional(node: Any) -> Any:
    """``X | None`` is X: pydantic checks None first and names no branch for it."""
    if _is_union(node):
        args = [a for a in typing.get_args(node) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return node


def _is_union(node: Any) -> bool:
    return typing.get_origin(node) in (typing.Union, types.UnionType)


def _branch(union: Any, label: Any) -> Any:
    """The member of ``union`` that pydantic's ``label`` (a model's name or a discriminator tag) names."""
    for member in map(_unwrap, typing.get_args(union)):
        if isinstance(member, type) and issubclass(member, BaseModel):
            if label == member.__name__ or any(label in _literals(f.annotation) for f in
                                               member.model_fields.values()):
                return member
    return None


def _tags(union: Any, field: str) -> list[str]:
    """The discriminator values of a union of models, in order."""
    tags: list[str] = []
    for member in map(_unwrap, typing.get_args(union)):
        if isinstance(member, type) and issubclass(member, BaseModel) and field in member.model_fields:
            tags += [str(t) for t in _literals(member.model_fields[field].annotation)]
    return tags


def _literals(annotation: Any) -> tuple[Any, ...]:
    annotation = _unwrap(annotation)
    return typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else ()


def quoted(value: Any) -> str:
    """``repr(value)`` cut to 80 characters: what a message quotes of a value a person gave, however long."""
    text = repr(value)
    return text if len(text) <= _INPUT_CHARS else text[:_INPUT_CHARS - 3] + "..."
