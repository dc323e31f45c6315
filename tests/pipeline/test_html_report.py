"""The HTML report: `ValidateOptions.report` against the fake API over loopback, complete and
stopped early, its every figure compared with the run's Summary and with the output file;
self-contained (no network, no script); everything user-provided escaped."""

from __future__ import annotations

import collections
import dataclasses
import html
from pathlib import Path

import pytest
from helpers import FAST_RETRY, KEY, FakeInThread, lead_rows, read_csv, write_leads
from report_page import assert_matches_summary, assert_self_contained, read_report

import ample_batch
from ample_batch import ApiOptions, InputError, Stopped, ValidateOptions
from ample_batch.api.retries import RetryPolicy
from ample_batch.jobs.records import Batch, BatchState, Job, Progress
from ample_batch.limits import Limit
from ample_batch.pipeline.html_report import render, write_run_report
from ample_batch.pipeline.report_data import TOP_DOMAINS, per_hour, report_data

LIMIT = Limit(1000, 1.0)  # three batches of the 2400 emails: two waits for the window


def _options(
    fake: FakeInThread, src: Path, state: Path, *, retry: RetryPolicy | None = None, **kw: object
) -> ValidateOptions:
    api = ApiOptions(api_key=KEY, base_url=fake.url, usage_limit=LIMIT)
    if retry is not None:
        api = dataclasses.replace(api, retry=retry)
    return ValidateOptions(input=src, state_dir=state, api=api, **kw)  # type: ignore[arg-type]


def _expected_domains(output: Path) -> tuple[list[tuple[str, int, int]], ...]:
    """The domain tables worked out from the output file alone: per unique address."""
    verdicts: dict[str, tuple[str, str]] = {}
    for row in read_csv(output):
        email = row["Email"].strip().lower()
        if row["email_result"] not in ("no_email", "invalid_syntax", "pending"):
            verdicts[email] = (row["email_result"], row["email_catch_all"])
    total = collections.Counter(e.rpartition("@")[2] for e in verdicts)
    bad = collections.Counter(
        e.rpartition("@")[2] for e, (r, _) in verdicts.items() if r == "undeliverable"
    )
    catch = collections.Counter(
        e.rpartition("@")[2] for e, (_, c) in verdicts.items() if c == "true"
    )

    def top(counts: collections.Counter[str]) -> list[tuple[str, int, int]]:
        best = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP_DOMAINS]
        return [(domain, count, total[domain]) for domain, count in best]

    return top(bad), top(catch)


def test_a_complete_run_reports_the_summarys_figures(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(2400, blanks=6, invalid=4))
    path = tmp_path / "leads.report.html"
    with FakeInThread(retry_after=0.1, emails_per_second=50000, usage_limit=LIMIT) as fake:
        # FAST_RETRY: the first poll of each batch after 0.05 s, not the default 1 s.
        options = _options(fake, src, tmp_path / "s", retry=FAST_RETRY, report=path)
        summary = ample_batch.validate(options)
        charged = fake.summary().credits_spent

    assert summary.complete and summary.report == str(path.absolute())
    assert summary.usage_limit == "1000/1s"
    page = read_report(path)
    assert_self_contained(page)
    assert_matches_summary(page, summary.as_dict())
    assert page.banners == []  # no partial or simulated banner
    # One clean run: the timeline holds exactly what was bought, under the limit's line.
    assert page.figures["submitted"] == summary.credits_spent == charged == 2400
    assert page.figures["limit_per_hour"] == per_hour(LIMIT) == 3_600_000
    assert (page.undeliverable, page.catch_all) == _expected_domains(Path(summary.output))
    assert len(page.undeliverable) == TOP_DOMAINS
    assert KEY not in page.text
    # A report that cannot be written at the end is a sentence for the warnings, not a failure.
    gone = tmp_path / "gone" / "r.html"
    problem = write_run_report(tmp_path / "s", summary.job, gone, summary.as_dict(), "done")
    assert problem is not None and problem.startswith(f"could not write the report to {gone}: ")


def test_a_stopped_run_reports_its_progress_and_says_partial(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(1000, blanks=3))
    path = tmp_path / "r.html"
    with FakeInThread(retry_after=0.2, emails_per_second=200) as fake:
        options = _options(fake, src, tmp_path / "s", report=path, max_runtime=1.0)
        with pytest.raises(Stopped) as stopped:
            ample_batch.validate(options)
    summary = stopped.value.summary  # type: ignore[attr-defined]
    assert not summary.complete and summary.remaining > 0
    assert summary.report == str(path.absolute())
    page = read_report(path)
    assert_self_contained(page)
    assert page.banners == ["partial"]
    assert "Partial" in page.text
    assert_matches_summary(page, summary.as_dict())
    assert page.verdicts.get("pending", 0) > 0
    assert (page.undeliverable, page.catch_all) == _expected_domains(Path(summary.output))


@pytest.mark.parametrize("name", ["r.csv", "missing/r.html", "."])
def test_a_bad_report_path_is_refused_before_anything_is_spent(tmp_path: Path, name: str) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(20))
    with FakeInThread(retry_after=0.1) as fake:
        with pytest.raises(InputError, match=r"^report="):  # the keyword, in Python
            ample_batch.validate(_options(fake, src, tmp_path / "s", report=tmp_path / name))
        assert fake.summary().requests == 0
    assert not (tmp_path / "r.csv").exists()


def _job(**stats: object) -> Job:
    return Job("3f9a00000000", "/in/<b>leads</b>.csv", "fp", "E<mail>", None, 0.0, 0.0, 0.0,
               "done", dict(stats), 0)  # fmt: skip


def _batch(at: float | None, size: int, source: str = "api", state: str = "done") -> Batch:
    return Batch(1, "j", source, BatchState(state), 1, size, None, None, None, None, None, at, None)


def test_user_provided_text_is_escaped() -> None:
    hostile = '<script>alert("x")</script>.io'
    verdicts = [(f"a{i}@{hostile}", "undeliverable", True) for i in range(3)]
    verdicts.append(("b@\"onload='x'.io", "undeliverable", False))
    summary = {
        "input": "/in/<img src=x onerror=alert(1)>.csv", "output": "/out/<i>.csv", "rows": 4,
        "unique_emails": 4, "cached": 0, "invalid": 0, "blank": 0, "duplicates": 0,
        "credits_spent": 4, "remaining": 0, "failed": 0, "possible_double_charges": 0,
        "verdicts": {"undeliverable": 4}, "complete": True,
        "warnings": ["<script>bad()</script>"], "usage_limit": "15000/1h",
    }  # fmt: skip
    data = report_data(_job(), summary, [_batch(7200.0, 4)], verdicts, now=0.0)
    page_text = render(data)
    assert "<script" not in page_text and "<img" not in page_text and "<i>" not in page_text
    assert html.escape(hostile) in page_text
    from report_page import ReportPage

    page = ReportPage(page_text)
    assert_self_contained(page)
    assert page.undeliverable == [(hostile, 3, 3), ("\"onload='x'.io", 1, 1)]
    assert page.catch_all == [(hostile, 3, 3)]
    assert "<script>bad()</script>" in page.texts  # shown as text, never run
    assert page.figures["limit_per_hour"] == 15000


def test_the_timeline_keeps_idle_hours_and_counts_only_what_was_sent() -> None:
    batches = [
        _batch(3 * 3600 + 10, 100),
        _batch(3 * 3600 + 3599, 50),
        _batch(6 * 3600 + 1, 25),
        _batch(None, 1000, source="cache"),  # cache hits cost nothing and were never sent
        _batch(4 * 3600, 999, state="planned"),  # refused, back in the plan
        _batch(4 * 3600, 999, source="adopted", state="done"),  # another job bought them
    ]
    data = report_data(_job(usage_limit="15000/1h"), None, batches, [], now=0.0)
    assert [(h.start / 3600, h.emails) for h in data.hours] == [
        (3, 150), (4, 0), (5, 0), (6, 25)
    ]  # fmt: skip
    page_text = render(data)
    assert 'data-emails="0"' in page_text


def test_a_job_with_no_finished_run_reports_from_the_store() -> None:
    verdicts = [("a@x.io", "deliverable", False), ("b@x.io", "risky", True)]
    progress = Progress(emails=5, resolved=2, cached=1, failed=0, batches={})
    data = report_data(
        _job(run={"emails_per_second": 1.0}), None, [], verdicts, state="new", progress=progress
    )
    assert data.verdict_unit == "unique emails"
    assert data.verdicts == {"deliverable": 1, "risky": 1}
    assert data.usage_limit == Limit(3600, 3600.0)
    assert {f.key: f.value for f in data.credits} == {"cached": 1, "validated": 1, "pending": 3}
    page_text = render(data)
    assert "No run of this job has finished yet" in page_text
