"""The API key stays secret, travels only to the base URL's origin, and nothing the API says
can plant a spreadsheet formula in the output."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web
from helpers import KEY, FakeInThread, cli, lead_rows, write_leads

SECRET = "sk-live-9f8e7d6c5b4a-do-not-leak"


def every_file_under(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def test_the_key_never_reaches_a_file_or_a_log_line(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    src = write_leads(tmp_path / "in" / "leads.csv", lead_rows(300, blanks=3))
    state, out = tmp_path / "state", tmp_path / "out"
    out.mkdir()
    with FakeInThread(api_key=SECRET, retry_after=0.1, batch_error=0.3, fail_5xx=0.1) as fake:
        runs = [
            cli(
                "validate",
                str(src),
                "-o",
                str(out / "leads.csv"),
                "--base-url",
                fake.url,
                "--state-dir",
                str(state),
                "--summary-json",
                str(out / "summary.json"),
                flag,
                env={"AMPLEMARKET_API_KEY": SECRET},
            )
            for flag in ("-v", "-q")
        ]
        status = cli("status", "--state-dir", str(state), "--json")
        bad = cli(
            "validate",
            str(src),
            "--base-url",
            fake.url,
            "--state-dir",
            str(state),
            env={"AMPLEMARKET_API_KEY": SECRET + "x"},
        )
    assert runs[0].returncode == 0, runs[0].stderr
    assert bad.returncode == 3
    printed = "".join(r.stdout + r.stderr for r in [*runs, status, bad])
    assert SECRET not in printed
    files = every_file_under(state, out, tmp_path / "in")
    assert len(files) >= 4  # database, ledger, output, summary at least
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
    assert "api_key" not in json.loads((out / "summary.json").read_text())


def test_a_key_from_a_secret_file_with_its_trailing_newline_works(tmp_path: Path) -> None:
    # `kubectl create secret --from-file` keeps the file's last newline in the variable.
    src = write_leads(tmp_path / "leads.csv", lead_rows(3))
    with FakeInThread() as fake:
        done = cli(
            "validate", str(src), "--base-url", fake.url, "--state-dir", str(tmp_path / "s"),
            "-q", env={"AMPLEMARKET_API_KEY": f"  {KEY}\n"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert fake.summary().credits_spent == 3
    inner = cli("validate", str(src), "--state-dir", str(tmp_path / "t"), env={
        "AMPLEMARKET_API_KEY": "ab c"})  # fmt: skip
    assert inner.returncode == 2 and "spaces or control characters" in inner.stderr


def test_plain_http_to_another_host_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv", lead_rows(5))
    done = cli(
        "validate",
        str(src),
        "--base-url",
        "http://api.example.com",
        "--state-dir",
        str(tmp_path / "s"),
    )
    assert done.returncode == 2
    assert "refusing plain http" in done.stderr
    assert not (tmp_path / "s").exists()


async def test_authorization_is_never_sent_to_another_origin(tmp_path: Path) -> None:
    """A server whose links point elsewhere: the client refuses, the other host sees nothing."""
    from ample_batch.api.client import ValidationClient
    from ample_batch.api.transport import new_session
    from ample_batch.errors import UnsafeLink

    seen_elsewhere: list[web.Request] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen_elsewhere.append(request)
        return web.json_response({})

    async def api(request: web.Request) -> web.Response:
        body = {
            "id": "v1",
            "object": "email_validation",
            "status": "completed",
            "results": [{"email": "a@x.co", "result": "deliverable", "catch_all": False}],
            "_links": {
                "self": {"href": "/email-validations/v1"},
                "next": {"href": f"{other_url}/email-validations/v1?page[after]=a"},
            },
        }
        return web.json_response(body)

    runners = []
    urls = []
    for handler in (elsewhere, api):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
    other_url, api_url = urls
    try:
        async with new_session() as session:
            client = ValidationClient(session, base_url=api_url, api_key=SECRET)
            first = await client.get("/email-validations/v1")
            try:
                async for _ in client.pages(first):
                    pass
            except UnsafeLink as exc:
                assert SECRET not in str(exc)
            else:
                raise AssertionError("a link to another origin was followed")
    finally:
        for runner in runners:
            await runner.cleanup()
    assert seen_elsewhere == []


def test_added_cells_only_use_the_documented_vocabulary(tmp_path: Path) -> None:
    import pyarrow as pa

    from ample_batch.files.inspect import inspect_input
    from ample_batch.files.join import enrich_batches
    from ample_batch.files.verdicts import Verdicts

    src = write_leads(
        tmp_path / "leads.csv",
        [{"Email": e} for e in ("a@x.co", "b@x.co", "c@x.co", "")],
    )
    verdicts = Verdicts.from_rows(
        [
            ("a@x.co", '=HYPERLINK("http://evil","click")', None),
            ("b@x.co", "+cmd|' /C calc'!A0", True),
            ("c@x.co", "risky", False),
        ]
    )
    spec = inspect_input(src)
    table = pa.Table.from_batches(list(enrich_batches(spec, verdicts)))
    assert table.column("email_result").to_pylist() == ["unknown", "unknown", "risky", "no_email"]
    for cell in table.column("email_catch_all").to_pylist():
        assert cell in ("true", "false", "", None)


def test_the_state_database_password_never_reaches_a_file_a_log_line_or_a_row(
    pg_url: str, tmp_path: Path
) -> None:
    import psycopg
    from postgres_server import PASSWORD

    src = write_leads(tmp_path / "leads.csv", lead_rows(40))
    summary = tmp_path / "summary.json"
    with FakeInThread(retry_after=0.1) as fake:
        common = ("--base-url", fake.url, "--state-dir", str(tmp_path / "state"))
        runs = [
            cli("validate", str(src), *common, "-v", "--summary-json", str(summary),
                "--state-url", pg_url),
            cli("estimate", str(src), "--state-url", pg_url, "--json"),
            cli("status", "--json", env={"AMPLE_BATCH_STATE_URL": pg_url}),
            # Refused: a wrong password, a wrong schema name, a URL that is not PostgreSQL's.
            cli("status", "--state-url", pg_url.replace(PASSWORD, PASSWORD + "x")),
            cli("status", "--state-url", pg_url, "--state-schema", "Bad-Name"),
            cli("status", "--state-url", pg_url.replace("postgresql", "mysql")),
        ]  # fmt: skip
    assert [r.returncode for r in runs] == [0, 0, 0, 2, 2, 2], [r.stderr for r in runs]
    assert "ample:***@" in runs[3].stderr and "refused" in runs[3].stderr
    printed = "".join(r.stdout + r.stderr for r in runs)
    assert PASSWORD not in printed and "Traceback" not in printed
    assert not (tmp_path / "state").exists()
    assert PASSWORD not in summary.read_text()
    with psycopg.connect(pg_url) as conn:
        for table in ("jobs", "batches", "ledgers", "ledger_entries"):
            rows = conn.execute(f"SELECT row_to_json(t)::text FROM ample_batch.{table} t")
            text = "".join(row[0] for row in rows)
            assert PASSWORD not in text and KEY not in text, table
