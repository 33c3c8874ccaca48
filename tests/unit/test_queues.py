"""GoodJob's queue strings: every form, and malformed ones rejected with the bad part quoted."""

from __future__ import annotations

import pytest

from goodjob.errors import QueueStringError
from goodjob.queues import PoolSpec, QueueSelection, parse


@pytest.mark.parametrize(
    ("text", "pools"),
    [
        ("*", [PoolSpec(QueueSelection("all"), 5)]),
        ("mail", [PoolSpec(QueueSelection("include", ("mail",)), 5)]),
        ("a,b", [PoolSpec(QueueSelection("include", ("a", "b")), 5)]),
        ("-a,b", [PoolSpec(QueueSelection("exclude", ("a", "b")), 5)]),
        ("+a,b", [PoolSpec(QueueSelection("ordered", ("a", "b")), 5)]),
        ("*:2", [PoolSpec(QueueSelection("all"), 2)]),
        (
            "mail:2;+urgent,default:3;*",
            [
                PoolSpec(QueueSelection("include", ("mail",)), 2),
                PoolSpec(QueueSelection("ordered", ("urgent", "default")), 3),
                PoolSpec(QueueSelection("all"), 5),
            ],
        ),
        (
            " a , b : 4 ; -c ",
            [
                PoolSpec(QueueSelection("include", ("a", "b")), 4),
                PoolSpec(QueueSelection("exclude", ("c",)), 5),
            ],
        ),
    ],
)
def test_every_form_parses(text: str, pools: list[PoolSpec]) -> None:
    assert parse(text, 5) == pools


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the queue string is empty"),
        ("mail:two", '"mail:two": thread count must be a whole number'),
        ("mail:0", '"mail:0": thread count must be at least 1'),
        ("mail:-1", "thread count must be a whole number"),
        ("a;;b", "empty pool"),
        ("a;", "empty pool"),
        ("a,,b", '"a,,b": empty queue name'),
        ("*,mail", "cannot be combined"),
        (":3", 'no queue before ":"'),
        ("ma il", 'queue name "ma il" may only hold'),
        ("-", "empty queue name"),
    ],
)
def test_malformed_strings_are_rejected_with_the_bad_part(text: str, message: str) -> None:
    with pytest.raises(QueueStringError) as info:
        parse(text, 5)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("selection", "queue", "served"),
    [
        (QueueSelection(), "anything", True),
        (QueueSelection("include", ("a", "b")), "a", True),
        (QueueSelection("include", ("a", "b")), "c", False),
        (QueueSelection("exclude", ("a",)), "a", False),
        (QueueSelection("exclude", ("a",)), "b", True),
        (QueueSelection("ordered", ("a", "b")), "b", True),
        (QueueSelection("ordered", ("a", "b")), "c", False),
    ],
)
def test_serves_routes_wakeups(selection: QueueSelection, queue: str, served: bool) -> None:
    assert selection.serves(queue) is served


def test_round_trips_to_text() -> None:
    assert [str(p.queues) for p in parse("a,b;-c;+d,e;*", 1)] == ["a,b", "-c", "+d,e", "*"]
