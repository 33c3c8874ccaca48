"""The dashboard in a real browser (issue 17): headless Chromium from Debian's packages, driven
by Selenium through Debian's chromedriver (no browser download), against the dashboard served
by uvicorn on a free port and a real worker in this process.

One browser for the module. The pages' screenshots are written to a temporary folder, and
copied into ``docs/screenshots/`` when ``GOODJOB_SCREENSHOTS=1`` (so ``make test`` leaves the
tree clean).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from goodjob import GoodJob
from goodjob.dashboard import create_app
from tests.helpers import sql, wait_until

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Without the background-networking flags Chromium's own connections are refused on a closed
# network, and it waits on them.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1440,1000",
)
XSS = "<script>window.pwned = 1; alert('pwned')</script>"


class Boom(Exception):
    pass


@pytest.fixture(scope="module")
def shots() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="goodjob-screenshots-"))
    yield folder
    if os.environ.get("GOODJOB_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for shot in folder.glob("*.png"):
            shutil.copy(shot, SCREENSHOTS / shot.name)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="goodjob-chromium-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Served:
    """The dashboard of an app, served by uvicorn in a thread on a free port."""

    def __init__(self, gj: GoodJob) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(create_app(gj), log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="dashboard-server"
        )
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=10, message="uvicorn to start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def app(make_app: Any) -> GoodJob:
    gj: GoodJob = make_app(
        poll_interval=1,
        cron={
            "nightly-report": {
                "cron": "0 3 * * * Europe/Paris",
                "task": "report",
                "description": "The nightly report",
            },
            "cleanup": {"cron": "*/15 * * * *", "task": "report", "enabled_by_default": False},
        },
    )
    failing = {"on": True}

    @gj.task(name="report", queue="reports")
    def report(n: Any = None) -> Any:
        return n

    @gj.task(name="charge_card", discard_on=Boom)
    def charge_card(order: int) -> str:
        if failing["on"]:
            raise Boom(f"card declined for order {order}")
        return "charged"

    gj.failing = failing  # type: ignore[attr-defined]
    return gj


@pytest.fixture
def served(app: GoodJob) -> Iterator[Served]:
    server = Served(app)
    try:
        yield server
    finally:
        server.stop()


def _text(browser: WebDriver, by: str, value: str) -> str:
    """The text of the first element found, or "" while the browser is between two pages (a
    click's navigation has not yet replaced the page it left, or an element is gone)."""
    try:
        return "".join(e.text for e in browser.find_elements(by, value)[:1])
    except StaleElementReferenceException:
        return ""


def _open(browser: WebDriver, url: str, heading: str) -> None:
    browser.get(url)
    wait_until(
        lambda: heading in _text(browser, By.TAG_NAME, "h1"),
        timeout=10,
        message=f"the page {url} to show {heading!r}",
    )


def _errors(browser: WebDriver) -> list[str]:
    """The browser console's errors since the last call (a blocked script, a CSP refusal)."""
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def _history(database_url: str) -> None:
    """An hour of history for the charts and the performance page, written by SQL: jobs
    whose UUIDv7 ids carry their creation time, and their attempts."""
    sql(
        database_url,
        """
        WITH made AS (
            SELECT g, now() - (g * interval '1.7 s') AS created,
                   (ARRAY['send_email', 'resize_image', 'sync_account', 'charge_card'])[1 + g % 4]
                       AS task
            FROM generate_series(1, 2000) AS g
        ), rows AS (
            SELECT (lpad(to_hex((extract(epoch FROM created) * 1000)::bigint), 12, '0')
                    || '7' || substr(md5(g::text), 1, 3)
                    || '8' || substr(md5(g::text), 4, 15))::uuid AS id,
                   created, task, g,
                   created + (0.05 + (g % 13) * 0.07) * interval '1 s' AS performed,
                   created + (0.15 + (g % 13) * 0.2 + (g % 7) * 0.05) * interval '1 s' AS finished
            FROM made
        ), jobs AS (
            INSERT INTO goodjob_jobs (id, queue_name, task_name, arguments, scheduled_at,
                                      created_at, performed_at, finished_at, executions_count,
                                      error, error_event)
            SELECT id, CASE WHEN task = 'send_email' THEN 'mail' ELSE 'default' END, task,
                   jsonb_build_object('args', jsonb_build_array(g), 'kwargs', '{}'::jsonb),
                   created, created, performed, finished, 1,
                   CASE WHEN g % 97 = 0 THEN 'smtplib.SMTPServerDisconnected: lost the server' END,
                   CASE WHEN g % 97 = 0 THEN 'discarded' END
            FROM rows
            RETURNING id, task_name, queue_name, scheduled_at, performed_at, finished_at, error
        )
        INSERT INTO goodjob_executions (job_id, attempt, task_name, queue_name, scheduled_at,
                                        performed_at, finished_at, duration, error, error_event)
        SELECT id, 1, task_name, queue_name, scheduled_at, performed_at, finished_at,
               finished_at - performed_at, error, CASE WHEN error IS NOT NULL THEN 'discarded' END
        FROM jobs
        """,
    )


def test_every_page_opens_and_the_main_ones_are_photographed(
    browser: WebDriver, served: Served, app: GoodJob, database_url: str, shots: Path
) -> None:
    _history(database_url)
    report = app.tasks["report"]
    app.enqueue_all(
        report.using(queue=q).prepare(n) for n in range(40) for q in ("reports", "mail")
    )
    report.using(wait=7200, labels=["nightly"]).enqueue("later")
    with app.batch(description="Import of 3 files", properties={"source": "s3"}) as batch:
        for n in range(3):
            report.enqueue(n)
    app.pause(queue="mail")
    job = app.tasks["charge_card"].using(labels=["payments"]).enqueue(1042)
    app.perform_inline([job.id])
    _errors(browser)

    pages = [
        ("overview", "/", "Overview"),
        ("jobs", "/jobs", "Jobs"),
        ("job", f"/jobs/{job.id}", "Job"),
        ("processes", "/processes", "Processes"),
        ("cron", "/cron", "Cron"),
        ("batches", "/batches", "Batches"),
        ("batch", f"/batches/{batch.id}", "Batch"),
        ("pauses", "/pauses", "Pauses"),
        ("performance", "/performance?window=1h", "Performance"),
        ("errors", "/errors", "Errors"),
    ]
    app.start()  # a live worker process for the processes page (the paused queue waits)
    try:
        wait_until(lambda: app.jobs(status="queued", queue="reports") == [], timeout=20)
        for name, path, heading in pages:
            _open(browser, served.url + path, heading)
            if name == "overview":
                wait_until(
                    lambda: browser.find_elements(By.CSS_SELECTOR, "#chart-throughput canvas"),
                    timeout=10,
                    message="the charts to be drawn",
                )
            if name in ("overview", "jobs", "job", "processes", "cron", "batches", "performance"):
                browser.save_screenshot(str(shots / f"{name}.png"))
        _open(browser, served.url + "/cron", "Cron")
        cron = browser.find_element(By.TAG_NAME, "main").text
        assert "nightly-report" in cron
        assert "The nightly report" in cron
        _open(browser, served.url + "/processes", "Processes")
        assert "alive" in browser.find_element(By.TAG_NAME, "main").text
    finally:
        app.shutdown()
    assert _errors(browser) == []


def test_filter_open_retry_and_a_worker_runs_it(
    browser: WebDriver, served: Served, app: GoodJob
) -> None:
    charge = app.tasks["charge_card"]
    failed = charge.enqueue(7)
    app.enqueue_all(app.tasks["report"].prepare(n) for n in range(5))
    app.perform_inline([failed.id])
    assert app.job(failed.id).status == "discarded"
    app.failing["on"] = False  # type: ignore[attr-defined]
    app.start()
    try:
        _open(browser, served.url + "/jobs", "Jobs")
        browser.find_element(By.CSS_SELECTOR, '.tabs a[data-state="discarded"]').click()
        wait_until(lambda: "state=discarded" in browser.current_url, timeout=10)
        task = browser.find_element(By.CSS_SELECTOR, '#filters input[name="task"]')
        task.send_keys("charge_card")
        browser.find_element(By.CSS_SELECTOR, '#filters button[type="submit"]').click()
        wait_until(lambda: "task=charge_card" in browser.current_url, timeout=10)
        rows = browser.find_elements(By.CSS_SELECTOR, "table.jobs tbody tr")
        assert len(rows) == 1
        assert "card declined" in rows[0].text
        rows[0].find_element(By.CSS_SELECTOR, "a.mono").click()
        wait_until(lambda: str(failed.id) in _text(browser, By.TAG_NAME, "h1"))
        browser.find_element(By.CSS_SELECTOR, 'button[data-action="retry"]').click()
        wait_until(
            lambda: "retried" in _text(browser, By.ID, "notice"),
            timeout=10,
            message="the notice of the retry",
        )

        def succeeded() -> bool:
            browser.refresh()
            return "succeeded" in _text(browser, By.TAG_NAME, "h1")

        wait_until(succeeded, timeout=20, interval=0.3, message="the worker to run the job")
        assert '"charged"' in browser.find_element(By.ID, "result").text
    finally:
        app.shutdown()


def test_pause_and_unpause_a_queue(browser: WebDriver, served: Served, app: GoodJob) -> None:
    _open(browser, served.url + "/pauses", "Pauses")
    Select(
        browser.find_element(By.CSS_SELECTOR, '#pause-form select[name="kind"]')
    ).select_by_value("queue")
    browser.find_element(By.CSS_SELECTOR, '#pause-form input[name="name"]').send_keys("mail")
    browser.find_element(By.ID, "pause-button").click()
    row = '[data-paused="queue:mail"]'
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, row), timeout=10)
    assert app.paused()["queue"] == ["mail"]
    browser.find_element(By.CSS_SELECTOR, f'{row} button[data-action="unpause"]').click()
    wait_until(lambda: not browser.find_elements(By.CSS_SELECTOR, row), timeout=10)
    assert "queue mail unpaused" in browser.find_element(By.ID, "notice").text
    assert app.paused()["queue"] == []


def test_a_script_in_arguments_renders_as_text(
    browser: WebDriver, served: Served, app: GoodJob
) -> None:
    job = app.tasks["report"].using(labels=["x"]).enqueue(XSS)
    _errors(browser)
    for path in (f"/jobs/{job.id}", "/jobs?q=pwned"):
        browser.get(served.url + path)
        wait_until(lambda: browser.find_elements(By.TAG_NAME, "h1"), timeout=10)
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018
        assert browser.execute_script("return window.pwned === undefined") is True
    browser.get(served.url + f"/jobs/{job.id}")
    assert "<script>window.pwned = 1;" in browser.find_element(By.ID, "arguments").text
    assert _errors(browser) == []
