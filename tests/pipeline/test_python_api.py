"""The library as a notebook or a script calls it: `ample_batch.validate` and `estimate` with
`ValidateOptions`, in this process, against the fake API over loopback and with `simulate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def test_estimate_takes_a_path_and_the_keywords_of_a_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AMPLE_BATCH_HOME", str(tmp_path / "home"))
    write_leads(tmp_path / "leads.csv", lead_rows(40, blanks=2))
    first = ample_batch.estimate("leads.csv", usage_limit="20/hour", chunk_size=10)
    assert (first.rows, first.unique_emails, first.credits_needed, first.batches) == (46, 40, 40, 4)
    assert first.seconds_to_last_submission >= 3600  # 40 emails at 20 an hour
    assert ample_batch.estimate(tmp_path / "leads.csv").batches == 1
    assert not (tmp_path / "home").exists(), "an estimate creates no state"

    # A trial's estimate reads the trial's own cache; the real one never sees its verdicts.
    assert ample_batch.validate("leads.csv", simulate=True).complete
    trial = ample_batch.estimate("leads.csv", simulate=True)
    assert (trial.already_done, trial.credits_needed) == (40, 0)
    assert ample_batch.estimate("leads.csv").credits_needed == 40


def test_estimate_refuses_what_it_does_not_take(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(5))
    with pytest.raises(
        TypeError, match=r"^estimate\(\) got an unexpected keyword argument 'max_runtime'$"
    ):
        ample_batch.estimate(src, state_dir=tmp_path / "s", max_runtime="1h")  # type: ignore[call-arg]
    options = ValidateOptions(input=src, state_dir=tmp_path / "s")
    with pytest.raises(TypeError, match="takes a ValidateOptions or keyword options, not both"):
        ample_batch.estimate(options, simulate=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'progress'"):
        ample_batch.estimate(options, progress=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="input must be a str or a Path, not int"):
        ample_batch.estimate(3)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"^bad limit"):
        ample_batch.estimate(src, state_dir=tmp_path / "s", usage_limit="many")
    with pytest.raises(InputError, match=r"^chunk_size= must be at least 1$"):
        ample_batch.estimate(src, state_dir=tmp_path / "s", chunk_size=0)


def test_status_finds_the_state_as_the_command_line_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AMPLE_BATCH_HOME", str(home))
    assert ample_batch.status() == [] and ample_batch.status(state_dir="st3") == []
    assert not (tmp_path / "st3").exists(), "a look creates no state"
    write_leads(tmp_path / "leads.csv", lead_rows(30))
    assert ample_batch.validate("leads.csv", simulate=True).complete

    assert ample_batch.status() == []  # a trial keeps its jobs apart
    [trial] = ample_batch.status(simulate=True)
    assert (trial.job.state, trial.state_dir) == ("done", home / "simulated")
    [same] = ample_batch.status(str(home), trial.job.id[:4], simulate=True)
    assert same.job.id == trial.job.id
    with pytest.raises(InputError, match=r"^no job 'zz'.*see `ample_batch\.status\(\)`"):
        ample_batch.status(home, "zz", simulate=True)
    with pytest.raises(
        TypeError, match=r"^status\(\) got an unexpected keyword argument 'api_key'$"
    ):
        ample_batch.status(api_key=KEY)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="simulate must be True or False"):
        ample_batch.status(simulate="yes")  # type: ignore[typeddict-item]
    with pytest.raises(InputError, match="not a PostgreSQL URL"):
        ample_batch.status(state_url="mysql://db/leads")
    monkeypatch.setenv("AMPLE_BATCH_STATE_URL", "mysql://db/leads")  # as --state-url's env
    with pytest.raises(InputError, match="not a PostgreSQL URL"):
        ample_batch.status()


def test_cancel_through_the_python_api_keeps_partial_results(tmp_path: Path) -> None:
    import asyncio

    from helpers import FAST_RETRY, ManualClock, batch_states

    src = write_leads(tmp_path / "leads.csv", lead_rows(1000))
    state = tmp_path / "s"
    # Slow processing, then a clock that stands still: the batch is still running at the stop.
    clock = ManualClock(start=0.0, running=True)
    with FakeInThread(retry_after=0.2, emails_per_second=500, clock=clock) as fake:
        api = ApiOptions(api_key=KEY, base_url=fake.url, retry=FAST_RETRY)
        options = ValidateOptions(input=src, state_dir=state, api=api)

        async def stop_once_charged() -> None:
            stop = asyncio.Event()
            run = asyncio.create_task(ample_batch.avalidate(options, stop=stop))
            while fake.summary().credits_spent < 100 and not run.done():
                await asyncio.sleep(0.02)
            clock.pause()
            stop.set()
            with pytest.raises(ample_batch.Stopped):
                await run

        asyncio.run(stop_once_charged())
        assert [s for s, _ in batch_states(state)] == ["running"]
        [job] = ample_batch.status(str(state))
        with pytest.raises(TypeError, match="takes api= or API keywords, not both: got 'api_key'"):
            ample_batch.cancel(job.job.id, api=api, api_key=KEY, state_dir=state)
        assert ample_batch.cancel(job.job.id[:6], state_dir=str(state), api=api) == 1
    [kept] = ample_batch.status(state)
    assert kept.job.state == "canceled" and 0 < kept.progress.resolved < 1000


def test_cancel_names_what_is_wrong_in_python_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMPLE_BATCH_HOME", str(tmp_path / "home"))
    with pytest.raises(InputError, match=r"^no job 'zz'.*see `ample_batch\.status\(\)`"):
        ample_batch.cancel("zz", simulate=True)
    with pytest.raises(
        TypeError, match=r"^cancel\(\) got an unexpected keyword argument 'output'$"
    ):
        ample_batch.cancel("zz", output="x.csv")  # type: ignore[call-arg]


def test_validate_options_default_the_state_dir_as_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ample_batch.options import default_state_dir

    monkeypatch.setenv("AMPLE_BATCH_HOME", str(tmp_path / "home"))
    options = ValidateOptions(input="leads.csv")  # type: ignore[arg-type]
    assert (options.state_dir, options.input) == (tmp_path / "home", Path("leads.csv"))
    monkeypatch.setenv("AMPLE_BATCH_HOME", "")  # empty is unset, as click reads it
    assert ValidateOptions(input=Path("x.csv")).state_dir == default_state_dir()
    monkeypatch.delenv("AMPLE_BATCH_HOME")
    assert ValidateOptions(input=Path("x.csv")).state_dir == default_state_dir()


@pytest.mark.parametrize(
    "call",
    [
        lambda src: ample_batch.validate(src),
        lambda src: ample_batch.validate(ValidateOptions(input=src)),
        lambda src: ample_batch.validate_emails(["ana@acme.com"]),
        lambda src: ample_batch.validate_frame(__import__("pyarrow").table({"e": ["a@b.co"]})),
    ],
    ids=["path", "options", "emails", "frame"],
)
def test_a_missing_key_is_named_as_a_keyword(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: Any
) -> None:
    monkeypatch.delenv("AMPLEMARKET_API_KEY", raising=False)
    monkeypatch.setenv("AMPLE_BATCH_HOME", str(tmp_path / "home"))
    src = write_leads(tmp_path / "leads.csv", lead_rows(3))
    with pytest.raises(InputError) as raised:
        call(src)
    assert str(raised.value) == (
        "no API key: set AMPLEMARKET_API_KEY or pass api_key= (or try simulate=True)"
    )
