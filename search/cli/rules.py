"""The `nos` commands about rules' results: list, show, export (winners of a run) and transfer.

    nos rules list [RUN_DIR]              reference and discovered rules; with RUN_DIR the run's best rules
    nos rules show NAME|KEY|TEXT          one rule in full, with rewards, baselines and a curves PNG
    nos rules export RUN_DIR --top K      confirm a run's best rules (more seeds, longer) and export them
    nos transfer NAME --task convnet      a rule against the baselines on another task, saved with the rule
    nos transfer NAME --panel             the held-out transfer panel: every panel task, wins/ties/losses

`register(app, rules_app)` adds them to the `nos` app of `search.cli`. Exit status: 0 done, 1 a failure
(no results store, a bad task config or override, missing data, a training that failed), 2 an unknown
rule name, key or baseline, or text that is not a rule.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()
errors = Console(stderr=True)
# search.config.DEFAULT_BASELINES, spelled here so that `nos --help` need not import the configs (pydantic,
# torch); tests/test_cli_startup.py checks that the two agree.
DEFAULT_BASELINES = ("adam", "momentum", "sgd", "rmsprop")
PANEL_BASELINES = ("sgd", "momentum", "adam", "rmsprop", "lion")  # search.results.panel's, spelled here too
# A rule's text may start with '-' ("-g", "-sign(g) * m"): an unknown option is then taken as the argument
# (click would refuse it as "No such option"); `nos rules check -- "-g"` works too.
RULE_TEXT_SETTINGS = {"ignore_unknown_options": True}


def wide(out: Console) -> Console:
    """Where to print wide tables: ``out`` on a terminal; in a file or a pipe, where rich would fold a
    table of several tasks into 80 columns, a console of at least 160 (a log is read in a wide window)."""
    return out if out.is_terminal else Console(width=max(out.width, 160))
BASELINES_HELP = "Comma-separated torch baselines: " + ", ".join(DEFAULT_BASELINES) + " by default."
DIRECTORY_HELP = ("The folder of discovered records. Default: a run's own (for a command given a run), "
                  "else $NOS_RULES_DIR, else ~/.local/share/nos/rules.")


def records_option(help_text: str = DIRECTORY_HELP):
    """The records folder's option, ``--records-dir`` on every command (as on `nos search`)."""
    return typer.Option(None, "--records-dir", show_default=False, help=help_text)


def old_records_option():
    """``--directory``, the records folder's old name on some commands: hidden, still read (a warning)."""
    return typer.Option(None, "--directory", hidden=True, show_default=False,
                        help="Deprecated: the old name of --records-dir.")


def records_dir(new: Path | None, old: Path | None) -> Path | None:
    """The records folder given by ``--records-dir`` or by its deprecated alias ``--directory``."""
    if old is None:
        return new
    if new is not None and new != old:
        raise _fail(ValueError("--directory is the old name of --records-dir: give one of them"), 2)
    errors.print("warning: --directory is deprecated; use --records-dir", highlight=False)
    return old


def _fail(err: BaseException, code: int) -> typer.Exit:
    from search.cli.terminal import shown

    console.print(f"[red]error[/red]: {shown(err)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def not_a_rule(err: BaseException) -> typer.Exit:
    """Text that is neither a rule's name nor a rule: the parse error (its caret under the fault), exit 2."""
    from search.cli.terminal import shown

    console.print(f"[red]not a known rule name nor valid rule text:[/red]\n{shown(err)}", highlight=False)
    return typer.Exit(2)


def _baselines(text: str) -> list[str]:
    from search.config import check_baselines

    try:
        return check_baselines([n.strip() for n in text.split(",") if n.strip()])
    except ValueError as err:
        raise _fail(err, 2) from None


def list_rules(
    run_dir: Path | None = typer.Argument(None, show_default=False,
                                          help="A search's run directory: list its best rules instead."),
    top: int = typer.Option(20, "--top", min=1, help="With RUN_DIR: how many of the best rules to list."),
    baselines: str = typer.Option(",".join(DEFAULT_BASELINES), "--baselines", help=BASELINES_HELP),
    compute: bool = typer.Option(False, "--compute-baselines/--no-baselines",
                                 help="With RUN_DIR: the gain column reads the baselines the search trained "
                                 "at its start (RUN_DIR/baselines.json); --compute-baselines trains those "
                                 "missing (a run made before searches trained them, or other --baselines)."),
    directory: Path | None = records_option(),
    address: str | None = typer.Option(None, "--address", show_default=False,
                                       help="Ray cluster for the baselines' training. Default: a local Ray."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON (full precision) instead."),
    as_csv: bool = typer.Option(False, "--csv", help="Print the rows as CSV (a column per task) instead."),
    old_directory: Path | None = old_records_option(),
) -> None:
    """The reference rules and the discovered ones; with RUN_DIR, the run's best rules from its results
    store: rank, reward, gain over the best baseline (search reward, and confirmed reward of exported
    rules), formula and canonical key (for `nos rules show KEY --run RUN_DIR`). --json and --csv print
    the same rows for programs (search/cli/tables.py)."""
    from search.cli.browse import discovered_table, reference_table, run_listing
    from search.results.comparison import ComparisonError
    from search.store import StoreError

    directory = records_dir(directory, old_directory)
    if as_json and as_csv:
        raise _fail(ValueError("give --json or --csv, not both"), 2)
    if as_json or as_csv:
        return _machine_readable(run_dir, top, _baselines(baselines), compute, directory, address,
                                 "json" if as_json else "csv")
    try:
        if run_dir is None:
            console.print(reference_table())
            discovered = discovered_table(directory)
            console.print(discovered if discovered is not None else "No discovered rules yet "
                          "(nos rules export RUN_DIR adds a run's best).", highlight=False)
            return
        listing = run_listing(run_dir, top, baselines=_baselines(baselines), compute=compute,
                              directory=directory, address=address, console=console)
    except (StoreError, ComparisonError, OSError, ValueError) as err:
        raise _fail(err, 1) from None
    console.print(listing.table())


def _machine_readable(run_dir: Path | None, top: int, baselines: list[str], compute: bool,
                      directory: Path | None, address: str | None, fmt: str) -> None:
    """`nos rules list --json/--csv`: the rows on stdout, anything else (a baselines' progress) on stderr."""
    import sys

    from search.cli.browse import run_listing
    from search.cli.tables import library_rows, listing_rows, write_rows
    from search.results.comparison import ComparisonError
    from search.store import StoreError

    try:
        rows = library_rows(directory) if run_dir is None else listing_rows(run_listing(
            run_dir, top, baselines=baselines, compute=compute, directory=directory, address=address,
            progress=False, console=Console(stderr=True)))
    except (StoreError, ComparisonError, OSError, ValueError) as err:
        raise _fail(err, 1) from None
    write_rows(rows, fmt, sys.stdout)


def show(
    rule: str = typer.Argument(..., help="A reference rule's or a record's name, a canonical key (or its "
                               "first 6+ hex digits), or rule text, e.g. 'exp(sign(g) * sign(m)) * g'."),
    run: Path | None = typer.Option(None, "--run", show_default=False,
                                    help="Look the key up among this run's evaluations."),
    directory: Path | None = records_option(),
    old_directory: Path | None = old_records_option(),
) -> None:
    """One rule in full: text, formula, LaTeX, canonical key, state, hyper-constants and static checks;
    for a discovered rule or a run's evaluation also its rewards (per seed), the baselines' rewards, the
    gain, transfer results, and its learning curves drawn as a PNG (the path is printed)."""
    from discovered_rules import RecordError, UnknownRule
    from dsl import RuleError
    from search.cli.show import details, find_rule
    from search.store import StoreError

    directory = records_dir(directory, old_directory)
    try:
        found = find_rule(rule, run_dir=run, directory=directory)
    except RuleError as err:
        raise not_a_rule(err) from None
    except (UnknownRule, LookupError) as err:
        raise _fail(err, 2) from None
    except (StoreError, RecordError, OSError) as err:
        raise _fail(err, 1) from None
    from search.cli.terminal import shown

    table, png = details(found)
    console.print(table)
    if png is not None:
        console.print(f"learning curves: {shown(png)}", highlight=False, soft_wrap=True)


def export(
    run_dir: Path = typer.Argument(..., help="The search's run directory (holds results.sqlite)."),
    top: int = typer.Option(5, "--top", min=1, help="How many of the run's best distinct rules to confirm."),
    seeds: int = typer.Option(3, "--seeds", min=1, help="Seeds per rule and baseline (the search's own seed "
                              "is left out)."),
    budget_scale: float = typer.Option(2.0, "--budget-scale", min=0.01,
                                       help="Factor on the task's epochs (and time limit)."),
    baselines: str = typer.Option(",".join(DEFAULT_BASELINES), "--baselines", help=BASELINES_HELP),
    directory: Path | None = records_option("Where to write the records. " + DIRECTORY_HELP),
    address: str | None = typer.Option(None, "--address", show_default=False,
                                       help="Ray cluster: 'auto' or HOST:PORT. Default: a local Ray."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    force: bool = typer.Option(False, "--force", help="Replace this run's records of the same rules in place "
                               "(their transfer results are kept). Without it a taken name is never "
                               "replaced: the record gets the next free name, nos_<run>_<rank>_<n>."),
    old_directory: Path | None = old_records_option(),
) -> None:
    """Confirm a run's best rules: train each again with more seeds and a longer budget next to the
    baselines (on Ray, one task per optimizer and seed), then write each as a record (JSON) and a
    self-contained PyTorch optimizer (.py) named nos_<run>_<rank>, with its verdict against the best
    baseline (paired gain and z on the confirmation seeds)."""
    from search.cluster import ClusterError
    from search.results.comparison import ComparisonError
    from search.results.winners import confirm_and_export
    from search.store import StoreError

    directory = records_dir(directory, old_directory)
    try:
        confirmed = confirm_and_export(run_dir, top, seeds=seeds, budget_scale=budget_scale,
                                       baselines=_baselines(baselines), directory=directory, address=address,
                                       progress=progress, console=console, force=force)
    except (StoreError, ClusterError, ComparisonError, OSError, ValueError) as err:
        raise _fail(err, 1) from None
    print_confirmation(console, confirmed)


def print_confirmation(console: Console, confirmed) -> None:
    """The confirmation table, each exported record with its verdict, and plainly whether any rule beat
    the best baseline (`discovered_rules.verdict`)."""
    from discovered_rules import MIN_SEEDS
    from search.cli.terminal import shown

    wide(console).print(confirmed.table.to_rich())
    for item in confirmed.exported:
        v = item.record.verdict
        said = "" if v is None else f"  ({v.describe()})"
        console.print(shown(f"exported {item.record.name}: {item.json_path} and {item.py_path}{said}"),
                      highlight=False, soft_wrap=True)
    verdicts = [e.record.verdict for e in confirmed.exported if e.record.verdict is not None]
    if verdicts and not any(v.beats for v in verdicts):
        console.print(f"No discovered rule beat the best baseline ({verdicts[0].best_baseline}) on the "
                      f"confirmation seeds {confirmed.table.seeds} (that takes at least {MIN_SEEDS} paired "
                      "seeds and a one-sided paired t-test at p <= 0.05); the records say so.",
                      highlight=False, soft_wrap=True)


def transfer(
    name: str = typer.Argument(..., help="A reference rule's or a discovered record's name, a record's "
                               "canonical key (6+ hex digits), or rule text as for nos rules show, e.g. "
                               "'sign(m) * g' (text starting with '-': nos transfer --task T -- \"-g\")."),
    task: str | None = typer.Option(None, "--task", show_default=False,
                                    help="convnet (CIFAR-10 ConvNet), wrn (Wide ResNet on CIFAR-10), nmt "
                                    "(synthetic translation), or a task config name or path."),
    panel: bool = typer.Option(False, "--panel", help="Instead of --task: the held-out transfer panel, every "
                               "panel task against the lr-tuned baselines (search/results/panel.py)."),
    baselines: str | None = typer.Option(None, "--baselines", show_default=False, help=BASELINES_HELP + " "
                                         "With --panel: " + ", ".join(PANEL_BASELINES) + "."),
    seeds: int | None = typer.Option(None, "--seeds", min=1, show_default=False,
                                     help="Seeds 0..N-1. Default: the task config's seeds; 5 with --panel."),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", show_default=False,
                                        help="Change the task config (YAML values, dotted keys), e.g. "
                                        "--set epochs=2 --set model.width=8. Repeatable."),
    directory: Path | None = records_option(),
    out: Path | None = typer.Option(None, "--out", show_default=False,
                                    help="Also (for a reference rule: instead of "
                                    "./transfer_<rule>_<task>.json, or ./panel_<rule>.json with --panel) "
                                    "write the rows to this JSON file."),
    address: str | None = typer.Option(None, "--address", show_default=False,
                                       help="Ray cluster: 'auto' or HOST:PORT. Default: a local Ray."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    old_directory: Path | None = old_records_option(),
) -> None:
    """Compare a rule with the baselines on another child task (each optimizer and seed one Ray task):
    print the table and save it in the rule's record (transfer: task -> rows), or for a reference rule
    in a JSON file. Rule text has no record: it is labelled rule_<first 8 digits of its canonical key> and
    its rows go to ./transfer_rule_<key>_<task>.json (or --out), with the text; export a run's rule to keep
    its transfers in its record. The CIFAR-10 tasks need the data locally (see `nos data cifar10`).
    With --panel, the rule goes through every held-out panel task instead (wins, ties and losses against
    each task's best tuned baseline, saved in the record's panel field or ./panel_<rule>.json); --set
    then changes every panel task."""
    from discovered_rules import RecordError, UnknownRule
    from dsl import RuleError, canonical_key
    from search.cli.show import find_rule
    from search.cluster import ClusterError
    from search.results.comparison import ComparisonError
    from search.results.transfer import transfer as run_transfer

    directory = records_dir(directory, old_directory)
    if panel == (task is not None):
        raise _fail(ValueError("give --task T or --panel" if task is None else
                               "--panel runs every panel task: give --task or --panel, not both"), 2)
    chosen = _baselines(baselines if baselines is not None else
                        ",".join(PANEL_BASELINES if panel else DEFAULT_BASELINES))
    try:  # found as nos rules show finds it: a name, a record's key, else rule text
        found = find_rule(name, directory=directory)
    except RuleError as err:
        raise not_a_rule(err) from None
    except (UnknownRule, LookupError) as err:
        raise _fail(err, 2) from None
    except (RecordError, OSError) as err:
        raise _fail(err, 1) from None
    text = str(found.rule) if found.kind == "text" else None
    label = found.name if text is None else f"rule_{canonical_key(found.rule)[:8]}"
    try:
        if panel:
            from search.results.panel import PANEL_SEEDS, run_panel

            result = run_panel(label, text=text, seeds=seeds or PANEL_SEEDS, baselines=chosen,
                               overrides=overrides, directory=directory, out=out, address=address,
                               progress=progress, console=console)
            table = result.to_rich()
        else:
            result = run_transfer(label, task, baselines=chosen, seeds=seeds, overrides=overrides,
                                  directory=directory, out=out, address=address, progress=progress,
                                  console=console, text=text)
            table = result.table.to_rich()
    except UnknownRule as err:
        raise _fail(err, 2) from None
    except (ClusterError, ComparisonError, RecordError, OSError, ValueError) as err:
        # A missing data set (FileNotFoundError naming the variable to set) or task config lands here too.
        raise _fail(err, 1) from None
    wide(console).print(table)
    from search.cli.terminal import shown

    for path in result.saved_to:
        console.print(f"saved to {shown(path)}", highlight=False, soft_wrap=True)


def register(app: typer.Typer, rules_app: typer.Typer) -> None:
    """Add the commands to `nos` (``transfer``) and to `nos rules` (``list``, ``show``, ``export``)."""
    rules_app.command("list")(list_rules)
    rules_app.command("show", context_settings=RULE_TEXT_SETTINGS)(show)
    rules_app.command("export")(export)
    app.command("transfer")(transfer)
