"""The dashboard over HTTP (issue 17): every page as HTML and JSON, filters, keyset pages,
each action, bulk actions with the confirmed count, and the guards (CSRF, read-only,
authorize), against the suite's real Postgres."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Mount
from starlette.testclient import TestClient

from goodjob import GoodJob, Retry
from goodjob.dashboard import create_app
from goodjob.records import dashboard as records
from tests.helpers import load_example, sql

PAGES = [
    "/",
    "/jobs",
    "/jobs?state=queued",
    "/jobs?state=scheduled",
    "/jobs?state=running",
    "/jobs?state=succeeded",
    "/jobs?state=retried",
    "/jobs?state=discarded",
    "/processes",
    "/cron",
    "/batches",
    "/pauses",
    "/performance?window=1h",
    "/performance?window=7d",
    "/errors",
]
XSS = "<script>alert('pwned')</script>"


class Boom(Exception):
    pass


@pytest.fixture
def app(make_app: Any) -> GoodJob:
    gj: GoodJob = make_app(
        cron={"nightly": {"cron": "0 3 * * *", "task": "work", "description": "a <b>report</b>"}}
    )

    @gj.task(name="work")
    def work(n: Any = None) -> Any:
        return n

    @gj.task(name="boom", discard_on=Boom)
    def boom(message: str = "failed") -> None:
        raise Boom(message)

    @gj.task(name="flaky", retry=Retry(attempts=5, wait=3600))
    def flaky() -> None:
        raise RuntimeError("try again")

    return gj


@pytest.fixture
def client(app: GoodJob) -> Iterator[TestClient]:
    with TestClient(create_app(app), base_url="http://testserver") as client:
        yield client


def _token(client: TestClient, path: str = "/pauses") -> str:
    page = client.get(path)
    assert page.status_code == 200
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert found, "every page with a form carries the CSRF token"
    return found.group(1)


def _post(client: TestClient, path: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
    fields = {"csrf_token": _token(client), **(data or {})}
    return client.post(path, data=fields, follow_redirects=False, **kw)


def _seed(gj: GoodJob, database_url: str) -> dict[str, uuid.UUID]:
    """One job in each state."""
    work, boom, flaky = gj.tasks["work"], gj.tasks["boom"], gj.tasks["flaky"]
    ids = {
        "succeeded": work.enqueue(1).id,
        "discarded": boom.enqueue("kaput").id,
        "retried": flaky.enqueue().id,
    }
    gj.perform_inline(list(ids.values()))
    ids["queued"] = work.using(queue="mail", labels=["vip"]).enqueue(2).id
    ids["scheduled"] = work.using(wait=3600).enqueue(3).id
    ids["running"] = work.enqueue(4).id
    sql(
        database_url,
        "UPDATE goodjob_jobs SET locked_by_id = gen_random_uuid(), locked_at = now(),"
        " performed_at = now() WHERE id = %s",
        (ids["running"],),
    )
    for state, job_id in ids.items():
        assert gj.job(job_id).status == state
    return ids


def test_every_page_renders_as_html_and_as_json(
    app: GoodJob, client: TestClient, database_url: str
) -> None:
    ids = _seed(app, database_url)
    with app.batch(description="nightly import", properties={"n": 1}) as batch:
        app.tasks["work"].enqueue(5)
    pages = [*PAGES, f"/jobs/{ids['discarded']}", f"/batches/{batch.id}"]
    for path in pages:
        html = client.get(path)
        assert html.status_code == 200, (path, html.text[-500:])
        assert html.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in html.headers["content-security-policy"]
        data = client.get(path, params={"format": "json"}).json()
        assert "error" not in data, path
    overview = client.get("/", params={"format": "json"}).json()
    assert set(overview) >= {"counts", "queues", "chart", "processes", "paused", "now"}
    assert overview["counts"]["discarded"] == {"value": 1, "kind": "exact", "label": "1"}
    assert len(overview["chart"]["minutes"]) == 60
    assert sum(overview["chart"]["enqueued"]["values"]) == 7
    assert sum(overview["chart"]["discarded"]["values"]) == 1
    assert {q["queue_name"] for q in overview["queues"]} == {"default", "mail"}
    jobs = client.get("/jobs", params={"format": "json"}).json()
    assert {state: c["value"] for state, c in jobs["counts"].items()} == {
        "all": 7,
        **dict.fromkeys(("scheduled", "running", "succeeded", "retried", "discarded"), 1),
        "queued": 2,
    }
    for state, job_id in ids.items():
        listed = client.get("/jobs", params={"state": state, "format": "json"}).json()["jobs"]
        assert job_id in {uuid.UUID(job["id"]) for job in listed}, state
        assert {job["status"] for job in listed} == {state}
    job = client.get(f"/jobs/{ids['discarded']}", params={"format": "json"}).json()
    assert job["job"]["status"] == "discarded"
    assert job["job"]["executions"][0]["error"].endswith("Boom: kaput")
    assert "error_backtrace" in job["job"]["executions"][0]
    assert job["actions"] == ["retry", "destroy"]
    cron = client.get("/cron", params={"format": "json"}).json()
    assert cron["entries"][0]["key"] == "nightly"
    assert cron["entries"][0]["enabled"] is True
    perf = client.get("/performance", params={"window": "1h", "format": "json"}).json()
    tasks = {row["task_name"]: row for row in perf["tasks"]}
    assert tasks["boom"]["failure_rate"] == 1.0
    assert tasks["work"]["failed"] == 0
    errors = client.get("/errors", params={"format": "json"}).json()
    assert [(g["error_class"], g["jobs"]) for g in errors["groups"]] == [
        ("tests.integration.test_dashboard_http.Boom", 1)
    ]
    batches = client.get("/batches", params={"format": "json"}).json()
    assert batches["batches"][0]["description"] == "nightly import"
    assert batches["batches"][0]["jobs"] == {"value": 1, "kind": "exact", "label": "1"}
    assert client.get("/performance", params={"window": "2y"}).status_code == 400
    assert client.get(f"/jobs/{uuid.uuid4()}").status_code == 404


def test_keyset_pages_cover_every_job_once_in_both_orders(app: GoodJob, client: TestClient) -> None:
    work = app.tasks["work"]
    made = [job.id for job in app.enqueue_all(work.prepare(n) for n in range(120))]
    for order, expected in (("newest", made[::-1]), ("oldest", made)):
        for state in (None, "queued"):
            seen: list[uuid.UUID] = []
            params: dict[str, Any] = {"order": order, "format": "json"}
            if state:
                params["state"] = state
            while True:
                page = client.get("/jobs", params=params).json()
                seen.extend(uuid.UUID(job["id"]) for job in page["jobs"])
                if not page["next_cursor"]:
                    break
                params["cursor"] = page["next_cursor"]
            assert seen == expected, (order, state)
    bad = client.get("/jobs", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400


def test_filters_by_queue_task_label_and_text(
    app: GoodJob, client: TestClient, database_url: str
) -> None:
    ids = _seed(app, database_url)

    def listed(**params: Any) -> set[uuid.UUID]:
        page = client.get("/jobs", params={**params, "format": "json"}).json()
        return {uuid.UUID(job["id"]) for job in page["jobs"]}

    assert listed(queue="mail") == {ids["queued"]}
    assert listed(label="vip") == {ids["queued"]}
    assert listed(task="boom") == {ids["discarded"]}
    assert listed(q="kaput") == {ids["discarded"]}  # the error
    assert listed(q="kaput", state="succeeded") == set()
    assert listed(q=str(ids["scheduled"])) == {ids["scheduled"]}  # an id: that job
    assert listed(q="100%_") == set()  # LIKE's wildcards are matched as text
    app.tasks["work"].enqueue({"customer": "acme-42"})
    assert len(listed(q="acme-42")) == 1  # the arguments


def test_a_filtered_page_scans_a_bounded_number_of_rows_and_goes_on_from_there(
    app: GoodJob,
) -> None:
    work = app.tasks["work"]
    rare = work.using(queue="rare").enqueue(0).id
    app.enqueue_all(work.prepare(n) for n in range(30))  # newer, in another queue
    filters = records.JobFilter(queue="rare")
    first = records.jobs_page(app.database, filters, scan=10)
    assert first.jobs == []
    assert first.scan_limited
    assert first.next_cursor
    found, cursor = [], first.next_cursor
    while cursor:
        page = records.jobs_page(app.database, filters, cursor, scan=10)
        found.extend(job.id for job in page.jobs)
        cursor = page.next_cursor
    assert found == [rare]


def test_job_actions(app: GoodJob, client: TestClient, database_url: str) -> None:
    ids = _seed(app, database_url)
    response = _post(client, f"/jobs/{ids['discarded']}/retry", {"next": "/jobs"})
    assert response.status_code == 303
    assert response.headers["location"] == "/jobs"
    assert app.job(ids["discarded"]).status == "retried"  # due now, its last error kept
    notice = client.get("/jobs").text
    assert f"job {ids['discarded']} retried" in notice
    assert _post(client, f"/jobs/{ids['scheduled']}/reschedule").status_code == 303
    assert app.job(ids["scheduled"]).status == "queued"
    assert _post(client, f"/jobs/{ids['queued']}/discard").status_code == 303
    assert app.job(ids["queued"]).status == "discarded"
    assert _post(client, f"/jobs/{ids['retried']}/cancel").status_code == 303
    assert app.job(ids["retried"]).status == "discarded"
    destroyed = _post(client, f"/jobs/{ids['succeeded']}/destroy", {"next": "/x"})
    assert destroyed.headers["location"] == "/jobs"
    assert app.jobs(status="succeeded") == []
    # An action that does not apply says why, and changes nothing.
    refused = _post(client, f"/jobs/{ids['running']}/retry")
    assert refused.status_code == 303
    assert "cannot retry" in client.get("/").text
    assert _post(client, f"/jobs/{ids['running']}/explode").status_code == 404
    # A next outside the dashboard is ignored (no open redirect).
    away = _post(client, f"/jobs/{ids['discarded']}/discard", {"next": "//evil.example/"})
    assert away.headers["location"] == "/"


def test_bulk_actions_on_selected_jobs_and_on_all_matching_with_the_confirmed_count(
    app: GoodJob, client: TestClient
) -> None:
    boom = app.tasks["boom"]
    failed = [job.id for job in app.enqueue_all(boom.prepare(f"m{n}") for n in range(5))]
    app.perform_inline(failed)
    selected = _post(
        client, "/jobs/bulk", {"action": "retry", "scope": "selected", "ids": failed[:2]}
    )
    assert selected.status_code == 303
    assert [app.job(i).status for i in failed[:2]] == ["retried", "retried"]
    confirm = client.get("/jobs/bulk", params={"action": "retry", "state": "discarded"})
    assert confirm.status_code == 200
    assert "Retry <strong>3</strong> jobs" in confirm.text
    assert 'name="confirmed" value="3"' in confirm.text
    # All matching needs the count confirmed, and acts on no more than that.
    base = {"action": "retry", "scope": "all", "state": "discarded"}
    _post(client, "/jobs/bulk", base)
    assert "needs the count you confirmed" in client.get("/").text
    _post(client, "/jobs/bulk", {**base, "confirmed": "2"})
    assert len(app.jobs(status="discarded")) == 1
    _post(client, "/jobs/bulk", {**base, "confirmed": "3"})
    assert app.jobs(status="discarded") == []
    assert "retried 1 job" in client.get("/").text


def test_a_bulk_action_skips_jobs_that_changed_and_stops_at_a_database_error(
    app: GoodJob, client: TestClient, database_url: str
) -> None:
    boom = app.tasks["boom"]
    failed = [job.id for job in app.enqueue_all(boom.prepare(f"s{n}") for n in range(2))]
    app.perform_inline(failed)
    queued = app.tasks["work"].enqueue(1).id  # nothing to retry: skipped
    selected = {"action": "retry", "scope": "selected", "ids": [failed[0], queued]}
    _post(client, "/jobs/bulk", selected)
    notice = client.get("/").text
    assert "retried 1 job; 1 skipped (their state had changed)" in notice
    # A database error is not a job that changed: the action stops and says so.
    token = _token(client)
    sql(database_url, "ALTER TABLE goodjob_jobs RENAME TO goodjob_jobs_away")
    try:
        fields = {"csrf_token": token, "action": "retry", "scope": "selected"}
        client.post("/jobs/bulk", data={**fields, "ids": [failed[1]]}, follow_redirects=False)
    finally:
        sql(database_url, "ALTER TABLE goodjob_jobs_away RENAME TO goodjob_jobs")
    notice = html.unescape(client.get("/").text)
    assert "error: retried 0 of 1 jobs, then: " in notice
    assert "goodjob's tables are missing or out of date" in notice
    assert "skipped" not in notice
    assert app.job(failed[1]).status == "discarded"


def test_pauses_cron_batches_and_errors_actions(app: GoodJob, client: TestClient) -> None:
    assert _post(client, "/pauses", {"kind": "queue", "name": "mail"}).status_code == 303
    assert app.paused()["queue"] == ["mail"]
    assert "mail" in client.get("/pauses").text
    assert _post(client, "/pauses/delete", {"kind": "queue", "name": "mail"}).status_code == 303
    assert app.paused()["queue"] == []
    _post(client, "/pauses", {"kind": "planet", "name": "mars"})
    assert "pause a queue, a task or a label" in client.get("/").text

    _post(client, "/cron/nightly/disable")
    assert app.cron_entries()[0].enabled is False
    _post(client, "/cron/nightly/enable")
    assert app.cron_entries()[0].enabled is True
    _post(client, "/cron/nightly/run")
    assert [job.task_name for job in app.jobs()] == ["work"]

    boom = app.tasks["boom"]
    with app.batch(description="b") as batch:
        boom.enqueue("in a batch")
    app.perform_inline()
    assert _post(client, f"/batches/{batch.id}/retry").status_code == 303
    assert app.batch_by_id(batch.id).counts == {"retried": 1}

    failed = [job.id for job in app.enqueue_all(boom.prepare(f"e{n}") for n in range(3))]
    app.perform_inline(failed)
    error_class = "tests.integration.test_dashboard_http.Boom"
    assert _post(client, "/errors/retry", {"error_class": error_class}).status_code == 303
    assert {app.job(i).status for i in failed} == {"retried"}


def test_posts_need_the_csrf_token_and_the_same_origin(app: GoodJob, client: TestClient) -> None:
    token = _token(client)
    fields = {"kind": "queue", "name": "mail"}
    assert client.post("/pauses", data=fields).status_code == 403  # no token
    assert client.post("/pauses", data={**fields, "csrf_token": "0" * 64}).status_code == 403
    cross = {"sec-fetch-site": "cross-site"}
    response = client.post("/pauses", data={**fields, "csrf_token": token}, headers=cross)
    assert response.status_code == 403
    assert "cross-site" in response.json()["error"]
    evil = {"origin": "https://evil.example"}
    assert (
        client.post("/pauses", data={**fields, "csrf_token": token}, headers=evil).status_code
        == 403
    )
    # Another browser (its own cookie) cannot use this one's token.
    with TestClient(client.app) as other:
        other.get("/pauses")
        assert other.post("/pauses", data={**fields, "csrf_token": token}).status_code == 403
    assert app.paused()["queue"] == []
    same = {"origin": "http://testserver", "sec-fetch-site": "same-origin"}
    ok = client.post(
        "/pauses", data={**fields, "csrf_token": token}, headers=same, follow_redirects=False
    )
    assert ok.status_code == 303
    assert app.paused()["queue"] == ["mail"]


def test_read_only_hides_and_refuses_every_action(app: GoodJob, database_url: str) -> None:
    ids = _seed(app, database_url)
    with TestClient(create_app(app, read_only=True)) as client:
        for path in [*PAGES, f"/jobs/{ids['discarded']}"]:
            page = client.get(path)
            assert page.status_code == 200
            assert 'method="post"' not in page.text, path
        assert "read-only" in client.get("/").text
        client.get("/jobs")
        token = security_token(client, app)
        refused = client.post(f"/jobs/{ids['discarded']}/retry", data={"csrf_token": token})
        assert refused.status_code == 403
        assert client.post("/pauses", data={"kind": "queue", "name": "x"}).status_code == 403
    assert app.job(ids["discarded"]).status == "discarded"
    assert app.paused()["queue"] == []


def security_token(client: TestClient, app: GoodJob) -> str:
    """The token a read-only page would have rendered (it renders no form)."""
    from goodjob.dashboard import security

    dashboard = client.app.state.dashboard  # type: ignore[attr-defined]
    return security.token_for(dashboard.secret, client.cookies[security.CSRF_COOKIE])


def test_authorize_hook_sync_async_and_raising(app: GoodJob) -> None:
    asked: list[str] = []

    def deny(request: Request) -> bool:
        asked.append(request.url.path)
        return False

    async def allow_admin(request: Request) -> bool:
        return request.headers.get("x-user") == "admin"

    def basic(request: Request) -> bool:
        if "authorization" not in request.headers:
            raise HTTPException(401, headers={"WWW-Authenticate": 'Basic realm="goodjob"'})
        return True

    with TestClient(create_app(app, authorize=deny)) as client:
        assert client.get("/").status_code == 403
        assert client.get("/jobs", params={"format": "json"}).json() == {"error": "not authorized"}
        assert client.post("/pauses", data={"kind": "queue", "name": "x"}).status_code == 403
    assert asked == ["/", "/jobs", "/pauses"]
    with TestClient(create_app(app, authorize=allow_admin)) as client:
        assert client.get("/", headers={"x-user": "admin"}).status_code == 200
        assert client.get("/", headers={"x-user": "guest"}).status_code == 403
    with TestClient(create_app(app, authorize=basic)) as client:
        challenge = client.get("/")
        assert challenge.status_code == 401
        assert challenge.headers["www-authenticate"].startswith("Basic")
        assert client.get("/", auth=("a", "b")).status_code == 200
    assert app.paused()["queue"] == []


def test_job_data_is_escaped_everywhere(
    app: GoodJob, client: TestClient, database_url: str
) -> None:
    boom = app.tasks["boom"]
    job = boom.using(labels=[XSS]).enqueue(XSS)
    app.perform_inline([job.id])
    # Names goodjob would refuse at enqueue, written by something else.
    sql(
        database_url,
        "UPDATE goodjob_jobs SET queue_name = %s, task_name = %s WHERE id = %s",
        (XSS, XSS, job.id),
    )
    app.pause(label=XSS)
    pages = [
        f"/jobs/{job.id}",
        "/jobs",
        "/jobs?state=discarded",
        f"/jobs?q={XSS}",
        "/errors",
        "/pauses",
        "/",
        "/cron",
    ]
    for path in pages:
        text = client.get(path).text
        assert "<script>alert" not in text, path
    page = client.get(f"/jobs/{job.id}").text
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in page
    assert "<b>report</b>" not in client.get("/cron").text


def test_mounted_under_a_prefix_links_and_redirects_stay_under_it(
    app: GoodJob, database_url: str
) -> None:
    ids = _seed(app, database_url)
    outer = Starlette(routes=[Mount("/goodjob", app=create_app(app))])
    with TestClient(outer) as client:
        page = client.get("/goodjob/jobs")
        assert page.status_code == 200
        hrefs = re.findall(r'(?:href|action|src)="([^"]+)"', page.text)
        assert hrefs
        assert all(h.startswith("/goodjob/") for h in hrefs), hrefs
        token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
        assert token
        done = client.post(
            f"/goodjob/jobs/{ids['discarded']}/retry",
            data={"csrf_token": token.group(1), "next": f"/goodjob/jobs/{ids['discarded']}"},
            follow_redirects=False,
        )
        assert done.status_code == 303
        assert done.headers["location"] == f"/goodjob/jobs/{ids['discarded']}"
        # The notice shows once, under the prefix.
        assert 'id="notice"' in client.get(done.headers["location"]).text
        assert 'id="notice"' not in client.get(done.headers["location"]).text
        assert client.get("/goodjob/static/uPlot.iife.min.js").status_code == 200
    assert app.job(ids["discarded"]).status == "retried"


def test_the_readme_example_mounts_it_in_fastapi_behind_basic_auth(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOODJOB_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DASHBOARD_PASSWORD", "s3cret")
    example = load_example("dashboard_app")
    try:
        with TestClient(example.app) as client:
            asked = client.get("/goodjob/")
            assert asked.status_code == 401
            assert asked.headers["www-authenticate"] == 'Basic realm="goodjob"'
            assert client.get("/goodjob/", auth=("admin", "wrong")).status_code == 401
            page = client.get("/goodjob/jobs", auth=("admin", "s3cret"))
            assert page.status_code == 200
            assert 'href="/goodjob/jobs?state=queued"' in page.text
    finally:
        example.gj.close()


def test_the_readme_prefix_dispatch_and_flask_through_a2wsgi(app: GoodJob) -> None:
    from a2wsgi import ASGIMiddleware
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    dashboard = create_app(app)

    async def other(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def application(scope: Any, receive: Any, send: Any) -> None:  # the Django one
        if scope["type"] == "http" and (scope["path"] + "/").startswith("/goodjob/"):
            return await dashboard({**scope, "root_path": "/goodjob"}, receive, send)
        return await other(scope, receive, send)

    direct = TestClient(application)  # no lifespan: the dispatcher, like Django's, has none
    page = direct.get("/goodjob/jobs")
    assert page.status_code == 200
    assert 'action="/goodjob/jobs"' in page.text
    assert direct.get("/goodjob").status_code == 200
    assert direct.get("/elsewhere").status_code == 204

    flask_app = Flask(__name__)
    flask_app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app, {"/goodjob": ASGIMiddleware(dashboard)}
    )
    client = flask_app.test_client()
    page = client.get("/goodjob/jobs?state=queued")
    assert page.status_code == 200
    assert 'action="/goodjob/jobs"' in page.text
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert token
    done = client.post(
        "/goodjob/pauses", data={"csrf_token": token.group(1), "kind": "queue", "name": "mail"}
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/goodjob/"
    assert app.paused()["queue"] == ["mail"]


def test_an_unmigrated_database_answers_503_saying_so(empty_database_url: str) -> None:
    gj = GoodJob(empty_database_url, execution_mode="external")
    try:
        with TestClient(create_app(gj)) as client:
            page = client.get("/jobs")
            assert page.status_code == 503
            assert "goodjob migrate" in page.text
            error = client.get("/", params={"format": "json"}).json()["error"]
            assert "goodjob migrate" in error
    finally:
        gj.close()
