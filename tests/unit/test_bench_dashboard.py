"""The dashboard scenario's harness without a database: the mix, cursors, factories, errors."""

from __future__ import annotations

import asyncio
import sys

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from goodjob.bench import dashboard, dashboard_seed, runner
from goodjob.bench.environment import BenchError


def test_the_mix_at_ten_million_rows_is_issue_17s() -> None:
    mix = dashboard_seed.Mix(10_000_000)
    assert mix.queued == 100_000
    assert mix.discarded == 10_000
    assert mix.finished + mix.open == mix.rows
    assert mix.history + 2 * mix.open == mix.rows
    assert mix.open == mix.queued + mix.scheduled + mix.retried + mix.running
    with pytest.raises(ValueError, match="1,000 rows at least"):
        dashboard_seed.Mix(999).check()


def test_the_seeded_tasks_shares_add_up_and_each_kind_has_a_task() -> None:
    assert sum(task.percent for task in dashboard_seed.TASKS) == 100
    assert sum(share for _, share in dashboard_seed.DISCARD_ERRORS) == 20
    assert any(task.keyed for task in dashboard_seed.TASKS)
    assert any(task.batched for task in dashboard_seed.TASKS)
    assert set(dashboard.CRON) == {t.cron_key for t in dashboard_seed.TASKS if t.cron_key}


def test_the_dashboard_is_not_in_the_default_run() -> None:
    assert "dashboard" not in runner.ALL
    assert runner.Options.dashboard_factory == dashboard.FACTORY


@pytest.mark.parametrize(
    ("document", "cursor"),
    [
        ({"jobs": [], "next_cursor": "abc"}, "abc"),
        ({"jobs": [], "pagination": {"cursor": 12, "next_cursor": "n"}}, "n"),
        ({"jobs": [], "page": {"after_cursor": "a"}}, "a"),
        ({"jobs": [], "next_cursor": None}, None),
        ({"jobs": [], "next_cursor": ""}, None),
        (["not", "an", "object"], None),
    ],
)
def test_find_cursor_takes_a_key_naming_a_cursor_the_next_one_first(
    document: object, cursor: str | None
) -> None:
    assert dashboard.find_cursor(document) == cursor


def test_a_missing_dashboard_is_said_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whether or not goodjob.dashboard is installed: None in sys.modules makes its import fail.
    monkeypatch.setitem(sys.modules, "goodjob.dashboard", None)
    with pytest.raises(BenchError, match=r"goodjob\.dashboard is not in this installation"):
        dashboard.load_factory(dashboard.FACTORY)
    with pytest.raises(BenchError, match="no module 'nowhere_to_be_found'"):
        dashboard.load_factory("nowhere_to_be_found:create_app")
    with pytest.raises(BenchError, match="has no function 'missing'"):
        dashboard.load_factory("goodjob.bench.dashboard:missing")
    assert dashboard.load_factory("goodjob.bench.dashboard:find_cursor") is dashboard.find_cursor


def _app() -> Starlette:
    def listing(request: Request) -> Response:
        if request.query_params.get("format") == "json":
            return JSONResponse({"jobs": [], "next_cursor": "c1"})
        return PlainTextResponse("jobs")

    def broken(request: Request) -> Response:
        return PlainTextResponse("it broke", status_code=500)

    return Starlette(routes=[Route("/jobs", listing), Route("/errors", broken)])


def test_pages_are_timed_in_both_formats_and_a_non_200_is_an_error_not_a_figure() -> None:
    pages = [dashboard.Page("/jobs?state=succeeded", "/jobs?state=succeeded")]
    pages.append(dashboard.Page("/errors", "/errors"))
    said: list[str] = []
    timings = asyncio.run(dashboard._measure(_app(), pages, 1, 4, said.append))
    figures = dashboard.summarize(timings, 4)
    per_page = figures["per_page"]
    # the listing's cursor made a page of its own, timed right after it
    assert list(per_page) == [
        "/jobs?state=succeeded",
        "/jobs?state=succeeded&cursor=<next>",
        "/errors",
    ]
    for name in list(per_page)[:2]:
        for fmt in ("html", "json"):
            row = per_page[name][fmt]
            assert row["status"] == 200
            assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["max_ms"]
    assert per_page["/errors"]["html"] == {"status": 500, "error": "it broke"}
    assert figures["timed"] == 4
    assert figures["errors"] == [
        "/errors (html): HTTP 500: it broke",
        "/errors (json): HTTP 500: it broke",
    ]
    assert not dashboard.met(figures)
    assert len(said) == 6


def test_a_listing_without_a_cursor_is_reported() -> None:
    def listing(request: Request) -> Response:
        return JSONResponse({"jobs": []})

    app = Starlette(routes=[Route("/jobs", listing)])
    pages = [dashboard.Page("/jobs?state=succeeded", "/jobs?state=succeeded")]
    figures = dashboard.summarize(asyncio.run(dashboard._measure(app, pages, 0, 2, print)), 2)
    assert (
        "/jobs?state=succeeded&cursor=<next> (json): HTTP 0: no cursor in the JSON"
        in (figures["errors"])
    )
