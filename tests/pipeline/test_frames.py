"""Data frames and email lists through the Python API: `validate_frame`, `validate_emails` and
their async twins, against the fake API over loopback (and with `simulate`), in and out of a
running event loop, interrupted and resumed."""

from __future__ import annotations

import _thread
import asyncio
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from helpers import KEY, ROOT, FakeInThread, expected_result, lead_rows, wait_until

import ample_batch
from ample_batch import InputError, Stopped

FAST = {"retry_after": 0.1, "emails_per_second": 50000}
LIMIT = "100000/hour"


def _posts(fake: FakeInThread) -> int:
    return sum(1 for record in list(fake.api.log) if record.method == "POST")


def _expected(cell: object) -> tuple[str, bool | None]:
    # A missing cell (None, NaN, NA) is a blank one.
    result, catch_all = expected_result(cell if isinstance(cell, str) else "")
    return result, {"true": True, "false": False}.get(catch_all)


def _leads(unique: int, **kw: Any) -> pd.DataFrame:
    """Leads with every kind of column a notebook has: ints, nullable ints, categoricals,
    datetimes, floats with NaN, text; a shuffled, non-default index."""
    rows = lead_rows(unique, **kw)
    n = len(rows)
    frame = pd.DataFrame(
        {
            "id": pd.array(range(n), dtype="int64"),
            "score": pd.array([i if i % 3 else None for i in range(n)], dtype="Int64"),
            "tier": pd.Categorical([("gold", "silver", "bronze")[i % 3] for i in range(n)]),
            "seen": pd.date_range("2024-01-01", periods=n, freq="h", tz="Europe/Lisbon"),
            "ratio": [i / 7 if i % 5 else float("nan") for i in range(n)],
            "name": [row["name"] for row in rows],
            "Email": [row["Email"] or None for row in rows],
        },
        index=pd.Index([f"r{(i * 7919) % n:05d}" for i in range(n)], name="key"),
    )
    return frame


def test_a_pandas_frame_comes_back_whole_and_a_second_call_costs_nothing(tmp_path: Path) -> None:
    frame = _leads(200, blanks=3, invalid=2)
    before = frame.copy()
    with FakeInThread(**FAST) as fake:
        options = {"api_key": KEY, "base_url": fake.url, "state_dir": tmp_path / "s"}
        out = ample_batch.validate_frame(frame, usage_limit=LIMIT, **options)
        posts, charged = _posts(fake), fake.summary().credits_spent
        again = ample_batch.validate_frame(frame, usage_limit=LIMIT, **options)
        assert _posts(fake) == posts, "the same frame again is served from the state"
        assert fake.summary().credits_spent == charged == 200

    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is left alone
    assert list(out.columns) == [*frame.columns, "email_result", "email_catch_all"]
    assert out.index.equals(frame.index)
    pd.testing.assert_frame_equal(out[frame.columns], frame)  # every dtype and value as given
    assert str(out["email_catch_all"].dtype) == "boolean"
    for cell, result, catch_all in zip(
        frame["Email"], out["email_result"], out["email_catch_all"], strict=True
    ):
        assert (result, None if pd.isna(catch_all) else bool(catch_all)) == _expected(cell)
    pd.testing.assert_frame_equal(again, out)
    assert not list((tmp_path / "s" / "frames").glob("*.parquet")), "no copy left behind"


def test_with_a_state_url_nothing_is_written_under_the_state_dir(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The frame's file goes to a private temp dir, removed after: watch that dir too.
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    frame = _leads(120, blanks=2, invalid=1)
    state = tmp_path / "s"
    with FakeInThread(**FAST) as fake:
        options = {"api_key": KEY, "base_url": fake.url, "state_dir": state, "state_url": pg_url}
        out = ample_batch.validate_frame(frame, usage_limit=LIMIT, **options)
        posts = _posts(fake)
        # Another temp dir each call: the shared state finds the job by content alone.
        again = ample_batch.validate_frame(frame, usage_limit=LIMIT, **options)
        assert _posts(fake) == posts, "the same frame again is served from the state"
        emails = ["ana@acme.com", "", "not-an-email", "lead000001@company1.com"]
        verdicts = ample_batch.validate_emails(emails, **options)
        assert fake.summary().credits_spent == 120 + 1  # lead 1 is cached; ana is new
    pd.testing.assert_frame_equal(again, out)
    for cell, result in zip(frame["Email"], out["email_result"], strict=True):
        assert result == _expected(cell)[0]
    assert verdicts[""] == {"result": "no_email", "catch_all": None}
    result, catch_all = _expected("lead000001@company1.com")
    assert verdicts["lead000001@company1.com"] == {"result": result, "catch_all": catch_all}
    assert not state.exists(), "with state_url nothing is written under the state dir"
    assert list(temp.iterdir()) == [], "the private temp dirs are removed"


def test_a_polars_frame_and_an_arrow_table_come_back_as_they_went(tmp_path: Path) -> None:
    source = _leads(60, blanks=1, invalid=1).reset_index(drop=True)
    polars_frame = pl.from_pandas(source.drop(columns=["seen"])).with_columns(
        pl.col("tier").cast(pl.Categorical)
    )
    table = pa.Table.from_pandas(source, preserve_index=False)
    with FakeInThread(**FAST) as fake:
        options = {"api_key": KEY, "base_url": fake.url, "state_dir": tmp_path / "s"}
        polars_out = ample_batch.validate_frame(polars_frame, usage_limit=LIMIT, **options)
        arrow_out = ample_batch.validate_frame(table, usage_limit=LIMIT, **options)
        assert fake.summary().credits_spent == 60, "the same emails: bought once"

    assert isinstance(polars_out, pl.DataFrame)
    assert polars_out.columns == [*polars_frame.columns, "email_result", "email_catch_all"]
    assert polars_out.select(polars_frame.columns).equals(polars_frame)
    assert polars_out.schema["email_result"] == pl.String
    assert polars_out.schema["email_catch_all"] == pl.Boolean
    assert isinstance(arrow_out, pa.Table)
    assert arrow_out.select(table.column_names).equals(table)
    assert arrow_out.schema.field("email_catch_all").type == pa.bool_()
    expected = [_expected(cell) for cell in source["Email"]]
    assert list(zip(*polars_out.select("email_result", "email_catch_all"), strict=True)) == [
        tuple(pair) for pair in expected
    ]
    assert (
        list(
            zip(
                arrow_out.column("email_result").to_pylist(),
                arrow_out.column("email_catch_all").to_pylist(),
                strict=True,
            )
        )
        == expected
    )


def test_the_sync_functions_work_inside_a_running_loop(tmp_path: Path) -> None:
    frame = pl.DataFrame({"who": ["Ana", "Bo", "Cy"], "mail": ["ana@acme.com", "", "bo@x.io"]})

    async def notebook_cell() -> tuple[pl.DataFrame, dict[str, Any]]:
        # What Jupyter does: the cell's code runs while the kernel's loop is running.
        asyncio.get_running_loop()
        out = ample_batch.validate_frame(frame, simulate=True, state_dir=tmp_path)
        verdicts = ample_batch.validate_emails(["cy@acme.com"], simulate=True, state_dir=tmp_path)
        return out, dict(verdicts)

    out, verdicts = asyncio.run(notebook_cell())
    assert out["email_result"].to_list()[1] == "no_email"
    assert out.height == 3 and out.columns[-2:] == ["email_result", "email_catch_all"]
    assert set(verdicts) == {"cy@acme.com"}


async def test_the_async_twins_run_on_the_callers_loop(tmp_path: Path) -> None:
    emails = ["ana@acme.com", "", "not-an-email", "ana@acme.com", " ANA@acme.com "]
    with FakeInThread(**FAST) as fake:
        options = {"api_key": KEY, "base_url": fake.url, "state_dir": tmp_path}
        verdicts = await ample_batch.avalidate_emails(emails, **options)
        table = pa.table({"email": ["bo@x.io", None]})
        out = await ample_batch.avalidate_frame(table, **options)
        summary = await ample_batch.avalidate(_csv(tmp_path), **options)
        assert fake.summary().credits_spent == 2  # ana once (three spellings), bo once
    assert list(verdicts) == ["ana@acme.com", "", "not-an-email", " ANA@acme.com "]
    assert verdicts[""] == {"result": "no_email", "catch_all": None}
    assert verdicts["not-an-email"] == {"result": "invalid_syntax", "catch_all": None}
    assert verdicts[" ANA@acme.com "] == verdicts["ana@acme.com"]
    result, catch_all = _expected("ana@acme.com")
    assert verdicts["ana@acme.com"] == {"result": result, "catch_all": catch_all}
    assert out.column("email_result").to_pylist()[1] == "no_email"
    assert summary.complete and summary.cached == 2 and summary.credits_spent == 0


def _csv(folder: Path) -> Path:
    path = folder / "leads.csv"
    path.write_text("name,email\nAna,ana@acme.com\nBo,bo@x.io\n")
    return path


def test_a_frame_stopped_by_max_runtime_resumes_where_it_stopped(tmp_path: Path) -> None:
    frame = _leads(900)
    with FakeInThread(**FAST) as fake:
        options = {"api_key": KEY, "base_url": fake.url, "state_dir": tmp_path / "s"}
        with pytest.raises(Stopped, match="run the same command again") as stopped:
            ample_batch.validate_frame(frame, usage_limit="300/30s", max_runtime=2, **options)
        assert stopped.value.summary.remaining == 600  # type: ignore[attr-defined]
        assert fake.summary().credits_spent == 300
        out = ample_batch.validate_frame(frame, usage_limit=LIMIT, **options)
        summary = fake.summary()
    assert summary.credits_spent == 900 and summary.emails_charged_twice == 0
    assert "pending" not in set(out["email_result"])
    pd.testing.assert_frame_equal(out[frame.columns], frame)


def test_a_simulated_frame_stopped_with_a_batch_in_flight_resumes_in_seconds(
    tmp_path: Path,
) -> None:
    frame = _leads(300)
    options = {"simulate": True, "state_dir": tmp_path / "s"}
    # The key check and the first POST take the minute's two requests: stopped at the
    # deadline before the batch's first poll, and that call's fake is gone with it.
    with pytest.raises(Stopped) as stopped:
        ample_batch.validate_frame(
            frame, usage_limit="100/60s", rate_limit="2/60s", max_runtime="3s", **options
        )
    assert stopped.value.summary is not None and stopped.value.summary.remaining == 300
    started = time.monotonic()
    out = ample_batch.validate_frame(frame, **options)  # "run it again to continue"
    assert time.monotonic() - started < 30  # the 10-minute 404 rule held it 10 minutes
    assert "pending" not in set(out["email_result"])
    pd.testing.assert_frame_equal(out[frame.columns], frame)


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="KeyboardInterrupt reaches the main thread only",
)
def test_an_interrupted_notebook_cell_wraps_up_and_the_next_run_resumes(tmp_path: Path) -> None:
    frame = pd.DataFrame({"Email": [f"lead{i:04d}@acme{i % 13}.com" for i in range(2000)]})
    # Slow enough that the interrupt comes while the first batch is being processed (it takes
    # a second; the first charge is seen at the first poll, 0.1 s in).
    with FakeInThread(retry_after=0.1, emails_per_second=1000) as fake:
        options = {"api_key": KEY, "base_url": fake.url, "state_dir": tmp_path / "s"}

        def interrupt_once_charged() -> None:
            wait_until(lambda: fake.summary().credits_spent > 0)
            _thread.interrupt_main()  # what Jupyter's "interrupt kernel" does

        async def cell() -> Any:
            # The second batch would wait an hour for quota (a minute at most, if the test
            # fails): only the interrupt ends this run.
            return ample_batch.validate_frame(
                frame, usage_limit="1000/hour", max_runtime=60, **options
            )

        # A kernel's loop, not asyncio.run's: that one would take the SIGINT for itself.
        loop = asyncio.new_event_loop()
        threading.Thread(target=interrupt_once_charged, daemon=True).start()
        with pytest.raises(Stopped, match="interrupted") as stopped:
            try:
                loop.run_until_complete(cell())
            finally:
                loop.close()
        assert stopped.value.summary.remaining > 0  # type: ignore[attr-defined]
        out = ample_batch.validate_frame(frame, usage_limit=LIMIT, **options)
        summary = fake.summary()
    assert summary.credits_spent == 2000 and summary.emails_charged_twice == 0
    assert "pending" not in set(out["email_result"])


def test_keywords_are_checked_like_the_command_line_checks_options(tmp_path: Path) -> None:
    frame = pa.table({"email": ["ana@acme.com"]})
    with pytest.raises(TypeError, match="unexpected keyword argument 'recheck_after'"):
        ample_batch.validate(_csv(tmp_path), simulate=True, recheck_after="7d")
    with pytest.raises(InputError, match="unknown verdict 'unkown'"):
        ample_batch.validate_frame(frame, simulate=True, recheck="unkown=7d")
    with pytest.raises(TypeError, match="unexpected keyword argument 'output'"):
        ample_batch.validate_frame(frame, output="x.csv")
    with pytest.raises(TypeError, match="usage_limit must be"):
        ample_batch.validate_frame(frame, usage_limit=15000)
    with pytest.raises(InputError, match="bad limit '15000'"):
        ample_batch.validate_frame(frame, usage_limit="15000", simulate=True, state_dir=tmp_path)
    with pytest.raises(InputError, match="bad duration"):
        ample_batch.validate_emails(["a@b.co"], cache_ttl="soon", state_dir=tmp_path)
    options = ample_batch.ValidateOptions(input=_csv(tmp_path), state_dir=tmp_path)
    with pytest.raises(TypeError, match="not both: got 'simulate'"):
        ample_batch.validate(options, simulate=True)
    with pytest.raises(TypeError, match=r"pandas\.DataFrame, a polars\.DataFrame or a pyarrow"):
        ample_batch.validate_frame([{"email": "a@b.co"}], simulate=True, state_dir=tmp_path)
    with pytest.raises(TypeError, match="not one str"):
        ample_batch.validate_emails("ana@acme.com", simulate=True, state_dir=tmp_path)


def test_a_frame_without_an_email_column_is_an_input_error_that_names_the_frame(
    tmp_path: Path,
) -> None:
    frame = pd.DataFrame({"name": ["Ana"], "email_result": ["x"]})
    with pytest.raises(InputError, match=r"^the frame: already has a column named email_result"):
        ample_batch.validate_frame(frame, simulate=True, state_dir=tmp_path)
    with pytest.raises(InputError, match=r"^the frame: no email column found; name it with email_"):
        ample_batch.validate_frame(frame[["name"]], simulate=True, state_dir=tmp_path)
    with pytest.raises(InputError, match="no column named 'mail'"):
        ample_batch.validate_frame(
            frame[["name"]], email_column="mail", simulate=True, state_dir=tmp_path
        )
    assert not list(tmp_path.rglob("*.parquet"))


def test_defaults_come_from_the_environment_as_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    with FakeInThread(**FAST) as fake:
        monkeypatch.setenv("AMPLEMARKET_API_KEY", KEY)
        monkeypatch.setenv("AMPLEMARKET_BASE_URL", fake.url)
        monkeypatch.setenv("AMPLE_BATCH_HOME", str(home))
        summary = ample_batch.validate(str(_csv(tmp_path)), cache_ttl="1d", max_runtime="1h")
        assert fake.summary().credits_spent == 2
    assert summary.complete and (home / "ample-batch.sqlite").exists()
    monkeypatch.delenv("AMPLEMARKET_API_KEY")
    with pytest.raises(InputError, match="no API key: set AMPLEMARKET_API_KEY"):
        ample_batch.validate_emails(["ana@acme.com"])


def test_empty_input_needs_no_job(tmp_path: Path) -> None:
    frame = pl.DataFrame({"email": pl.Series([], dtype=pl.String)})
    out = ample_batch.validate_frame(frame, state_dir=tmp_path)  # no key needed: nothing to do
    assert out.columns == ["email", "email_result", "email_catch_all"] and out.height == 0
    assert ample_batch.validate_emails([], state_dir=tmp_path) == {}


def test_progress_shows_each_stage_and_the_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ample_batch.validate_emails(["ana@acme.com"], simulate=True, state_dir=tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "ample-batch: validating" in err
    assert "ample-batch: done · 1 rows, 1 unique emails" in err
    quiet = ample_batch.validate_emails(["bo@acme.com"], simulate=True, state_dir=tmp_path)
    assert quiet and capsys.readouterr().err == ""


def test_without_pandas_the_package_and_the_other_frame_types_still_work(tmp_path: Path) -> None:
    script = f"""
import sys

class NoPandas:  # as if it were not installed: `import pandas` fails
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pandas":
            raise ModuleNotFoundError("No module named 'pandas'")

sys.meta_path.insert(0, NoPandas())
import pyarrow as pa, polars as pl
import ample_batch
out = ample_batch.validate_frame(pa.table({{"e": ["ana@acme.com"]}}), simulate=True,
                                 state_dir={str(tmp_path)!r})
assert out.column("email_result").to_pylist() != ["pending"]
out = ample_batch.validate_frame(pl.DataFrame({{"e": ["bo@acme.com"]}}), simulate=True,
                                 state_dir={str(tmp_path)!r})
assert out.height == 1
assert "pandas" not in sys.modules
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_sent_column_appends_the_address_as_sent_to_every_frame_type(tmp_path: Path) -> None:
    cells = ["Ana <Ana@Acme.com>", "mailto:bo@acme.com", None, "nope", " CY@acme.com "]
    sent = ["ana@acme.com", "bo@acme.com", None, None, "cy@acme.com"]
    frames = [
        pd.DataFrame({"Email": cells}, index=[5, 4, 3, 2, 1]),
        pl.DataFrame({"Email": cells}),
        pa.table({"Email": pa.array(cells, pa.string())}),
    ]
    outs = [
        ample_batch.validate_frame(f, sent_column=True, simulate=True, state_dir=tmp_path)
        for f in frames
    ]
    assert list(outs[0].columns) == ["Email", "email_result", "email_catch_all", "email_sent"]
    assert [None if pd.isna(v) else v for v in outs[0]["email_sent"]] == sent
    assert outs[1].columns[-1] == "email_sent" and outs[1]["email_sent"].to_list() == sent
    assert outs[2].column_names[-1] == "email_sent"
    assert outs[2].column("email_sent").to_pylist() == sent
    named = ample_batch.validate_frame(
        frames[2], sent_column="as_sent", simulate=True, state_dir=tmp_path
    )
    assert named.column_names == ["Email", "email_result", "email_catch_all", "as_sent"]
    empty = ample_batch.validate_frame(frames[1].head(0), sent_column=True, state_dir=tmp_path)
    assert empty.columns == ["Email", "email_result", "email_catch_all", "email_sent"]
    with pytest.raises(
        InputError, match=r"^the frame: already has a column named 'Email'; give sent_column="
    ):
        ample_batch.validate_frame(
            frames[0], sent_column="Email", simulate=True, state_dir=tmp_path
        )
    with pytest.raises(TypeError, match="sent_column must be True or a column name"):
        ample_batch.validate_frame(frames[0], sent_column=1, simulate=True, state_dir=tmp_path)  # type: ignore[arg-type]
