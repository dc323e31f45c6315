"""`--recheck` end to end: the library and the real command against the fake API over
loopback. Verdicts are made old by moving their check time back in the real store (what
days passing would do), so nothing sleeps; what was bought again is read from the fake's own
record of every email submitted."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from helpers import KEY, FakeInThread, cli, lead_rows, read_csv, write_leads

import ample_batch
from ample_batch.fake.config import verdict_for
from ample_batch.jobs.sqlite.store import Store
from ample_batch.pipeline.estimate import Estimate
from ample_batch.pipeline.keywords import run_options
from ample_batch.pipeline.summary import Summary

FAST = {"retry_after": 0.1, "emails_per_second": 50000}
DAY = 86400.0


def _run(fake: FakeInThread, src: Path, state: Path, **options: object) -> Summary:
    return ample_batch.validate(
        src, api_key=KEY, base_url=fake.url, state_dir=state, usage_limit="100000/hour", **options
    )


def _estimate(src: Path, state: Path, **options: object) -> Estimate:
    return ample_batch.estimate(run_options(src, {"state_dir": state, **options}))


def _age_the_cache(state: Path, seconds: float) -> None:
    """Every cached verdict checked `seconds` earlier than it was: time passing, in the store."""
    with Store(state) as store, store._transaction() as db:
        db.execute("UPDATE verdicts SET checked_at = checked_at - ?", (seconds,))


def _submitted(fake: FakeInThread) -> Counter[str]:
    """How many times each email went out in a POST that created a validation."""
    return Counter(fake.api.state.submitted_keys)


def _emails(src: Path) -> set[str]:
    return {row["Email"].strip().lower() for row in read_csv(src)}


def _of_kind(emails: set[str], *kinds: str, seed: int = 0) -> set[str]:
    return {e for e in emails if verdict_for(e, seed)[0] in kinds}


def test_a_finished_jobs_rerun_buys_its_stale_unknowns_again_and_rewrites_the_output(
    tmp_path: Path,
) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(400))
    state, emails = tmp_path / "s", _emails(src)
    unknown = _of_kind(emails, "unknown")
    assert 20 < len(unknown) < 80  # the fake's ~10%
    with FakeInThread(**FAST) as fake:
        first = _run(fake, src, state)
        assert first.credits_spent == 400 and first.rechecked == {"unknown": 0}
    # Ten days on: past the default rule (unknown=7d), within --cache-ttl (30d).
    _age_the_cache(state, 10 * DAY)
    before = _estimate(src, state)
    assert before.rechecked == {"unknown": len(unknown)}
    assert (before.credits_needed, before.already_done) == (len(unknown), 400 - len(unknown))
    # Another day at the server: the unknowns now answer (a different seed, other verdicts).
    with FakeInThread(**FAST, seed=1) as fake:
        again = _run(fake, src, state)
        sent = _submitted(fake)
        assert set(sent) == unknown and set(sent.values()) == {1}
        assert again.credits_spent == fake.summary().credits_spent == len(unknown)
        assert again.rechecked == {"unknown": len(unknown)} and again.complete
        # Now fresh: a third run buys nothing.
        third = _run(fake, src, state)
        assert third.credits_spent == 0 and third.rechecked == {"unknown": 0}
        assert _submitted(fake) == sent
    for row in read_csv(Path(again.output)):
        email = row["Email"].strip().lower()
        result, catch_all = verdict_for(email, 1 if email in unknown else 0)
        assert (row["email_result"], row["email_catch_all"]) == (result, str(catch_all).lower())
    assert _estimate(src, state).credits_needed == 0


def test_a_short_rule_on_cache_hits_buys_exactly_the_stale_ones_and_none_turns_it_off(
    tmp_path: Path,
) -> None:
    first_src = write_leads(tmp_path / "a.csv", lead_rows(300))
    second_src = write_leads(tmp_path / "b.csv", lead_rows(300, start=200))
    state = tmp_path / "s"
    overlap = _emails(first_src) & _emails(second_src)
    stale = _of_kind(overlap, "risky", "undeliverable")
    rules = {"recheck": "risky=5s,undeliverable=5s"}
    with FakeInThread(**FAST) as fake:
        _run(fake, first_src, state)
        _age_the_cache(state, 60.0)  # a minute: stale for the 5-second rules only
        before = _estimate(second_src, state, **rules)
        assert before.rechecked == {
            "risky": len(_of_kind(stale, "risky")),
            "undeliverable": len(_of_kind(stale, "undeliverable")),
        }
        assert before.cached == len(overlap - stale)
        assert before.credits_needed == 200 + len(stale)
        bought_before = _submitted(fake)
        second = _run(fake, second_src, state, **rules)
        again = _submitted(fake) - bought_before
        # The new emails once, the stale cache hits again, the rest of the overlap reused.
        assert set(again) == (_emails(second_src) - overlap) | stale
        assert second.cached == len(overlap - stale)
        assert second.credits_spent == 200 + len(stale)
        # `none`: a minute later still, the first file's job re-runs at no cost.
        _age_the_cache(state, 60.0)
        spent = fake.summary().credits_spent
        off = _run(fake, first_src, state, recheck="none")
        assert off.credits_spent == 0 and off.rechecked == {}
        assert fake.summary().credits_spent == spent


def test_the_command_line_takes_the_option_and_estimate_prints_the_counts(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(120))
    state = tmp_path / "s"
    unknown = _of_kind(_emails(src), "unknown")
    with FakeInThread(**FAST) as fake:
        args = ["--state-dir", str(state)]
        done = cli("validate", str(src), "--base-url", fake.url, *args, "-q")
        assert done.returncode == 0, done.stderr
        _age_the_cache(state, 3.0)
        as_json = cli("estimate", str(src), *args, "--recheck", "unknown=2s", "--json")
        assert as_json.returncode == 0, as_json.stderr
        estimate = json.loads(as_json.stdout)
        assert estimate["rechecked"] == {"unknown": len(unknown)}
        assert estimate["credits_needed"] == len(unknown)
        table = cli("estimate", str(src), *args, "--recheck", "unknown=2s")
        assert re.search(rf"re-checked unknown\W+{len(unknown)}\b", table.stdout), table.stdout
        summary_path = tmp_path / "summary.json"
        rerun = cli(
            "validate", str(src), "--base-url", fake.url, *args, "--recheck", "unknown=2s",
            "--summary-json", str(summary_path),
        )  # fmt: skip
        assert rerun.returncode == 0, rerun.stderr
        assert re.search(rf"re-checked unknown\W+{len(unknown)}\b", rerun.stderr), rerun.stderr
        assert json.loads(summary_path.read_text())["rechecked"] == {"unknown": len(unknown)}
        assert fake.summary().credits_spent == 120 + len(unknown)


def test_validate_emails_rechecks_the_same_way(tmp_path: Path) -> None:
    emails = [f"person{i}@firm{i % 7}.com" for i in range(150)]
    unknown = _of_kind(set(emails), "unknown")
    options = {"api_key": KEY, "state_dir": tmp_path / "s", "recheck": {"unknown": "5s"}}
    with FakeInThread(**FAST) as fake:
        first = ample_batch.validate_emails(emails, base_url=fake.url, **options)
        assert {e for e, v in first.items() if v["result"] == "unknown"} == unknown
        _age_the_cache(tmp_path / "s", 60.0)
        ample_batch.validate_emails(emails, base_url=fake.url, **options)
        assert {e for e, n in _submitted(fake).items() if n == 2} == unknown
        assert fake.summary().credits_spent == 150 + len(unknown)
