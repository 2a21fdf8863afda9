"""Winners of searches, kept as records and as self-contained PyTorch optimizers. Needs only `dsl`.

Each winner is a JSON record ``<folder>/<name>.json`` (`records.RuleRecord`: the rule's text,
formula, canonical key, hyper-constant defaults, task, rewards per seed, baselines, ...) and, beside it,
``<name>.py``: a generated module (`dsl.codegen.optimizer_source`) that imports only torch and math,
for a user to copy into any project. The folder is the one given (``--records-dir`` on every command),
else `default_folder`: ``$NOS_RULES_DIR``, else ``~/.local/share/nos/rules`` (under ``$XDG_DATA_HOME``
when set); nothing is ever written into this package's own folder, which a normal install puts in
site-packages. The package itself never imports or executes those .py files: `load`
builds the optimizer class from the record's rule text through `dsl.parse` and `dsl.optimizer_class`.
The reference rules of `dsl.known_rules()` load the same way:

    import discovered_rules
    Adam = discovered_rules.load("adam")            # a dsl.RuleOptimizer subclass
    opt = discovered_rules.load("nos_1")(model.parameters())
    discovered_rules.available()                    # name -> rule text, reference and discovered
    discovered_rules.export(record)                 # writes <name>.json and <name>.py

A record never shadows a reference rule: one named like a reference rule is refused at export, and one
found in the folder under such a name is an error when the folder is read.
"""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import dsl
from configuration.files import path_from_env, write_atomic
from discovered_rules.records import (
    RecordError,
    RecordWarning,
    RuleRecord,
    Verdict,
    best_baseline,
    class_name,
    make_record,
    read_record,
    write_record,
)
from discovered_rules.verdicts import MIN_SEEDS, PairedTest, paired_test, verdict
from dsl import KNOWN_RULE_TEXT, known_rules

if TYPE_CHECKING:
    import torch

# dsl's optimizer and code generator (torch, sympy) are read where they are used, as `dsl.optimizer_class`
# and `dsl.optimizer_source`: naming and finding records needs neither.

RULES_ENV = "NOS_RULES_DIR"

__all__ = [
    "MIN_SEEDS", "PairedTest", "RULES_ENV", "RecordError", "RecordWarning", "RuleRecord", "UnknownRule",
    "Verdict", "available", "best_baseline", "class_name", "default_folder", "export", "folder", "load",
    "make_record", "names", "paired_test", "read_record", "record", "records", "verdict", "write_record",
]


class UnknownRule(KeyError):
    """No reference rule and no record of that name; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


def _record_paths(directory: Path) -> dict[str, Path]:
    """Stem -> path of each record in ``directory``; a record named like a reference rule is an error."""
    paths = {p.stem: p for p in sorted(directory.glob("*.json"))} if directory.is_dir() else {}
    shadowing = sorted(set(paths) & set(KNOWN_RULE_TEXT))
    if shadowing:
        raise RecordError(f"{directory}: record(s) {', '.join(shadowing)} are named like reference rules of "
                          "dsl.known_rules(); rename them (a record must not shadow a reference rule)")
    return paths


def default_folder() -> Path:
    """Where records go when no folder is given: ``$NOS_RULES_DIR``, else ``$XDG_DATA_HOME/nos/rules``
    (``~/.local/share/nos/rules``). Never this package's own folder, which a normal install puts in
    site-packages: an upgrade would delete the records, and it may not be writable."""
    given = path_from_env(None, RULES_ENV)
    if given:
        return Path(given).expanduser()
    data = path_from_env(None, "XDG_DATA_HOME")
    return (Path(data) if data else Path.home() / ".local" / "share") / "nos" / "rules"


def folder(directory: str | Path | None = None) -> Path:
    """The records' folder: ``directory``, or `default_folder` when None (every caller's default)."""
    return default_folder() if directory is None else Path(directory).expanduser()


def _unknown(name: str, directory: Path) -> UnknownRule:
    known = names(directory)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return UnknownRule(f"no rule named {name!r}{hint} (available: {', '.join(known)})")


def record(name: str, directory: str | Path | None = None) -> RuleRecord:
    """The record of ``name``: read from ``<directory>/<name>.json`` (default: `default_folder`), or,
    for a reference rule, made from its text (source "reference", no task, no rewards)."""
    where = folder(directory)
    if name in KNOWN_RULE_TEXT:
        _record_paths(where)  # a shadowing record is an error whichever name is asked for
        return make_record(name, known_rules()[name], task=None, rewards={}, source="reference")
    path = _record_paths(where).get(name)
    if path is None:
        raise _unknown(name, where)
    return _read_named(path)


def _read_named(path: Path) -> RuleRecord:
    rec = read_record(path)
    if rec.name != path.stem:
        raise RecordError(f"{path}: the record's name is {rec.name!r}, not the file's {path.stem!r}")
    return rec


def load(name: str, directory: str | Path | None = None) -> type[torch.optim.Optimizer]:
    """The optimizer class of a reference rule or a record: a dsl.RuleOptimizer subclass with the rule
    and the record's hyper-constant defaults (lr among them) bound, built from the rule's text."""
    if name in KNOWN_RULE_TEXT:
        _record_paths(folder(directory))
        return dsl.optimizer_class(known_rules()[name], class_name(name))
    rec = record(name, directory)
    return dsl.optimizer_class(rec.parsed_rule(), class_name(name), **rec.hyper)


def names(directory: str | Path | None = None) -> list[str]:
    """The name of every reference rule, then of every record in the folder (its file's name, sorted),
    without reading the records: a name `record` may find, or fail to read."""
    return [*KNOWN_RULE_TEXT, *_record_paths(folder(directory))]


def records(directory: str | Path | None = None) -> list[RuleRecord]:
    """Every record in the folder, read once and sorted by name. A record that does not read or validate
    is left out with a `RecordWarning` naming its file and what is wrong, so that one bad file does not
    hide the others (asked for by name, `record` raises its error instead)."""
    out = []
    for path in _record_paths(folder(directory)).values():
        try:
            out.append(_read_named(path))
        except (RecordError, OSError) as err:  # OSError: unreadable, or a folder named *.json
            problems = "; ".join(line.strip() for line in str(err).splitlines())
            problems = problems.removeprefix(f"{path}: ")  # a RecordError's own naming of the file
            warnings.warn(f"skipped the record {path}: {problems}", RecordWarning, stacklevel=2)
    return out


def available(directory: str | Path | None = None) -> dict[str, str]:
    """Name -> rule text of every reference rule, then of every readable record (`records`)."""
    return dict(KNOWN_RULE_TEXT) | {rec.name: rec.rule for rec in records(directory)}


def export(record: RuleRecord, directory: str | Path | None = None, *,
           overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``<name>.json`` (the record) and ``<name>.py`` (its self-contained optimizer) to ``directory``
    (default: `default_folder`); returns both paths. An existing record is replaced only with
    ``overwrite=True``; a record named like a reference rule is refused."""
    name = record.name
    if name in KNOWN_RULE_TEXT:
        raise ValueError(f"{name!r} is the name of a reference rule of dsl.known_rules(); a record "
                         "must not shadow it: choose another name")
    where = folder(directory)
    json_path, py_path = where / f"{name}.json", where / f"{name}.py"
    if not overwrite and (json_path.exists() or py_path.exists()):
        raise FileExistsError(f"{json_path} or {py_path} exists; pass overwrite=True to replace it")
    source = dsl.optimizer_source(record.parsed_rule(), class_name(name), record.hyper, module=name,
                              about=_provenance(record))
    write_record(record, json_path)
    write_atomic(source, py_path)
    return json_path, py_path


def _provenance(rec: RuleRecord) -> str:
    """A sentence for the generated module's docstring: where the rule comes from and how it did."""
    if rec.source == "reference" or not rec.rewards:
        return ""
    rewards = list(rec.rewards.values())
    text = (f"Found by neural optimizer search on the task {rec.task!r} ({rec.date.isoformat()}"
            f"{', run ' + rec.run_id if rec.run_id else ''}): mean reward {sum(rewards) / len(rewards):.4g} "
            f"over {len(rewards)} seed(s)")
    baselines = [f"{name} {sum(v) / len(v):.4g}" for name, v in rec.baselines.items() if v]
    text += f"; baselines: {', '.join(baselines)}." if baselines else "."
    if (v := rec.verdict) is not None:
        text += f" Against the best baseline on these seeds (one-sided paired t-test): it {v.describe()}."
    return text
