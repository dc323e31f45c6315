"""The library as a notebook or a script calls it: `ample_batch.validate` and `estimate` with
`ValidateOptions`, in this process, against the fake API over loopback and with `simulate`."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import KEY, FakeInThread, expected_result, lead_rows, read_csv, write_leads

import ample_batch
from ample_batch import ApiOptions, InputError, ValidateOptions
from ample_batch.limits import Limit

FAST = {"retry_after": 0.1, "emails_per_second": 50000}


def _options(fake: FakeInThread, src: Path, state: Path, **kw: object) -> ValidateOptions:
    api = ApiOptions(api_key=KEY, base_url=fake.url, usage_limit=Limit(100_000, 3600.0))
    return ValidateOptions(input=src, state_dir=state, api=api, **kw)  # type: ignore[arg-type]


def test_validate_returns_the_summary_and_writes_every_row(tmp_path: Path) -> None:
    rows = lead_rows(300, blanks=4, invalid=3)  # every tenth email again, in another case
    src = write_leads(tmp_path / "leads.csv", rows)
    out = tmp_path / "checked.csv"
    with FakeInThread(**FAST) as fake:
        summary = ample_batch.validate(_options(fake, src, tmp_path / "s", output=out))
        charged = fake.summary().credits_spent

    assert summary.complete and summary.stop_reason is None
    assert (summary.rows, summary.unique_emails, summary.blank, summary.invalid) == (337, 300, 4, 3)
    assert summary.duplicates == 30  # paid for once
    assert summary.credits_spent == charged == 300
    assert sum(summary.verdicts.values()) == 337
    assert summary.output == str(out)
    written = read_csv(out)
    assert [row["Email"] for row in written] == [row["Email"] for row in rows]
    for row in written:
        assert (row["email_result"], row["email_catch_all"]) == expected_result(row["Email"])


def test_estimate_before_and_after_a_run(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(250, blanks=2))
    state = tmp_path / "s"
    with FakeInThread(**FAST) as fake:
        options = _options(fake, src, state)
        before = ample_batch.estimate(options)
        assert fake.summary().requests == 0, "an estimate makes no API call"
        ample_batch.validate(options)
        after = ample_batch.estimate(options)
        again = ample_batch.validate(options)
        charged = fake.summary().credits_spent

    assert (before.rows, before.unique_emails, before.credits_needed) == (277, 250, 250)
    assert (after.credits_needed, after.already_done) == (0, 250)
    # Nothing left to send finishes now on both schedules, not at the next night's start.
    assert after.night_only_nights == 0
    assert after.night_only_finish == pytest.approx(after.earliest_finish, abs=5)
    assert again.credits_spent == 0 and charged == 250


def test_simulate_needs_no_key_and_no_server(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(120))
    options = ValidateOptions(input=src, state_dir=tmp_path / "s", api=ApiOptions(simulate=True))
    summary = ample_batch.validate(options)
    assert summary.simulated and summary.complete
    assert summary.credits_spent == 120  # the simulation's own credits, not the account's
    assert len(read_csv(Path(summary.output))) == summary.rows == 132


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.csv", "no such file"),
        (lambda d: write_leads(d / "n.csv", [{"name": "Ana"}]), "email column"),
    ],
    ids=["missing", "no-email-column"],
)
def test_bad_input_raises_input_error_and_spends_nothing(
    tmp_path: Path, make: object, message: str
) -> None:
    src = make(tmp_path)  # type: ignore[operator]
    with FakeInThread(**FAST) as fake:
        with pytest.raises(InputError, match=message) as raised:
            ample_batch.validate(_options(fake, src, tmp_path / "s"))
        assert fake.summary().requests == 0
    assert raised.value.exit_code == 2


def test_the_keyword_form_writes_the_report_it_is_asked_for(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(50))
    page = tmp_path / "report.html"
    summary = ample_batch.validate(src, simulate=True, state_dir=tmp_path / "s", report=page)
    assert summary.report == str(page.resolve())
    assert "<svg" in page.read_text(encoding="utf-8")
    with pytest.raises(InputError, match="html"):
        ample_batch.validate(src, simulate=True, state_dir=tmp_path / "s", report=src)


def test_state_url_keeps_a_simulation_in_a_schema_of_its_own(pg_url: str, tmp_path: Path) -> None:
    import psycopg

    src = write_leads(tmp_path / "leads.csv", lead_rows(20))
    state = tmp_path / "state"
    summary = ample_batch.validate(src, simulate=True, state_dir=state, state_url=pg_url)
    assert summary.complete and summary.simulated
    assert not state.exists()  # nothing under the state dir
    with psycopg.connect(pg_url) as conn:
        jobs = conn.execute("SELECT count(*) FROM ample_batch_simulated.jobs").fetchone()
        real = conn.execute("SELECT to_regnamespace('ample_batch')").fetchone()
    assert jobs == (1,) and real == (None,)  # made-up verdicts never reach the real cache
    with pytest.raises(InputError, match="not a PostgreSQL URL"):
        ample_batch.estimate(
            ValidateOptions(input=src, state_dir=state, state_url="mysql://db/leads")
        )
