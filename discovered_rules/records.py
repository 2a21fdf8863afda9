"""Records of rules: what was found (or what a reference rule is), where, and how well it did, as JSON.

A `RuleRecord` holds the rule's text (read only through `dsl.parse`), its formula, LaTeX and canonical
key, the hyper-constant defaults it is used with (lr among them), the task and the reward per seed, the
baselines' rewards on the same seeds, the verdict against the best of them (`discovered_rules.verdicts`;
a rule that lost is recorded as such), and optionally the run, its config, learning curves and transfer
results (filled in later).
Records are data: reading one parses JSON and validates it with pydantic in strict mode (a reward written
as "0.9" is an error, not a guess); nothing in a file is evaluated.

    rec = make_record("nos_1", "exp(sign(g) * sign(m)) * g", task="digits", rewards={0: 0.91, 1: 0.9},
                      baselines={"adam": [0.9, 0.89]}, hyper={"lr": 0.01})
    write_record(rec, "nos_1.json")
    rec = read_record("nos_1.json")

Every error names the file, each bad key (``rewards.1``) and what was wrong. On reading, the formula and the
canonical key must be what the rule gives (`rule_forms`); names that are Python keywords as a module or
a class (``none``) and control characters in text that goes into a generated .py are refused.
"""

from __future__ import annotations

import datetime
import keyword
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from configuration import ConfigError, did_you_mean, validation_error
from configuration.files import read_bounded, write_atomic
from discovered_rules.verdicts import (  # noqa: F401 (best_baseline re-exported)
    MIN_SEEDS, OldVerdict, Reward, Verdict, best_baseline, verdict)
import dsl
from dsl import Rule, RuleError, parse
from dsl.source import unprintable
from dsl.vocabulary import HYPERS, LEARNING_RATE

MAX_RECORD_BYTES = 4 * 2**20  # a record holds curves per seed and transfer tables: kilobytes, not megabytes
MAX_NAME_TEXT = 4096  # a task's name or path, a run id, a baseline's or a task's name in a table
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
HYPER_KEYS = ("lr", *HYPERS)
FILLED_FROM_RULE = ("formula", "latex", "canonical_key")


class RecordError(ConfigError):
    """A record that cannot be read or does not validate; the message names the file and every problem
    (worded as every config's: `configuration.errors`)."""


class RecordWarning(UserWarning):
    """A record in a folder was skipped (it does not read or validate); the message names the file."""


def class_name(name: str) -> str:
    """The optimizer class name of a record name: ``powersign_cd`` -> ``PowersignCd``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))



def rule_forms(rule: Rule) -> dict[str, str]:
    """What a record holds that follows from its rule: formula, LaTeX and canonical key."""
    # dsl's forms are read here, not imported with the module: the key needs torch and the formula sympy,
    # which listing a folder's names or showing a reference rule does not.
    return {"formula": str(dsl.to_sympy(rule, exact=False)), "latex": dsl.to_latex(rule),
            "canonical_key": dsl.canonical_key(rule)}


def _printable(text: str) -> str:
    # Bounded before it is looked at further, and quoted in part: a 4 MB name is refused in one line.
    if len(text) > MAX_NAME_TEXT:
        raise ValueError(f"is {len(text)} characters long, more than {MAX_NAME_TEXT}, got {text[:40]!r}...")
    if (problem := unprintable(text)) is not None:
        raise ValueError(f"holds {problem} (it would go into the generated .py), got {text[:60]!r}")
    return text


class RuleRecord(BaseModel):
    """A rule with its provenance and results; stored as ``<name>.json``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, ser_json_inf_nan="constants")

    name: str = Field(description="lower-case identifier: the file stem and, capitalised, the class name")
    rule: str = Field(description="the rule in the language's text, e.g. 'exp(sign(g) * sign(m)) * g'")
    formula: str = Field(description="str of the rule's sympy expression")
    latex: str
    canonical_key: str = Field(pattern=r"^[0-9a-f]{16}$", description="dsl.canonical_key of the rule")
    hyper: dict[str, float] = Field(description="defaults of lr and hyper-constants the rule is used with")
    task: str | None = Field(description="the task it was found (scored) on; None for a reference rule")
    rewards: dict[int, Reward] = Field(description="seed -> reward on the task")
    baselines: dict[str, list[Reward]] = Field(description="optimizer name -> rewards on the same seeds")
    run_id: str | None = None
    config: dict[str, Any] | None = Field(None, description="the run's config, as plain data")
    date: datetime.date
    source: Literal["search", "reference"]
    curves: dict[int, list[float]] | None = Field(None, description="seed -> learning curve")
    transfer: dict[str, list[dict[str, Any]]] | None = Field(
        None, description="task -> comparison table rows (child_tasks.compare's to_rows())")
    verdict: Verdict | OldVerdict | None = Field(
        None, description="a search's rule against the best baseline on the confirmation seeds; None for a "
        "reference rule or an older record (an OldVerdict is measured again on reading)")
    panel: dict[str, Any] | None = Field(
        None, description="the held-out transfer panel (search.results.panel's to_json()): per task the "
        "rule's and the baselines' validation metrics, gain, z and win/tie/loss, and the summary")

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not NAME_PATTERN.fullmatch(name):
            raise ValueError("must be 1-64 lower-case letters, digits and underscores starting with a letter "
                             f"(it names a file and a class), got {name!r}")
        if keyword.iskeyword(name) or keyword.iskeyword(class_name(name)):  # none -> class None
            raise ValueError(f"must not be a Python keyword as a module or, capitalised, as a class name, "
                             f"got {name!r}")
        return name

    @field_validator("run_id", "task")
    @classmethod
    def _printable_text(cls, text: str | None) -> str | None:
        return text if text is None else _printable(text)

    @field_validator("baselines", "transfer")
    @classmethod
    def _printable_keys(cls, table: dict[str, Any] | None) -> dict[str, Any] | None:
        for key in table or {}:
            _printable(key)
        return table

    @field_validator("rule")
    @classmethod
    def _parses(cls, text: str) -> str:
        try:
            parse(text)
        except RuleError as err:
            raise ValueError(f"the rule text does not parse: {err}") from None
        return text

    @field_validator("hyper")
    @classmethod
    def _known_hypers(cls, hyper: dict[str, float]) -> dict[str, float]:
        problems = []
        for key, value in hyper.items():
            if key not in HYPER_KEYS:
                close = did_you_mean(key, HYPER_KEYS, n=2)
                hint = f"did you mean {' or '.join(close)}? " if close else ""
                problems.append(f"unknown key {key!r} ({hint}known: {', '.join(HYPER_KEYS)})")
            elif (problem := (HYPERS.get(key) or LEARNING_RATE).problem(value)) is not None:
                problems.append(problem)
        if problems:
            raise ValueError("; ".join(problems))
        return hyper

    @model_validator(mode="after")
    def _verdict_of_old_records(self) -> RuleRecord:
        # Records written before the t-test kept gain, z and beats ("beats" at z >= 2, on 2 seeds too):
        # their verdict is measured again on the per-seed rewards they hold (`verdicts.verdict`), and one
        # that cannot be is never "beats".
        old = self.verdict
        if isinstance(old, OldVerdict):
            fresh = verdict(list(self.rewards.values()), self.baselines)
            if fresh is None or len(self.baselines.get(fresh.best_baseline, ())) != len(self.rewards):
                n = len(self.rewards)
                fresh = Verdict(best_baseline=old.best_baseline, n=n, gain=old.gain, t=old.z, p=None,
                                outcome="not enough seeds" if n < MIN_SEEDS else "does not beat")
            object.__setattr__(self, "verdict", fresh)  # frozen: set once, while validating
        return self

    @model_validator(mode="after")
    def _search_has_results(self) -> RuleRecord:
        if self.source == "search" and (not self.task or not self.rewards):
            raise ValueError("a record from a search needs its task and at least one reward")
        return self

    @model_validator(mode="after")
    def _forms_follow_the_rule(self) -> RuleRecord:
        # A record is found by its canonical key (nos rules show KEY, a run's records): an edited file
        # or one from another version of dsl must not claim a key or a formula its rule does not have.
        forms = rule_forms(parse(self.rule))
        for key in ("canonical_key", "formula"):
            if getattr(self, key) != forms[key]:
                raise ValueError(f"{key} {getattr(self, key)!r} is not the rule's ({forms[key]!r}): the file "
                                 "was edited or written by another version of dsl; export the record again")
        return self

    def parsed_rule(self) -> Rule:
        """The rule as a tree (its text went through dsl.parse when the record was validated)."""
        return parse(self.rule)


def _error(source: str, err: ValidationError) -> RecordError:
    return validation_error(source, "rule record", err, RuleRecord, cls=RecordError)


def read_record(path: str | Path) -> RuleRecord:
    """Read and validate a record; FileNotFoundError or RecordError naming the file and each bad key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no rule record at {path}")
    try:
        text = read_bounded(path, MAX_RECORD_BYTES, "rule record").decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecordError(f"{path}: not UTF-8 text ({err})") from None
    except ValueError as err:  # too big, or unreadable
        raise RecordError(str(err)) from None
    try:
        return RuleRecord.model_validate_json(text)
    except ValidationError as err:
        raise _error(str(path), err) from None


def write_record(record: RuleRecord, path: str | Path) -> Path:
    """Write ``record`` as indented JSON (atomically); returns the path."""
    path = Path(path)
    write_atomic(record.model_dump_json(indent=2) + "\n", path)
    return path


def make_record(name: str, rule: Rule | str, **fields: Any) -> RuleRecord:
    """A validated record for ``rule``; formula, LaTeX and canonical key are computed from the rule.

    ``fields`` give the rest (task, rewards, baselines, ...); hyper and baselines default to empty,
    date to today and source to "search". Values are converted where unambiguous (a date in ISO text).
    """
    given = sorted(set(fields) & set(FILLED_FROM_RULE))
    if given:
        raise TypeError(f"make_record fills {', '.join(given)} from the rule; do not pass them")
    parsed = parse(rule) if isinstance(rule, str) else rule
    values = {"hyper": {}, "baselines": {}, "date": datetime.date.today(), "source": "search", **fields,
              "name": name, "rule": str(parsed), **rule_forms(parsed)}
    try:
        return RuleRecord.model_validate(values, strict=False)
    except ValidationError as err:
        raise _error(f"record {name!r}", err) from None
