"""`nos report`: one self-contained HTML file for one or more runs, or for the discovered-rules library,
and every evaluation of the runs as CSV.

    nos report RUN_DIR [RUN_DIR ...] [-o FILE.html] [--top K]   runs overlaid, their best rules
    nos report --rules [-o FILE.html]                           every exported record
    nos report RUN_DIR [...] --csv evaluations.csv              every evaluation, one row each

    path = write_report(["runs/a-ppo", "runs/b-random"], "report.html", top=5)
    path = write_library_report("rules.html", directory=None)

The data is read without training anything or writing to a run (`search.cli.report_data`), drawn as
inline SVG (`search.cli.report_figures`) and laid out with every text escaped (`search.cli.report_html`).
The file needs no network when opened: no script, no external style, font or image. It is written
atomically, so a browser that reloads it never reads half a file. `register(app)` adds the command to
`nos`. Exit status: 0 written, 1 a folder that is not a run, an empty run or an unreadable store or record
(one line on stderr), 2 a usage error.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from search.cli.rules import DIRECTORY_HELP, records_dir

console = Console()
errors = Console(stderr=True)


def default_output(run_dirs: Sequence[str | Path]) -> Path:
    """Where a report goes when no file is named: ``<run_dir>/report.html`` for one run, else
    ``./report.html``."""
    return Path(run_dirs[0]) / "report.html" if len(run_dirs) == 1 else Path("report.html")


def write_report(run_dirs: Sequence[str | Path], out: str | Path, *, top: int = 5,
                 directory: str | Path | None = None) -> Path:
    """The report of the runs (their ``top`` best rules each, with their records in ``directory``)."""
    # Imported here, as in every command: matplotlib and sympy load for a report, not at `nos --help`.
    from search.cli.report_data import ReportError, read_run
    from search.cli.report_html import run_page

    if not run_dirs:
        raise ReportError("no run directory given (nos report RUN_DIR [RUN_DIR ...], or --rules)")
    runs = [read_run(run_dir, top, directory) for run_dir in run_dirs]
    return _write(run_page(runs), out)


def write_library_report(out: str | Path, directory: str | Path | None = None) -> Path:
    """The report of every exported record in ``directory`` (default: `discovered_rules.default_folder`)."""
    import discovered_rules
    from search.cli.report_data import ReportError, read_library
    from search.cli.report_html import library_page

    folder = discovered_rules.folder(directory)
    if not folder.is_dir():
        raise ReportError(f"{folder}: no such records folder")
    return _write(library_page(read_library(folder), str(folder)), out)


def _write(text: str, out: str | Path) -> Path:
    from configuration.files import write_atomic
    from search.cli.report_data import ReportError

    out = Path(out)
    if out.is_dir():
        raise ReportError(f"{out}: is a folder; name the HTML file to write")
    write_atomic(text, out)
    return out


def report(
    run_dirs: Annotated[list[Path] | None, typer.Argument(
        show_default=False, help="Run directories (hold results.sqlite); several are overlaid.")] = None,
    out: Annotated[Path | None, typer.Option(
        "-o", "--out", show_default=False, help="The HTML file to write. Default: RUN_DIR/report.html for "
        "one run, ./report.html for several, ./rules_report.html with --rules.")] = None,
    rules: Annotated[bool, typer.Option(
        "--rules", help="Report the discovered-rules library instead: every exported record, its origin, "
        "confirmation and transfer results.")] = False,
    top: Annotated[int, typer.Option("--top", min=1, help="How many of each run's best rules to show.")] = 5,
    directory: Annotated[Path | None, typer.Option("--records-dir", show_default=False,
                                                   help=DIRECTORY_HELP)] = None,
    csv_path: Annotated[Path | None, typer.Option(
        "--csv", show_default=False, help="Also write every evaluation of the runs to this CSV file.",
    )] = None,
    old_directory: Annotated[Path | None, typer.Option("--directory", hidden=True, show_default=False,
                                                       help="Deprecated: --records-dir.")] = None,
) -> None:
    """An HTML report that opens without a network: the search's progress (runs overlaid), the status
    counts, the controller's metrics, and the best rules with their formula, reward per task,
    confirmation against the baselines and learning curves. Reads the runs without blocking a search
    that is still writing."""
    from dsl.printable import visible
    from search.cli.report_data import ReportError
    from search.cli.tables import write_evaluations_csv
    from search.store import StoreError

    directory = records_dir(directory, old_directory)
    if rules and run_dirs:
        errors.print("error: give run directories or --rules, not both", highlight=False)
        raise typer.Exit(2)
    if not rules and not run_dirs:
        errors.print("error: give one or more run directories, or --rules", highlight=False)
        raise typer.Exit(2)
    if rules and csv_path is not None:
        errors.print("error: --csv writes a run's evaluations; it needs run directories", highlight=False)
        raise typer.Exit(2)
    start = time.perf_counter()
    try:
        if rules:
            path = write_library_report(out or Path("rules_report.html"), directory)
        else:
            path = write_report(run_dirs, out or default_output(run_dirs), top=top, directory=directory)
            if csv_path is not None:
                count = write_evaluations_csv(run_dirs, csv_path)
                console.print(f"{count} evaluations written to {visible(csv_path)}", highlight=False,
                              soft_wrap=True, markup=False)
    except (ReportError, StoreError, OSError) as err:
        errors.print(f"error: {visible(' '.join(str(err).split()))}", highlight=False, soft_wrap=True,
                     markup=False)
        raise typer.Exit(1) from None
    size = path.stat().st_size
    console.print(f"report written to {visible(path)} ({size / 1024:.0f} KiB, "
                  f"{time.perf_counter() - start:.1f} s)", highlight=False, soft_wrap=True, markup=False)


def register(app: typer.Typer) -> None:
    """Add ``report`` to `nos`."""
    app.command("report")(report)
