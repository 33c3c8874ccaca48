"""Cron entries: expressions, time zones, daylight saving time, and bad input (issue 14)."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from typing import Any

import pytest

from goodjob import ConfigurationError
from goodjob.cron import parse_cron

UTC = dt.UTC
PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def entry(expression: str, **more: Any) -> Any:
    return parse_cron({"job": {"cron": expression, "task": "t", **more}})[0]


def runs(expression: str, start: dt.datetime, count: int) -> list[dt.datetime]:
    return list(itertools.islice(entry(expression).runs_after(start), count))


def test_five_fields_six_with_seconds_and_aliases() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    assert runs("*/15 * * * *", start, 2) == [
        dt.datetime(2026, 1, 1, 0, 15, tzinfo=UTC),
        dt.datetime(2026, 1, 1, 0, 30, tzinfo=UTC),
    ]
    assert runs("*/2 * * * * *", start, 2) == [  # a leading seconds field, as GoodJob's
        dt.datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC),
        dt.datetime(2026, 1, 1, 0, 0, 4, tzinfo=UTC),
    ]
    assert runs("@hourly", start, 1) == [dt.datetime(2026, 1, 1, 1, tzinfo=UTC)]
    assert runs("@daily", start, 1) == [dt.datetime(2026, 1, 2, tzinfo=UTC)]


def test_a_trailing_time_zone_and_utc_by_default() -> None:
    start = dt.datetime(2026, 6, 1, tzinfo=UTC)
    assert entry("0 9 * * *").zone is UTC
    # 09:00 in Paris is 07:00 UTC in summer; runs come back in UTC.
    assert runs("0 9 * * 1-5 Europe/Paris", start, 1) == [dt.datetime(2026, 6, 1, 7, tzinfo=UTC)]
    assert runs("0 9 * * * UTC", start, 1) == [dt.datetime(2026, 6, 1, 9, tzinfo=UTC)]


def test_daylight_saving_time_in_paris_follows_debian_cron() -> None:
    # Spring (2026-03-29): 02:00 -> 03:00. The 02:30 run happens when the clock jumps, once.
    spring = runs("30 2 * * * Europe/Paris", dt.datetime(2026, 3, 28, 12, tzinfo=PARIS), 3)
    assert [r.astimezone(PARIS).isoformat() for r in spring] == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    # Autumn (2026-10-25): 03:00 -> 02:00, so 02:30 happens twice; the run happens once.
    autumn = runs("30 2 * * * Europe/Paris", dt.datetime(2026, 10, 24, 12, tzinfo=PARIS), 3)
    assert [r.astimezone(PARIS).isoformat() for r in autumn] == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]
    # An hourly entry keeps its pace in UTC across both changes: one run an hour, none twice.
    hourly = runs("0 * * * * Europe/Paris", dt.datetime(2026, 10, 24, 23, tzinfo=UTC), 6)
    assert [b - a for a, b in itertools.pairwise(hourly)] == [dt.timedelta(hours=1)] * 5


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"cron": "61 * * * *", "task": "t"}, "'nightly': '61 * * * *' is not a valid cron"),
        ({"cron": "* * *", "task": "t"}, "not a valid cron expression"),
        ({"cron": "0 3 * * * Mars/Olympus", "task": "t"}, "unknown time zone 'Mars/Olympus'"),
        ({"cron": "@fortnightly", "task": "t"}, "unknown alias"),
        ({"cron": "0 3 * * *"}, "it has no 'task'"),
        ({"task": "t"}, "it has no 'cron'"),
        ({"cron": "0 3 * * *", "task": "t", "when": 1}, "unknown key 'when'"),
        ({"cron": "0 3 * * *", "task": "t", "args": [{1, 2}]}, "cannot be stored"),
        ({"cron": "0 3 * * *", "task": "t", "set": {"wait": 5}}, "not 'wait'"),
        ({"cron": "0 3 * * *", "task": "t", "set": {"queue": "a b"}}, "queue name"),
        ({"cron": "0 3 * * *", "task": 7}, "pass a task or its stored name"),
    ],
)
def test_bad_entries_are_refused_naming_their_key(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match="cron entry 'nightly'") as raised:
        parse_cron({"nightly": spec})
    assert message in str(raised.value)
