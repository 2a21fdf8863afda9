"""The `nos` command line: browse and check rules, search for new ones, confirm and transfer them.

    nos rules list [RUN_DIR]  the reference and discovered rules, or a run's best (search/cli/rules.py)
    nos rules show NAME|KEY   one rule: formula, LaTeX, key, checks, rewards, baselines, curves (PNG)
    nos rules export RUN_DIR  confirm a run's best rules (more seeds, longer) and export them
    nos rules check TEXT      parse and statically check a rule; exit status 1 if it is rejected
    nos rules names           every operand, hyper-constant and function of the rule language
    nos data cifar10 DEST     download CIFAR-10 (md5-checked) for the child tasks, on a machine with a network
    nos search [--set K=V ...]  search for rules on Ray (configs/quickstart.yaml on a local Ray by default)
    nos transfer NAME --task T  a rule against the baselines on another child task, saved with the rule
    nos report RUN_DIR [...]   one offline HTML file: progress, counts, best rules (search/cli/report.py)

Both commands change their config with ``--set KEY=VALUE`` (repeatable; dotted keys, YAML values), the
one override syntax (`configuration.parse_overrides`).
"""

from __future__ import annotations

import shlex
import time
import warnings
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from dsl.printable import visible
from search.cli.report import register as register_report
from search.cli.rules import RULE_TEXT_SETTINGS, not_a_rule, print_confirmation, register
from search.cli.terminal import shown

if TYPE_CHECKING:
    from dsl import Rule

try:  # typer >= 0.20 carries its own click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover (an older typer on click)
    from click.exceptions import ClickException

# Start-up: this module and the ones it imports declare the commands and their options only; torch, ray,
# sympy, matplotlib and the pydantic configs are imported inside the commands that use them, so that
# `nos --help` and `nos rules names` start fast (tests/test_cli_startup.py checks it).

# click's own (exit codes and usage errors), and a reader that closed the pipe (`nos rules list --json |
# head`), which typer ends quietly with status 1, as click does.
PASSED_THROUGH = (typer.Exit, typer.Abort, ClickException, BrokenPipeError)


class NosGroup(TyperGroup):
    """The `nos` group: an unexpected exception from any command is one line on stderr and exit status 1,
    its traceback only with ``nos --debug``; a warning is one line too (``warning: ...``). Implemented once
    here, so that the console script (``nos = "search.cli:app"``) and typer's CliRunner behave alike."""

    def invoke(self, ctx: typer.Context) -> Any:
        python_format = warnings.formatwarning
        try:
            if not ctx.params.get("debug"):  # a warning is one line too, without our source line
                warnings.formatwarning = _one_line_warning
            return super().invoke(ctx)
        except PASSED_THROUGH:
            raise
        except Exception as err:
            if ctx.params.get("debug"):
                raise
            message = visible(" ".join(str(err).split()), limit=2000)  # nothing hidden, nothing huge
            Console(stderr=True).print(f"error: {type(err).__name__}: {message} (run with --debug for the "
                                       "traceback)", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(1) from None
        finally:
            warnings.formatwarning = python_format


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    # Every warning of every command passes here: a store's, a record's or a path's text is shown visible.
    return f"warning: {visible(' '.join(str(message).split()), limit=2000)}\n"


app = typer.Typer(help="Neural optimizer search: discover optimizer update rules, and use them in PyTorch.",
                  no_args_is_help=True, rich_markup_mode="rich", add_completion=False, cls=NosGroup,
                  pretty_exceptions_show_locals=False)
rules_app = typer.Typer(help="Browse, inspect and check update rules.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
register(app, rules_app)  # list, show, export and transfer: search/cli/rules.py
register_report(app)  # nos report: search/cli/report.py
data_app = typer.Typer(help="Get the data sets the child tasks read (nothing is downloaded at run time).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            console.print(f"neural-optimizer-search {version('neural-optimizer-search')}")
        except PackageNotFoundError:
            console.print("neural-optimizer-search (not installed)")
        raise typer.Exit()


@app.callback()
def main(_: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                help="Print the version and exit."),
         debug: bool = typer.Option(False, "--debug", help="Show the traceback of an unexpected error "
                                    "(without it: one line, exit status 1). Before the command: nos --debug "
                                    "search ...")) -> None:
    """Neural optimizer search: discover optimizer update rules, and use them in PyTorch."""


def _rule(name_or_text: str) -> tuple[str | None, Rule]:
    """A known rule by name, else the text parsed as a rule; a parse error exits with its message."""
    from dsl import KNOWN_RULE_TEXT, RuleError, known_rules, parse

    if name_or_text in KNOWN_RULE_TEXT:
        return name_or_text, known_rules()[name_or_text]
    try:
        return None, parse(name_or_text)
    except RuleError as err:
        raise not_a_rule(err) from None


@rules_app.command("check", context_settings=RULE_TEXT_SETTINGS)
def check(rule: str = typer.Argument(..., help="Rule text or a reference rule's name. Text starting with "
                                     "'-' is read as the rule too: nos rules check -g (or nos rules check "
                                     "-- \"-g * m\")).")) -> None:
    """Parse and statically check a rule; exit status 0 if worth training, 1 if rejected, 2 if malformed."""
    from dsl.checks import why_invalid
    from dsl.equivalence import canonical_key

    _, parsed = _rule(rule)
    reason = why_invalid(parsed)
    key = canonical_key(parsed)
    if reason is not None:
        console.print(f"[red]rejected[/red]: {reason}  (rule: {parsed}, key {key})", highlight=False)
        raise typer.Exit(1)
    console.print(f"[green]ok[/green]: {parsed}  (key {key})", highlight=False)


@rules_app.command("names")
def names() -> None:
    """Every name a rule may use: operands, hyper-constants (with defaults) and functions."""
    from rich.table import Table

    from dsl.functions import FUNCTIONS
    from dsl.vocabulary import HYPERS, OPERANDS

    table = Table(title="The rule language")
    for column in ("name", "kind", "meaning"):
        table.add_column(column, overflow="fold")
    for op in OPERANDS.values():
        table.add_row(op.name, f"operand ({op.kind.value})", op.doc)
    for h in HYPERS.values():
        table.add_row(h.name, f"hyper-constant = {h.default:g}", h.doc)
    for f in FUNCTIONS.values():
        spelled = f"x {f.infix} y" if f.infix and f.arity == 2 else f.name
        table.add_row(spelled, "function", f.doc)
    console.print(table)
    console.print("Precedence: ^ (right-assoc, also **) > unary - > * / > + -. Example: "
                  "'exp(sign(g) * sign(m)) * g' (PowerSign).", highlight=False)


@data_app.command("cifar10")
def data_cifar10(
    dest: Path = typer.Argument(..., help="Directory to put cifar-10-python.tar.gz in (created if needed)."),
    url: str | None = typer.Option(None, help="Download from this URL (a mirror) instead of the official "
                                   "one."),
    md5: str | None = typer.Option(None, help="Expected md5 of the archive (default: the official one)."),
) -> None:
    """Download the CIFAR-10 archive, check its md5, and print the NOS_CIFAR10 setting that uses it."""
    from child_tasks.cifar10 import CIFAR10_MD5, CIFAR10_URL, ENV_VAR, CIFAR10DownloadError, download_cifar10

    try:
        archive = download_cifar10(dest, url=url or CIFAR10_URL, md5=md5 or CIFAR10_MD5)
    except CIFAR10DownloadError as err:
        console.print(f"[red]download failed[/red]: {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"CIFAR-10 is at {archive.resolve()}", highlight=False, soft_wrap=True)
    console.print(f"Use it with: export {ENV_VAR}={archive.resolve()}", highlight=False, soft_wrap=True)


class ControllerKind(str, Enum):
    ppo = "ppo"
    evolution = "evolution"
    random = "random"


# Extra arguments are collected (not refused by typer) so that the spelling before --set gets its fix.
@app.command("search", context_settings={"allow_interspersed_args": True, "allow_extra_args": True})
def search_command(
    ctx: typer.Context,
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", show_default=False,
                                        help="Change the run config (dotted keys, YAML values), e.g. --set "
                                        "search.budget=200 --set controller.batch_size=20 --set "
                                        "task_overrides.epochs=4 --set confirm.top_k=0. Repeatable."),
    config: Path | None = typer.Option(None, "--config", "-c", show_default=False,
                                       help="Run config YAML (task, controller, search, confirm, wandb "
                                       "sections). Default: configs/quickstart.yaml (PPO on the embedded "
                                       "MNIST-1D suite, ~10 min on 2 cores)."),
    address: str | None = typer.Option(None, "--address", show_default=False,
                                       help="Ray cluster to run on: 'auto' (the one `ray start` runs on this "
                                       "machine) or HOST:PORT of its head. Default: a local Ray in this "
                                       "process."),
    controller: ControllerKind | None = typer.Option(None, "--controller", case_sensitive=False,
                                                     show_default=False,
                                                     help="Search with PPO, evolution or random search (the "
                                                     "baseline); replaces the config's controller.kind."),
    resume: Path | None = typer.Option(None, "--resume", show_default=False,
                                       help="Continue the run in this directory (after a crash or Ctrl-C), "
                                       "with its own config; finished evaluations are never repeated."),
    run_dir: Path | None = typer.Option(None, "--run-dir", show_default=False,
                                        help="Where a new run keeps its results store and controller "
                                        "checkpoint. Default: runs/<timestamp>-<controller>."),
    records_dir: Path | None = typer.Option(None, "--records-dir", show_default=False,
                                            help="Where the confirmed winners are exported (the config's "
                                            "confirm section); the run remembers it. Default: "
                                            "$NOS_RULES_DIR, else ~/.local/share/nos/rules."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bars."),
) -> None:
    """Search for update rules: the controller proposes, Ray workers train child networks, every result is
    stored at once in the run directory (results.sqlite) and the search can be resumed from it. The budget
    counts trainings; at the end the best rules are confirmed against the baselines and exported."""
    from configuration import ConfigError
    from search.cluster import ClusterError
    from search.config import load_search_config
    from search.driver import run_search
    from search.ray_output import RAY_LOG
    from search.store import StoreError

    if ctx.args:  # the spelling before --set: say the new one rather than "unexpected argument"
        spelled = " ".join(f"--set {shlex.quote(item)}" for item in ctx.args)
        console.print(f"[red]error[/red]: overrides are given with --set (as for nos transfer): nos search "
                      f"{escape(spelled)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    overrides = overrides or []
    kind = controller.value if controller is not None else None
    try:
        if resume is not None:
            if overrides or config is not None or run_dir is not None:
                raise ConfigError("--resume continues a run with its own config: leave out --config, "
                                  "--run-dir and --set")
            directory, run_config = resume, None
        else:
            run_config = load_search_config(config, overrides)
            if kind is not None:
                run_config = run_config.with_overrides({"controller.kind": kind})
            stamp = time.strftime("%Y%m%d-%H%M%S")
            directory = run_dir or Path("runs") / f"{stamp}-{run_config.controller.kind}"
        debug = bool(ctx.parent and ctx.parent.params.get("debug"))
        console.print(f"run directory: [bold]{escape(str(directory))}[/bold]  (resume with: nos search "
                      f"--resume {escape(str(directory))})", highlight=False, soft_wrap=True)
        if not debug:
            console.print(f"Ray's own output: {escape(str(directory / RAY_LOG))} (nos --debug search ...: on "
                          "the terminal)", highlight=False, soft_wrap=True)
        summary = run_search(run_config, directory, address=address, resume=resume is not None,
                             controller_kind=kind, progress=progress, records_dir=records_dir,
                             show_ray_output=debug)
    except (ConfigError, FileNotFoundError, FileExistsError, ImportError) as err:
        console.print(f"[red]error[/red]: {shown(err)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except (ClusterError, StoreError, ValueError) as err:
        console.print(f"[red]error[/red]: {shown(err)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/yellow]; continue with: nos search --resume {directory}",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    _print_summary(summary)
    if summary.all_failed:
        console.print(f"[red]every training failed[/red] ({summary.trained}); the last error: "
                      f"{summary.failure}\nEach error is in the run's store "
                      f"({summary.run_dir}/results.sqlite): fix the cause and start a new run (a resume does "
                      "not train a failed rule again)",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if summary.confirm_error is not None:
        console.print(f"[red]confirmation failed[/red]: {summary.confirm_error}\nThe search's results are "
                      f"stored; try again with: nos rules export {summary.run_dir}", highlight=False,
                      soft_wrap=True)
        raise typer.Exit(1)


def _busy(summary, busy: float) -> str:
    window = "from the first submission to the last result"
    if not summary.resized:
        return (f"{busy:.0%}  (training seconds / ({summary.workers} workers x {summary.span_s:.1f} s "
                f"{window}))")
    return (f"{busy:.0%}  (training seconds / {summary.worker_s:.1f} worker-seconds: the workers there were "
            f"{window}, {summary.span_s:.1f} s)")


def _faults(summary) -> str:
    """What went wrong on the cluster and what the search did about it, in one cell."""
    parts = [f"node {node} lost (trainings running there: {count})"
             for node, count in summary.lost_nodes.items()]
    parts.append(f"trainings retried after their worker died: {summary.retried}")
    if summary.resized:
        counts = [summary.resized[0][0], *(after for _, after in summary.resized)]
        parts.append(f"workers {' -> '.join(map(str, counts))}, following the cluster")
    return "; ".join(parts) + " (Ray's account: ray.log in the run directory)"


def _print_summary(summary) -> None:
    from rich.table import Table

    table = Table(show_header=False, title=f"search {summary.run_id}")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    counts = summary.counts
    busy = summary.busy_fraction
    rate = summary.evaluations / summary.wall_time_s if summary.wall_time_s > 0 else 0.0
    rows = [("run directory", str(summary.run_dir)),
            ("trainings", f"{summary.trained} of a budget of {summary.budget} ({counts['ok']} ok, "
                          f"{counts['diverged']} diverged, {counts['failed']} failed); "
                          f"{summary.evaluations} in this session"),
            ("samples", f"{summary.samples} in {summary.updates} controller updates"),
            ("duplicates skipped", f"{counts['duplicate']} (a rule already trained: its reward reused)"),
            ("invalid rejected", f"{counts['invalid']} (undecodable or rejected by the static checks)"),
            ("stopped", summary.stopped_because),
            ("wall time", f"{summary.wall_time_s:.1f} s this session, {rate:.2f} trainings/s on "
                          f"{summary.workers} workers"),
            ("worker busy fraction", "-" if busy is None else _busy(summary, busy)),
            ("best reward", "-" if summary.best_reward is None else f"{summary.best_reward:.2f}" +
             (f" (its score at funnel stage {summary.best_stage}, the highest it reached)"
              if summary.best_stage else "")),
            ("best rule", summary.best_rule or "-")]
    if summary.retried or summary.lost_nodes or summary.resized:
        rows.insert(5, ("faults", _faults(summary)))
    if summary.stages:
        from search.funnel import reached

        rows.insert(5, ("funnel", f"rules that completed each stage: {reached(summary.stages)} "
                        f"({summary.funnel_evaluations} stage evaluations in this session, one per rule and "
                        "seed)"))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if summary.confirmation is not None:
        print_confirmation(console, summary.confirmation)
