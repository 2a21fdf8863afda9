"""nos rules list / show and nos transfer's errors, on a store and records written directly (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import discovered_rules
from discovered_rules import make_record
from dsl import canonical_key, known_rules, parse
from search.cli import app
from search.config import SearchConfig
from search.results.baselines import BaselineCache
from search.results.winners import record_name
from tests.search_helpers import tiny_config
from tests.winners_helpers import make_run

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


@pytest.fixture
def browsed(tmp_path: Path):
    """A run, a confirmed record of its best rule, a record of another run, and a baselines cache."""
    run_dir, records = tmp_path / "run", tmp_path / "records"
    run_id = make_run(run_dir)
    confirmed = make_record(record_name(run_id, 1), "sign(m) * g", task="digits", rewards={1: 60.0, 2: 62.0},
                            baselines={"adam": [70.0, 72.0], "sgd": [50.0, 52.0]}, hyper={"lr": 0.1},
                            run_id=run_id, curves={1: [40.0, 60.0], 2: [41.0, 62.0]})
    discovered_rules.export(confirmed, records)
    discovered_rules.export(make_record("nos_other_1", "g * 2", task="digits", rewards={0: 50.0},
                                        baselines={"adam": [55.0]}, run_id="another"), records)
    task = SearchConfig.from_mapping(tiny_config()).suite.to_mapping()
    # momentum is cached but not asked for below: it must not count.
    cache = BaselineCache(run_id=run_id, task=task, seed=0, date="2026-01-01",
                          rewards={"adam": 88.0, "sgd": 84.5, "momentum": 99.0},
                          curves={"adam": [70.0, 88.0], "sgd": [60.0, 84.5], "momentum": [90.0, 99.0]})
    (run_dir / "baselines.json").write_text(cache.model_dump_json())
    return run_dir, records, run_id, confirmed


def test_list_without_run_dir_shows_reference_and_discovered_rules(browsed, tmp_path: Path) -> None:
    _, records, _, confirmed = browsed
    result = run("rules", "list", "--records-dir", records)
    assert result.exit_code == 0, result.output
    for name in known_rules():
        assert name in result.output
    assert "Discovered rules" in result.output
    assert confirmed.name in result.output and "nos_other_1" in result.output
    line = next(line for line in result.output.splitlines() if confirmed.name in line)
    assert "61.000 ± 1.414" in line and "-10.000 (adam)" in line  # mean 61 against adam's 71
    empty = run("rules", "list", "--records-dir", tmp_path / "none")
    assert empty.exit_code == 0 and "No discovered rules yet" in empty.output


def test_list_run_dir_ranks_the_rules_with_gains_and_counts(browsed) -> None:
    run_dir, records, run_id, confirmed = browsed
    result = run("rules", "list", run_dir, "--baselines", "adam,sgd", "--records-dir", records)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    assert len(rows) == 3  # g and g + g - g share a key: one row, with the better reward (81)
    # The rule column is in the rule language (m / (1 - beta1^t), not sympy's m/(1 - beta1**t)).
    expected = [("1", "90.000", "+2.000", "g * sign(m)"), ("2", "85.000", "-3.000", "m / (1 - beta1^t)"),
                ("3", "81.000", "-7.000", "g")]
    for row, (rank, reward, gain, rule) in zip(rows, expected, strict=True):
        cells = [c.strip() for c in row.split("│")[1:-1]]
        assert cells[:3] == [rank, reward, gain] and cells[-2] == rule
        assert canonical_key(parse(cells[-2])) == cells[-1]  # pasted back: the same rule
    assert f"61.000 ± 1.414 ({confirmed.name})" in rows[0] and "-10.000" in rows[0]
    assert canonical_key(parse("mhat")) in rows[1]
    text = " ".join(result.output.split())
    assert f"run {run_id}" in text
    assert "pending 0, ok 4, diverged 1, invalid 1, duplicate 1, failed 0" in text
    assert "cached in" in text and "baselines.json" in text and "adam 88.00, sgd 84.50" in text
    assert "momentum" not in text
    assert "confirmed: 1 of these rules" in text


def test_list_run_dir_without_baselines_or_with_a_stale_cache(browsed) -> None:
    run_dir, records, _, _ = browsed
    cache = run_dir / "baselines.json"
    cache.write_text(cache.read_text().replace('"seed":0', '"seed":7'))  # another seed: stale
    before = cache.read_text()
    # Listing only reads (the default): a stale or missing cache is reported, never trained.
    result = run("rules", "list", run_dir, "--records-dir", records, "--top", "1")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    assert len(rows) == 1 and [c.strip() for c in rows[0].split("│")[1:4]] == ["1", "90.000", "-"]
    assert "the run has no baselines at its budget" in flat(result.output)
    assert "--compute-baselines trains them once" in flat(result.output)
    assert cache.read_text() == before, "nothing trained, nothing written"


def test_list_errors(browsed, tmp_path: Path) -> None:
    run_dir, _, _, _ = browsed
    result = run("rules", "list", tmp_path / "nothing")
    assert result.exit_code == 1 and "no results store" in result.output
    (run_dir / "baselines.json").write_text('{"run_id": 3}')
    result = run("rules", "list", run_dir, "--no-baselines")
    assert result.exit_code == 1, result.output
    assert "baselines.json: 6 problem(s) in the baselines cache" in flat(result.output)
    result = run("rules", "list", run_dir, "--baselines", "adam,sgf")
    assert result.exit_code == 2 and "'sgf'" in result.output and "sgd" in result.output


def flat(output: str) -> str:
    """The output on one line, without the table's borders."""
    return " ".join(output.replace("│", " ").split())


def _png(output: str) -> Path:
    line = next(line for line in output.splitlines() if line.startswith("learning curves:"))
    path = Path(line.split(":", 1)[1].strip())
    assert path.is_file() and path.read_bytes().startswith(PNG_MAGIC)
    return path


def test_show_a_record_draws_its_curves(browsed) -> None:
    _, records, run_id, confirmed = browsed
    result = run("rules", "show", confirmed.name, "--records-dir", records)
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    for expected in ("sign(m) * g", r"\operatorname{sign}", confirmed.canonical_key, "lr=0.1", "beta1=0.9",
                     "rewards seed 1: 60.000, seed 2: 62.000 (mean 61.000 ± 1.414)",
                     "baseline adam seed 1: 70.000, seed 2: 72.000", "gain -10.000 over adam",
                     f"run {run_id}", "static checks"):
        assert expected in text
    assert _png(result.output) == records / f"{confirmed.name}_curves.png"
    by_key = run("rules", "show", confirmed.canonical_key[:8], "--records-dir", records)
    assert by_key.exit_code == 0 and confirmed.name in by_key.output


def test_show_a_run_evaluation_by_key(browsed) -> None:
    run_dir, records, _, confirmed = browsed
    key = canonical_key(parse("mhat"))
    result = run("rules", "show", key, "--run", run_dir, "--records-dir", records)
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    for expected in ("text mhat", "status ok", "reward 85.000", "chosen lr 0.1", "adam 88.000, sgd 84.500",
                     "worker host:1", "static checks pass"):
        assert expected in text
    assert _png(result.output) == run_dir / "plots" / f"{key}.png"
    assert "confirmed as" not in text
    prefix = run("rules", "show", key[:6], "--run", run_dir, "--records-dir", records)
    assert prefix.exit_code == 0 and "reward 85.000" in flat(prefix.output)
    best = run("rules", "show", confirmed.canonical_key, "--run", run_dir, "--records-dir", records)
    assert f"confirmed as {confirmed.name}" in flat(best.output) and "reward 90.000" in flat(best.output)


def test_show_a_diverged_evaluation_draws_its_partial_curves(browsed) -> None:
    run_dir, records, _, _ = browsed
    key = canonical_key(parse("exp(g) * 1e30"))
    result = run("rules", "show", key, "--run", run_dir, "--records-dir", records)
    assert result.exit_code == 0, result.output
    assert "status diverged" in flat(result.output) and "error non-finite loss" in flat(result.output)
    assert _png(result.output) == run_dir / "plots" / f"{key}.png"  # a NaN loss is a gap, not an error


def test_show_keeps_reference_rules_and_text(browsed) -> None:
    result = run("rules", "show", "powersign")
    assert result.exit_code == 0
    for expected in ("exp(sign(g) * sign(m)) * g", "canonical key", "pass", r"\operatorname{sign}"):
        assert expected in result.output
    assert "learning curves" not in result.output
    simplified = run("rules", "show", "(g + g) * 1 - g * 0")
    assert simplified.exit_code == 0 and "simplified" in simplified.output


def test_show_by_key_finds_reference_rules_and_records(browsed) -> None:
    _, records, _, confirmed = browsed
    reference = run("rules", "show", canonical_key(known_rules()["adam"])[:8], "--records-dir", records)
    assert reference.exit_code == 0, reference.output
    assert "mhat / (sqrt(vhat) + eps)" in reference.output
    record = run("rules", "show", confirmed.canonical_key, "--records-dir", records)
    assert record.exit_code == 0 and f"run {confirmed.run_id}" in flat(record.output)


@pytest.mark.parametrize("args, code, expected", [
    (["powersgn"], 2, "did you mean powersign"),
    (["nos_othr_1"], 2, "did you mean nos_other_1"),
    (["exp(g"], 2, "expected ')'"),
    (["abcdef12"], 2, "--run RUN_DIR"),
    (["abcdef12", "--run", "RUN"], 2, "no evaluation of run"),
    (["abcdef12", "--run", "MISSING"], 1, "no results store"),
])
def test_show_errors(browsed, args: list[str], code: int, expected: str) -> None:
    run_dir, records, _, _ = browsed
    paths = {"RUN": str(run_dir), "MISSING": str(run_dir.parent / "missing")}
    args = [paths.get(a, a) for a in args]
    result = run("rules", "show", *args, "--records-dir", records)
    assert result.exit_code == code, result.output
    assert expected in " ".join(result.output.split())


def test_transfer_errors_come_before_any_training(browsed, monkeypatch, tmp_path: Path) -> None:
    _, records, _, _ = browsed
    monkeypatch.delenv("NOS_CIFAR10", raising=False)
    result = run("transfer", "powersign", "--task", "convnet", "--no-progress")
    assert result.exit_code == 1 and "NOS_CIFAR10" in result.output
    result = run("transfer", "nos_othr_1", "--task", "digits", "--records-dir", records)
    assert result.exit_code == 2 and "did you mean nos_other_1" in result.output
    result = run("transfer", "powersign", "--task", "convnt")
    assert result.exit_code == 1 and "cifar10_convnet" in result.output  # no such config: close matches
    result = run("transfer", "powersign", "--task", "digits", "--set", "epochs")
    assert result.exit_code == 1 and "KEY=VALUE" in result.output
    result = run("transfer", "powersign", "--task", "digits", "--set", "epochs=0")
    assert result.exit_code == 1 and "epochs" in result.output
    result = run("transfer", "powersign", "--task", "digits", "--baselines", "adamm")
    assert result.exit_code == 2 and "'adamm'" in result.output


def test_help_explains_the_commands() -> None:
    for args, expected in [(["rules", "--help"], ["list", "show", "export", "check", "names"]),
                           (["--help"], ["transfer", "search", "rules"]),
                           (["rules", "export", "--help"], ["--top", "--seeds", "--budget-scale", "Confirm"]),
                           (["transfer", "--help"], ["--task", "--set", "--baselines", "convnet", "wrn",
                                                     "nmt"]),
                           (["rules", "list", "--help"], ["RUN_DIR", "--no-baselines"]),
                           (["rules", "show", "--help"], ["--run", "PNG"])]:
        result = run(*args)
        assert result.exit_code == 0, result.output
        for text in expected:
            assert text in result.output, (args, text)


def test_directory_is_a_hidden_deprecated_alias_of_records_dir(browsed, tmp_path: Path) -> None:
    _, records, _, confirmed = browsed
    for command in (["rules", "list"], ["rules", "show", confirmed.name], ["rules", "export", "RUN"],
                    ["transfer", "adam"], ["report"]):
        helped = run(*command[:2] if command[0] == "rules" else command[:1], "--help")
        assert "--records-dir" in helped.output and "--directory" not in helped.output, command
    old = run("rules", "show", confirmed.name, "--directory", records)
    assert old.exit_code == 0, old.output
    assert confirmed.name in old.output and "--directory is deprecated; use --records-dir" in old.output
    both = run("rules", "list", "--directory", records, "--records-dir", tmp_path / "else")
    assert both.exit_code == 2 and "give one of them" in both.output


@pytest.mark.parametrize("text", ["min(g, m) * 2 + clip(g, 0.1)", "max(g, m) - min(v, m) * sign(g)",
                                  "drop(g, 0.3) + g * g * g", "mhat / (sqrt(vhat) + eps)"])
def test_tables_show_rules_that_paste_back(text: str) -> None:
    from search.cli.browse import formula, readable

    shown = readable(text)
    assert "Min(" not in shown and "Max(" not in shown and "**" not in shown
    assert canonical_key(parse(shown)) == canonical_key(parse(text))
    assert formula(text) != shown  # sympy's spelling stays apart (nos rules show, --json and --csv)
