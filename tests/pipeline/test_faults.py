"""Faults, through the CLI, against the fake API's fault switches: every valid row still gets
its verdict (or `failed`, only after the retry budget), every limit holds, no traceback.

The matrix and a representative few (errored batches, credits running out) also run on
PostgreSQL state (`state_backend`); the rest are about the client and the engine, the same
on either backend."""

from __future__ import annotations

import json
from pathlib import Path

from cli_backends import StateBackend
from helpers import FakeInThread, cli, expected_result, lead_rows, read_csv, write_leads

from ample_batch.limits import parse_limit

USAGE, RATE = "1000/1s", "100/1s"


def run(fake: FakeInThread, src: Path, tmp_path: Path, *extra: str):
    return cli(
        "validate",
        str(src),
        "--base-url",
        fake.url,
        "--state-dir",
        str(tmp_path / "state"),
        "--usage-limit",
        USAGE,
        "--rate-limit",
        RATE,
        "--summary-json",
        str(tmp_path / "summary.json"),
        *extra,
    )


def test_fault_matrix(tmp_path: Path, state_backend: StateBackend) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(3000, blanks=10, invalid=10))
    faults = {
        "fail_5xx": 0.08,
        "drop": 0.03,
        "spurious_429": 0.05,
        "batch_error": 0.15,
        "upper_case_results": True,
        "latency": 0.01,
    }
    with FakeInThread(
        retry_after=0.2,
        emails_per_second=20000,
        usage_limit=parse_limit(USAGE),
        rate_limit=parse_limit(RATE),
        seed=7,
        **faults,
    ) as fake:
        done = run(fake, src, tmp_path, "-v", *state_backend.args)
        summary = fake.summary()
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "state").exists() is (state_backend.url is None)
    assert "Traceback" not in done.stderr + done.stdout
    assert summary.usage_limited == 0
    assert summary.rate_limited == 0
    assert summary.peak_emails_in_window <= 1000
    assert summary.early_polls == 0
    rows = read_csv(tmp_path / "leads.validated.csv")
    failed = 0
    for row in rows:
        expected = expected_result(row["Email"], seed=7)
        if row["email_result"] == "failed":
            failed += 1
            assert expected[0] not in ("no_email", "invalid_syntax")
            continue
        assert (row["email_result"], row["email_catch_all"]) == expected
    run_summary = json.loads((tmp_path / "summary.json").read_text())
    assert run_summary["failed"] == len(
        {r["Email"].strip().lower() for r in rows if r["email_result"] == "failed"}
    )
    # Only a batch that errored three times leaves `failed` rows: rare at 15% per attempt.
    assert failed <= 0.05 * len(rows)
    # A dropped POST may have been accepted: resent, and reported, never hidden.
    assert run_summary["possible_double_charges"] >= summary.emails_charged_twice


def test_long_queue_http_date_retry_after_and_skewed_server_clock(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(300))
    with FakeInThread(
        queue_seconds=2.5, retry_after=1, retry_after_http_date=True, clock_skew=1.0
    ) as fake:
        done = run(fake, src, tmp_path)
        summary = fake.summary()
    assert done.returncode == 0, done.stderr
    assert summary.early_polls == 0
    assert summary.credits_spent == 300
    rows = read_csv(tmp_path / "leads.validated.csv")
    assert all(
        (r["email_result"], r["email_catch_all"]) == expected_result(r["Email"]) for r in rows
    )


def test_every_batch_erroring_ends_failed_after_three_attempts(
    tmp_path: Path, state_backend: StateBackend
) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(200, blanks=1))
    with FakeInThread(retry_after=0.1, batch_error=1.0) as fake:
        done = run(fake, src, tmp_path, *state_backend.args)
        posts = sum(1 for r in fake.api.log if r.method == "POST")
        charged_twice = fake.summary().emails_charged_twice
    assert done.returncode == 0, done.stderr
    assert posts == 3
    assert charged_twice == 0
    results = {r["email_result"] for r in read_csv(tmp_path / "leads.validated.csv")}
    # The fake processes half of each errored batch: those verdicts are kept, never re-bought.
    assert "failed" in results and "no_email" in results
    assert json.loads((tmp_path / "summary.json").read_text())["failed"] == 25


def test_an_email_the_api_refuses_is_written_invalid_syntax_and_the_rest_resent(
    tmp_path: Path,
) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(50))
    refused = {"lead000003@company3.com", "lead000010@company10.com"}
    with FakeInThread(retry_after=0.1, rejects=frozenset(refused)) as fake:
        done = run(fake, src, tmp_path)
        posts = [r.status for r in fake.api.log if r.method == "POST"]
        summary = fake.summary()
    assert done.returncode == 0, done.stderr
    assert posts == [400, 202]  # one refusal naming both emails, then one resend without them
    assert summary.credits_spent == 48
    written = read_csv(tmp_path / "leads.validated.csv")
    for row in written:
        if row["Email"].strip().lower() in refused:  # both spellings of lead 10 too
            assert (row["email_result"], row["email_catch_all"]) == ("invalid_syntax", "")
        else:
            assert (row["email_result"], row["email_catch_all"]) == expected_result(row["Email"])
    # The summary counts the rows as written: "invalid syntax 0" beside a row
    # `invalid_syntax` was two counts of one output disagreeing.
    invalid_rows = sum(row["email_result"] == "invalid_syntax" for row in written)
    stats = json.loads((tmp_path / "summary.json").read_text())
    assert stats["invalid"] == stats["verdicts"]["invalid_syntax"] == invalid_rows >= 2
    assert stats["refused"] == invalid_rows  # lead_rows has no row of bad syntax of its own
    assert "refused by the API" in done.stdout + done.stderr


def test_retries_are_not_logged_to_the_user(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(50))
    # Seed 1 answers the very first request (the key check) with a 429, so a retry happens.
    with FakeInThread(retry_after=0.1, spurious_429=0.3, seed=1) as fake:
        done = run(fake, src, tmp_path)
        summary = fake.summary()
    assert done.returncode == 0, done.stderr
    assert summary.requests_by_flag["spurious_429"] >= 1
    # stamina logs every retry it schedules; the CLI keeps those lines off the user's stderr.
    assert "stamina" not in done.stderr
    assert "retry_scheduled" not in done.stderr


def test_a_402_on_a_poll_exits_4_with_the_partial_output(
    tmp_path: Path, state_backend: StateBackend
) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(50))
    with FakeInThread(retry_after=0.1, get_fault=402) as fake:
        done = run(fake, src, tmp_path, *state_backend.args)
    assert done.returncode == 4, done.stderr
    assert "Traceback" not in done.stderr
    assert "out of email credits" in done.stderr
    partial = read_csv(tmp_path / "leads.validated.partial.csv")
    assert {r["email_result"] for r in partial} == {"pending"}
    assert json.loads((tmp_path / "summary.json").read_text())["complete"] is False


def test_credits_left_are_used_by_smaller_batches_then_exit_4(
    tmp_path: Path, state_backend: StateBackend
) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(478))
    with FakeInThread(retry_after=0.1, credits=300) as fake:
        done = run(fake, src, tmp_path, *state_backend.args)
        summary = fake.summary()
    assert done.returncode == 4, done.stderr
    assert summary.credits_spent == 300
    partial = read_csv(tmp_path / "leads.validated.partial.csv")
    validated = {r["Email"].strip().lower() for r in partial if r["email_result"] != "pending"}
    assert len(validated) == 300
    for row in partial:
        if row["email_result"] != "pending":
            assert (row["email_result"], row["email_catch_all"]) == expected_result(row["Email"])


def test_a_server_usage_limit_below_ours_is_cut_smaller_not_failed(tmp_path: Path) -> None:
    # The account allows 500 per window; we were told 1000: "exceeds the usage limit" (400).
    src = write_leads(tmp_path / "leads.csv", lead_rows(1500))
    with FakeInThread(retry_after=0.1, usage_limit=parse_limit("500/1s")) as fake:
        done = run(fake, src, tmp_path)
        statuses = [r.status for r in fake.api.log if r.method == "POST"]
    assert done.returncode == 0, done.stderr
    assert statuses[0] == 400
    rows = read_csv(tmp_path / "leads.validated.csv")
    assert all(
        (r["email_result"], r["email_catch_all"]) == expected_result(r["Email"]) for r in rows
    )


def test_emails_the_api_refused_are_remembered_across_stops(
    tmp_path: Path, state_backend: StateBackend
) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(50))
    refused = {"lead000003@company3.com"}
    with FakeInThread(retry_after=0.1, rejects=frozenset(refused), credits=0) as fake:
        first = run(fake, src, tmp_path, *state_backend.args)
        assert first.returncode == 4, first.stderr
        seen = len(fake.api.log)
        fake.add_credits(100)
        second = run(fake, src, tmp_path, *state_backend.args)
        again = [r.status for r in fake.api.log[seen:] if r.method == "POST"]
    assert second.returncode == 0, second.stderr
    assert again == [202]  # the rerun did not learn the refusal again at the price of a stamp
    for row in read_csv(tmp_path / "leads.validated.csv"):
        if row["Email"].strip().lower() in refused:
            assert row["email_result"] == "invalid_syntax"
        else:
            assert (row["email_result"], row["email_catch_all"]) == expected_result(row["Email"])


def test_a_batch_refused_as_a_whole_down_to_one_email_is_never_settled(tmp_path: Path) -> None:
    # Every POST gets a 400 that names no item: halved down to one email, then a clear stop.
    src = write_leads(tmp_path / "leads.csv", lead_rows(40))
    with FakeInThread(retry_after=0.1, post_fault=400) as fake:
        done = run(fake, src, tmp_path)
        statuses = [r.status for r in fake.api.log if r.method == "POST"]
    assert done.returncode == 75, done.stderr
    assert "refused a batch of one email" in done.stderr
    assert statuses == [400] * 6  # 40, 20, 10, 5, 2, then 1 email
    partial = read_csv(tmp_path / "leads.validated.partial.csv")
    assert {r["email_result"] for r in partial} == {"pending"}  # nothing written `failed`
    assert json.loads((tmp_path / "summary.json").read_text())["failed"] == 0
