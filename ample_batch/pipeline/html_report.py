"""A job's report as one self-contained HTML page: to open, print, or mail to a manager.

No network and no external assets: the styles are inline CSS and the charts inline SVG
(report_charts.py); there is no script. Every text that comes from the user (file names,
columns, domains) is escaped. The figures come from `report_data.ReportData`, which takes
them from the run's summary, so the page says what the summary says.

    report(state_dir, Path("leads.report.html"))          # the most recent job
    report(state_dir, Path("leads.report.html"), "3f9a")  # a job by id prefix
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import AmpleBatchError, InputError, PathRefused
from ..jobs.backend import State, Where, as_state, has_store
from .jobs import job_statuses
from .report_charts import (
    e,
    hour_label,
    number,
    percent,
    row_bar,
    timeline_chart,
    verdict_chart,
)
from .report_data import DomainCount, ReportData, load_report_data, per_hour
from .writable import Written, check_distinct, check_writable

SUFFIXES = (".html", ".htm")

COLOURS = {
    "deliverable": "#2e7d32",
    "risky": "#f9a825",
    "unknown": "#78909c",
    "undeliverable": "#c62828",
    "invalid_syntax": "#6a1b9a",
    "no_email": "#bdbdbd",
    "failed": "#4e342e",
    "pending": "#1565c0",
}
"""Each verdict's colour; the order here is the chart's order (others follow, by name)."""

STATE_NOTES = {
    "done": "",
    "partial": "Partial: the job stopped before every email had a verdict. The figures are "
    "its progress so far; run the same command again to resume.",
    "canceled": "Canceled: the job's validations were canceled. The figures are its progress "
    "so far; running validate again submits the rest.",
    "running": "In progress: a run of this job is going on now. The figures are those of its "
    "last finished run.",
    "stopped": "Stopped: the last run of this job died without recording how far it got "
    "(killed, or interrupted twice). The figures are those of its last finished run, if any; "
    "run the same command again to resume.",
    "new": "No run of this job has finished yet: the figures come from the state database.",
}

CSS = """
:root { color-scheme: light; --muted: #5f6b76; --line: #d9dee3; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1d2329; background: #f5f7f9; }
main { max-width: 980px; margin: 0 auto; padding: 24px 20px 40px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 10px; }
section, header { background: #fff; border: 1px solid var(--line); border-radius: 8px;
  padding: 16px 20px; margin-bottom: 16px; }
.sub, .muted, .note { color: var(--muted); }
.banner { background: #fff4e5; border: 1px solid #f0c36d; border-radius: 6px;
  padding: 8px 12px; margin-top: 12px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px;
  background: none; border: 0; padding: 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
.card .big { font-size: 26px; font-weight: 600; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 20px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
  vertical-align: middle; }
th { font-weight: 600; color: var(--muted); font-size: 13px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.domain { overflow-wrap: anywhere; }
svg.chart { width: 100%; height: auto; display: block; font-size: 13px; }
svg.chart text { fill: #1d2329; }
svg.chart .muted { fill: var(--muted); }
svg .axis { stroke: #9aa5af; }
svg .hour { fill: #1565c0; }
svg .limit { stroke: #c62828; stroke-width: 1.5; stroke-dasharray: 6 4; }
svg.chart .limit-text { fill: #c62828; }
svg.rowbar { width: 160px; height: 12px; display: block; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dt { color: var(--muted); } dd { margin: 0; overflow-wrap: anywhere; }
details summary { cursor: pointer; color: var(--muted); margin-top: 8px; }
footer { color: var(--muted); font-size: 13px; text-align: center; }
@media print { body { background: #fff; } section, header { break-inside: avoid; } }
"""


def check_report_name(path: Path, option: str = "--report") -> None:
    """PathRefused unless `path` is an .html name; `option` is how the message names the
    path (`-o` or `--output` for `ample-batch report`). `check_writable` comes after."""
    if path.absolute().suffix.lower() not in SUFFIXES:
        # Also keeps a slip like `--report leads.csv` from replacing the lead list.
        raise PathRefused(f"{option} {path}: give a file name ending in .html", path=path)


def report(
    state_dir: Where,
    output: Path,
    job: str | None = None,
    *,
    simulate: bool = False,
    option: str = "output",
) -> str:
    """Write the HTML report of `job` (an id prefix; the most recent job when None) to
    `output`; returns the job's id. `state_dir` is a state dir or a `State` (a PostgreSQL
    one too); `simulate`: a job of a --simulate run (they keep a store of their own);
    `option`: how a refusal names `output` (the CLI passes the `-o` or `--output` typed).
    InputError for an unknown job or a bad path (PathRefused over the state's own files).

        report(Path("state"), Path("leads.report.html"))    # the most recent job's id
    """
    check_report_name(output, option)
    state = as_state(state_dir)
    # The page goes nowhere near the state: a slip must not replace the job database.
    check_distinct([Written(output, option)], state_dir=None if state.shared else state.dir)
    check_writable(option, output)
    where = state.for_mode(simulate)
    found = job_statuses(where, job)
    if not found:
        hint = (
            " (or add --simulate for a --simulate run's job)"
            if not simulate and _has_simulated_store(state)
            else ""
        )
        kind = "state database" if where.shared else "state dir"
        raise InputError(
            f"no jobs in the {kind} {where.where()}: run `ample-batch validate` first{hint}"
        )
    chosen = found[0]  # `status` lists the most recently updated job first
    # As `status` shows it: a job whose runs were all killed is `stopped`, no longer `new`.
    data = load_report_data(where, chosen.job.id, state=chosen.job.state)
    write_html(output, render(data))
    return chosen.job.id


def write_run_report(
    state_dir: Where, job_id: str, output: Path, summary: dict[str, Any], state: str
) -> str | None:
    """The report a validate run writes on itself as it ends (`--report`); the problem as a
    sentence if it could not be written (the run's outcome stands: its verdicts are safe)."""
    try:
        data = load_report_data(state_dir, job_id, summary=summary, state=state)
        write_html(output, render(data))
    except (OSError, AmpleBatchError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"could not write the report to {output}: {reason}"
    return None


def write_html(path: Path, text: str) -> None:
    """Write the page atomically (temp file + rename): a reader never sees half a report."""
    where = path.absolute()
    fd, temp = tempfile.mkstemp(dir=where.parent, prefix=f".{where.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private; a report gets the mode any new file would.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, where)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def render(data: ReportData) -> str:
    """The whole page."""
    name = Path(data.input).name
    body = "".join(
        [
            _header(data, name),
            _cards(data),
            _verdicts(data),
            _credits(data),
            _domains(data),
            _timeline(data),
            _details(data),
        ]
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Email validation report: {e(name)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}<footer>Written by ample-batch {e(_version())} on "
        f"{e(_when(data.generated_at))}.</footer></main></body></html>\n"
    )


def _header(data: ReportData, name: str) -> str:
    note = STATE_NOTES.get(data.state, "")
    if data.state == "running" and data.summary is None:
        note = "In progress: a run of this job is going on now, and none has finished yet: "
        note += "the figures come from the state database."
    elif data.state == "stopped" and data.summary is None:
        note = "Stopped: the only runs of this job died without recording how far they got "
        note += "(killed, or interrupted twice): the figures come from the state database; "
        note += "run the same command again to resume."
    banners = [(data.state, note)]
    if data.simulated:
        banners.append(
            ("simulated", "Simulated run (--simulate): the verdicts are made up, no credit spent.")
        )
    notes = "".join(
        f'<p class="banner" data-banner="{e(kind)}">{e(text)}</p>' for kind, text in banners if text
    )
    return (
        f"<header><h1>Email validation report</h1>"
        f'<p class="sub">{e(name)} · column {e(data.email_column)} · job {e(data.job)}</p>'
        f"{notes}</header>"
    )


def _cards(data: ReportData) -> str:
    summary = data.summary or {}
    total = sum(data.verdicts.values())
    cards = []
    if "rows" in summary:
        cards.append(_card("rows", "rows", number(int(summary["rows"]))))
        cards.append(_card("unique_emails", "unique emails", number(int(summary["unique_emails"]))))
    deliverable = data.verdicts.get("deliverable", 0)
    cards.append(
        _card(
            "deliverable",
            f"deliverable ({data.verdict_unit})",
            number(deliverable),
            percent(deliverable, total),
        )
    )
    if data.credits:
        first = data.credits[0]
        cards.append(_card(first.key, first.label, number(first.value), first.note))
    return f'<section class="cards">{"".join(cards)}</section>'


def _card(key: str, label: str, value: str, note: str = "") -> str:
    extra = f'<div class="note">{e(note)}</div>' if note else ""
    return (
        f'<div class="card"><div class="muted">{e(label)}</div>'
        f'<div class="big" data-card="{e(key)}">{e(value)}</div>{extra}</div>'
    )


def _ordered(verdicts: dict[str, int]) -> list[tuple[str, int]]:
    known = [(k, verdicts[k]) for k in COLOURS if k in verdicts]
    return known + sorted((k, v) for k, v in verdicts.items() if k not in COLOURS)


def _verdicts(data: ReportData) -> str:
    total = sum(data.verdicts.values())
    bars = [
        (k, k.replace("_", " "), v, COLOURS.get(k, "#90a4ae")) for k, v in _ordered(data.verdicts)
    ]
    chart = verdict_chart(bars, total=total) if bars else '<p class="muted">No verdicts yet.</p>'
    unit = (
        "Rows of the output by <code>email_result</code> (an email in many rows counts on each)."
        if data.verdict_unit == "rows"
        else "Unique emails by verdict, as the state database holds them."
    )
    return (
        f'<section><h2>Verdicts</h2><p class="muted">{unit} Total: '
        f'<span data-figure="verdicts_total">{number(total)}</span>.</p>{chart}</section>'
    )


def _credits(data: ReportData) -> str:
    if not data.credits:
        return ""
    top = max(f.value for f in data.credits) or 1
    rows = "".join(
        f'<tr><td>{e(f.label)}</td><td class="num" data-figure="{e(f.key)}">{number(f.value)}'
        f"</td><td>{row_bar(f.value, top, '#1565c0' if i == 0 else '#90a4ae')}</td>"
        f'<td class="muted">{e(f.note)}</td></tr>'
        for i, f in enumerate(data.credits)
    )
    return (
        "<section><h2>Where the credits went</h2>"
        '<p class="muted">Only bought emails cost a credit; everything else was free.</p>'
        '<table><thead><tr><th>what</th><th class="num">emails</th><th></th><th></th></tr>'
        f"</thead><tbody>{rows}</tbody></table></section>"
    )


def _domain_table(title: str, kind: str, items: list[DomainCount]) -> str:
    if not items:
        return f'<div><h3>{e(title)}</h3><p class="muted">None.</p></div>'
    # The second count is all the domain's addresses in the job, to read the first against.
    rows = "".join(
        f'<tr data-{kind}="{e(d.domain)}"><td class="domain">{e(d.domain)}</td>'
        f'<td class="num">{number(d.count)}</td><td class="num">{number(d.addresses)}</td></tr>'
        for d in items
    )
    return (
        f"<div><h3>{e(title)}</h3><table><thead><tr><th>domain</th>"
        f'<th class="num">{e(kind)}</th><th class="num">of all</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


def _domains(data: ReportData) -> str:
    return (
        "<section><h2>Domains</h2>"
        '<p class="muted">Unique addresses per domain: the domains with the most '
        "undeliverable ones (worth cleaning at the source) and the most catch-all ones (the "
        "server accepts any address, so deliverable there is a guess).</p>"
        '<div class="grid">'
        + _domain_table("Most undeliverable", "undeliverable", data.undeliverable_domains)
        + _domain_table("Most catch-all", "catch-all", data.catch_all_domains)
        + "</div></section>"
    )


def _timeline(data: ReportData) -> str:
    if not data.hours:
        return (
            "<section><h2>Timeline</h2>"
            '<p class="muted">Nothing was submitted to the API for this job.</p></section>'
        )
    limit = data.usage_limit
    chart = timeline_chart(data.hours, per_hour(limit) if limit else None, str(limit or ""))
    rows = "".join(
        f'<tr><td>{e(hour_label(h.start))}</td><td class="num" data-hour-start="{h.start:.0f}">'
        f"{number(h.emails)}</td></tr>"
        for h in data.hours
    )
    limit_note = (
        f"The usage limit is {e(limit)}."
        if limit
        else "The usage limit the job ran under is not recorded."
    )
    return (
        "<section><h2>Timeline</h2>"
        f'<p class="muted">Emails submitted per clock hour, over every run of the job: '
        f'<span data-figure="submitted">{number(data.submitted)}</span> in all. {limit_note}'
        f"</p>{chart}<details><summary>Hour by hour</summary><table><thead><tr><th>hour</th>"
        f'<th class="num">emails</th></tr></thead><tbody>{rows}</tbody></table></details>'
        "</section>"
    )


def _details(data: ReportData) -> str:
    summary = data.summary or {}
    items: list[tuple[str, str]] = [
        ("job", data.job),
        ("state", data.state),
        ("input", data.input),
        ("email column", data.email_column),
        ("output", data.output or "none yet"),
    ]
    if summary.get("stop_reason"):
        items.append(("stopped because", str(summary["stop_reason"])))
    if "elapsed_seconds" in summary:
        items.append(("last run took", f"{float(summary['elapsed_seconds']):,.1f} s"))
    if data.usage_limit is not None:
        items.append(("usage limit", str(data.usage_limit)))
    items.append(("report written", _when(data.generated_at)))
    listing = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in items)
    warnings = "".join(f"<li>{e(w)}</li>" for w in data.warnings)
    warned = f"<h3>Warnings</h3><ul>{warnings}</ul>" if warnings else ""
    return f"<section><h2>Details</h2><dl>{listing}</dl>{warned}</section>"


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _version() -> str:
    try:
        return importlib.metadata.version("ample-batch")
    except importlib.metadata.PackageNotFoundError:
        return "(development)"


def _has_simulated_store(state: State) -> bool:
    """Whether `--simulate` runs left jobs beside `state`; a schema too long to have a
    simulated twin has none (that is no error of a command run without --simulate)."""
    try:
        return has_store(state.for_mode(True))
    except InputError:
        return False
