"""`nos report` pages: one self-contained HTML file (inline style and SVG, no script, nothing fetched).

    html_text = run_page([read_run("runs/a"), read_run("runs/b")])   # progress, counts, updates, best rules
    html_text = library_page(read_library())                          # every exported record

Every piece of text that comes from a store, a record or a path goes through `html.escape` (``_e``),
attributes included, so a rule, a run directory's name or an error message can never inject markup; the
figures are matplotlib's SVG, whose text matplotlib escapes as XML.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Iterable, Sequence

from discovered_rules import MIN_SEEDS, RuleRecord, verdict
from search.cli.report_data import RunData, TopRule, mean_std, rule_forms
from search.cli.report_figures import curves_svg, formula_svg, progress_svg, updates_svg
from search.funnel import reached
from search.store import STATUSES

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 90em; padding: 0 1em;
       color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin-top: 1.5em; }
table { border-collapse: collapse; margin: .5em 0; } caption { text-align: left; color: #555; }
th, td { border: 1px solid #ddd; padding: .25em .5em; vertical-align: top; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code { font: 13px ui-monospace, monospace; background: #f4f4f4; padding: 0 .2em; overflow-wrap: anywhere; }
code.rule { display: block; min-width: 14em; max-width: 26em; overflow-wrap: break-word; }
.wide { overflow-x: auto; }
.yes { color: #06702b; font-weight: 600; } .no { color: #a4161a; font-weight: 600; }
.muted { color: #666; } .formula { max-width: 28em; overflow-x: auto; } .formula svg { max-width: none; }
figure { margin: .5em 0; } figure svg { max-width: 100%; height: auto; }
details { margin: .2em 0; } summary { cursor: pointer; color: #555; }
"""
STATUS_LABELS = {"ok": "trained ok", "diverged": "diverged", "failed": "failed", "invalid": "invalid",
                 "duplicate": "duplicate", "pending": "pending"}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pm(values: Sequence[float]) -> str:
    if not values:
        return "-"
    mean, std = mean_std(list(values))
    return f"{mean:.3f} ± {std:.3f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[tuple[str, bool]]], caption: str = "") -> str:
    """A table of already-escaped cells; each cell is (html, numeric)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td class=n>{c}</td>" if numeric else f"<td>{c}</td>"
                                    for c, numeric in row) + "</tr>" for row in rows)
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    # A table wider than the page scrolls inside its box, not the page.
    return f"<div class=wide><table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _page(title: str, body: str) -> str:
    # No <script>, no external URL: a Content-Security-Policy that forbids both says so to the browser too.
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; "
            "style-src 'unsafe-inline'; img-src data:\">"
            # The empty icon: else a browser asks for /favicon.ico.
            "<link rel=icon href='data:,'>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n<h1>{_e(title)}</h1>\n{body}\n</body></html>\n")


def formula_cell(formula: str | None, latex: str | None) -> str:
    """The rendered formula (SVG), with the LaTeX and sympy text one click away; the text alone when
    mathtext cannot draw it."""
    if formula is None:
        return "<span class=muted>not a rule of the language</span>"
    drawn = formula_svg(latex)
    shown = f"<div class=formula>{drawn}</div>" if drawn else f"<code>{_e(formula)}</code>"
    return (f"{shown}<details><summary>LaTeX, formula</summary><code>{_e(latex)}</code><br>"
            f"<code>{_e(formula)}</code></details>")


def verdict_cell(rec: RuleRecord | None) -> str:
    if rec is None:
        return "<span class=muted>not confirmed</span>"
    v, note = rec.verdict, ""
    if v is None and rec.rewards and rec.baselines:  # a record from before verdicts: the same rule applied
        v, note = verdict(list(rec.rewards.values()), rec.baselines), " (computed here: the record has none)"
    if v is None:
        return "<span class=muted>no verdict</span>"
    word = "<span class=yes>beats</span>" if v.beats else "<span class=no>does not beat</span>"
    return f"{word} {_e(v.best_baseline)}<br><span class=muted>{_e(v.details())}{_e(note)}</span>"


def confirmation_cell(rec: RuleRecord | None) -> str:
    if rec is None or not rec.rewards:
        return "<span class=muted>-</span>"
    lines = [f"<b>{_e(_pm(list(rec.rewards.values())))}</b> <span class=muted>({_e(rec.name)}, "
             f"seeds {_e(', '.join(map(str, rec.rewards)))})</span>"]
    lines += [f"{_e(name)} {_e(_pm(values))}" for name, values in rec.baselines.items()]
    return "<br>".join(lines)


def _task_cell(row: TopRule, task: str) -> str:
    part = ((row.evaluation.result or {}).get("tasks") or {}).get(task)
    if not isinstance(part, dict) or not isinstance(part.get("score"), int | float):
        return "-"
    metric = part.get("val_metric")
    beside = f"<br><span class=muted>val {_e(part.get('metric', ''))} {metric:.1f}</span>" \
        if isinstance(metric, int | float) else ""
    return f"{part['score']:.3f}{beside}"


def _best_rules(run: RunData) -> str:
    stages = range(1, len(run.funnel))
    header = ["rank", "rule", "formula", "search reward", *(f"{t} score" for t in run.tasks),
              *(f"stage {s} score" for s in stages),
              "confirmed (mean ± std) and baselines", "against the best baseline"]
    rows = [[(str(r.rank), True), (f"<code class=rule>{_e(r.evaluation.rule)}</code>", False),
             (formula_cell(r.formula, r.latex), False), (_num(r.evaluation.reward), True),
             *((_task_cell(r, t), True) for t in run.tasks),
             *((_num(r.stages.get(s)), True) for s in stages),
             (confirmation_cell(r.record), False), (verdict_cell(r.record), False)] for r in run.top]
    note = ("confirmed: trained again with more seeds at a longer budget next to the baselines "
            f"(nos rules export); beats: at least {MIN_SEEDS} paired seeds and a one-sided paired t-test at "
            "p <= 0.05 on those seeds (n, gain, t, p); with fewer, not enough seeds")
    return _table(header, rows, note)


def _rule_curves(run: RunData, row: TopRule) -> str | None:
    curves = {}
    val = (row.evaluation.curves or {}).get("val_curve")
    if val:
        curves[f"search (evaluation {row.evaluation.id})"] = val
    for seed, values in ((row.record.curves or {}) if row.record else {}).items():
        curves[f"confirmed, seed {seed}"] = values
    if not curves:
        return None
    baselines = {f"{n} (run's budget)": c for n, c in (run.baselines.curves if run.baselines else {}).items()}
    return curves_svg(f"rank {row.rank}: {row.evaluation.rule}", curves, baselines)


def _counts(runs: Sequence[RunData]) -> str:
    statuses = [s for s in STATUSES if s != "pending" or any(r.counts["pending"] for r in runs)]
    rows = [[(_e(r.label), False), *((str(r.counts[s]), True) for s in statuses),
             (str(sum(r.counts.values())), True)] for r in runs]
    return _table(["run", *(STATUS_LABELS[s] for s in statuses), "samples"], rows,
                  "invalid and duplicate samples cost no training")


def _run_section(run: RunData) -> str:
    parts = [f"<h2>{_e(run.label)}: best rules</h2>",
             f"<p class=muted>run {_e(run.run_id)}, task {_e(run.task)}, {_e(run.run_dir)}</p>"]
    if run.baselines is not None:
        said = ", ".join(f"{n} {v:.3f}" for n, v in run.baselines.rewards.items())
        parts.append(f"<p>Baselines at the run's budget (seed {run.baselines.seed}): {_e(said)}</p>")
    if run.funnel:
        parts.append(f"<p>Funnel: rules that completed each stage ({_e(reached(run.funnel))}); the best "
                     "rules are ranked by the highest stage they completed, then their score there.</p>")
        for stage, scores in sorted(run.stage_baselines.items()):
            said = ", ".join(f"{n} {v:.3f}" for n, v in scores.items())
            parts.append(f"<p>Baselines at stage {stage}: {_e(said)}</p>")
    parts.append(_best_rules(run) if run.top else "<p>No rule trained ok yet.</p>")
    for row in run.top:
        figure = _rule_curves(run, row)
        if figure:
            parts.append(f"<figure>{figure}</figure>")
    return "\n".join(parts)


def run_page(runs: Sequence[RunData], title: str | None = None) -> str:
    """The report of one or more runs (module docstring)."""
    title = title or ("nos report: " + ", ".join(r.run_dir.name for r in runs))
    when = datetime.datetime.now().isoformat(timespec="seconds")
    listing = "".join(f"<li>{_e(r.label)}: run {_e(r.run_id)}, task {_e(r.task)}, {_e(r.run_dir)}</li>"
                      for r in runs)
    body = [f"<p class=muted>generated {_e(when)}</p><ul>{listing}</ul>",
            "<h2>Status of the samples</h2>", _counts(runs),
            "<h2>Search progress</h2>", f"<figure>{progress_svg(runs)}</figure>"]
    updates = updates_svg(runs)
    body += ["<h2>Controller metrics over updates</h2>",
             f"<figure>{updates}</figure>" if updates else "<p>No controller update recorded.</p>"]
    body += [_run_section(r) for r in runs]
    return _page(title, "\n".join(body))


def _transfer(rec: RuleRecord) -> str:
    if not rec.transfer:
        return "<p class=muted>No transfer results (nos transfer NAME --task T adds them).</p>"
    parts = []
    for task, rows in rec.transfer.items():
        cells = [[(f"<b>{_e(r.get('name'))}</b>" if r.get("name") == rec.name else _e(r.get("name")), False),
                  (_e(f"{r['mean']:.3f} ± {r['std']:.3f}") if isinstance(r.get("mean"), int | float)
                   and isinstance(r.get("std"), int | float) else "-", True)] for r in rows]
        parts.append(_table(["optimizer", "reward (mean ± std)"], cells, f"transfer to {task}"))
    return "".join(parts)


def _panel(rec: RuleRecord) -> str:
    """The record's held-out transfer panel (search.results.panel): per task the rule's metric, the best
    baseline's, gain, z and win/tie/loss, and the summary; the record's data is read defensively."""
    panel = rec.panel
    if not isinstance(panel, dict) or not isinstance(panel.get("tasks"), dict):
        return "<p class=muted>No panel (nos transfer NAME --panel adds it).</p>"
    rows = []
    for task, cell in panel["tasks"].items():
        cell = cell if isinstance(cell, dict) else {}
        means = cell.get("means") if isinstance(cell.get("means"), dict) else {}
        best = cell.get("best_baseline")
        higher = cell.get("higher_is_better")
        word = {"win": "<span class=yes>W</span>", "loss": "<span class=no>L</span>"}.get(
            cell.get("outcome"), _e("T" if cell.get("outcome") == "tie" else "-"))
        rows.append([(_e(task), False),
                     (_e(f"{cell.get('metric', '?')} ({'higher' if higher else 'lower'} is better)"), False),
                     (_e(_num(_number(means.get(cell.get("rule"))), 4)), True),
                     (_e(f"{best} {_num(_number(means.get(best)), 4)}"), False),
                     (_e(_signed(cell.get("gain"))), True), (_e(_num(_number(cell.get("z")), 1)), True),
                     (word, False), (_e(_signed(cell.get("normalised_gain"))), True)])
    summary = panel.get("summary") if isinstance(panel.get("summary"), dict) else {}
    seeds = panel.get("seeds") if isinstance(panel.get("seeds"), list) else []
    caption = (f"held-out transfer panel ({panel.get('date', '?')}, {len(seeds)} seeds, against tuned "
               f"{', '.join(map(str, panel.get('baselines') or []))}): {_panel_summary(summary)}")
    skipped = panel.get("skipped") if isinstance(panel.get("skipped"), dict) else {}
    note = (f"<p class=muted>skipped: {_e('; '.join(f'{k}: {v}' for k, v in skipped.items()))}</p>"
            if skipped else "")
    header = ["task", "metric", rec.name, "best baseline", "gain", "z", "W/T/L", "normalised gain"]
    return _table(header, rows, caption) + note


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _signed(value: object) -> str:
    number = _number(value)
    return "-" if number is None else f"{number:+.3g}"


def _panel_summary(summary: dict) -> str:
    """W/T/L against each task's best baseline, wins - losses, the mean normalised gain; '-' when none."""
    if not summary:
        return "-"
    return (f"{summary.get('wins', '?')} W / {summary.get('ties', '?')} T / {summary.get('losses', '?')} L, "
            f"wins - losses {summary.get('wins_minus_losses', '?')}, mean normalised gain "
            f"{_signed(summary.get('mean_normalised_gain'))}")


def _record_section(rec: RuleRecord) -> str:
    formula, latex = rule_forms(rec.rule)
    facts = [("rule", f"<code>{_e(rec.rule)}</code>"), ("formula", formula_cell(formula, latex)),
             ("source", _e(f"{rec.source}, run {rec.run_id or '-'}, task {rec.task or '-'}, "
                           f"{rec.date.isoformat()}")),
             ("hyper-constants", _e(", ".join(f"{k}={v:g}" for k, v in rec.hyper.items()) or "none")),
             ("confirmation", confirmation_cell(rec)), ("against the best baseline", verdict_cell(rec))]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in facts)
    parts = [f"<h2>{_e(rec.name)}</h2><table><tbody>{rows}</tbody></table>", _transfer(rec), _panel(rec)]
    if rec.curves:
        parts.append("<figure>" + curves_svg(f"{rec.name} on {rec.task}", {f"seed {s}": c for s, c in
                                             rec.curves.items()}, {}) + "</figure>")
    return "\n".join(parts)


def library_page(records: Sequence[RuleRecord], folder: str) -> str:
    """The discovered-rules library: every record, where it came from, its confirmation, transfers and
    held-out panel."""
    when = datetime.datetime.now().isoformat(timespec="seconds")
    summary = [[(_e(r.name), False), (f"<code class=rule>{_e(r.rule)}</code>", False),
                (_e(r.task or "-"), False),
                (_e(_pm(list(r.rewards.values()))), True), (verdict_cell(r), False),
                (_e(", ".join(r.transfer or {}) or "-"), False),
                (_e(_panel_summary(r.panel.get("summary") or {}) if isinstance(r.panel, dict) else "-"),
                 False)] for r in records]
    header = ["name", "rule", "task", "confirmed reward", "against the best baseline", "transferred to",
              "held-out panel"]
    body = [f"<p class=muted>generated {_e(when)} from {_e(folder)}</p>",
            _table(header, summary) if records else
            "<p>No discovered rules yet (nos rules export RUN_DIR).</p>"]
    body += [_record_section(r) for r in records]
    return _page("nos report: discovered rules", "\n".join(body))
