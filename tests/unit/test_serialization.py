"""Tagged JSON: the extra types round-trip, everything else is refused with its path and type."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from typing import Any

import pytest

from goodjob.errors import SerializationError
from goodjob.serialization import decode, decode_arguments, encode, encode_arguments

VALUES: list[Any] = [
    None,
    True,
    0,
    -7,
    1.5,
    "text",
    [1, "a", None],
    {"a": {"b": [1, 2]}},
    dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    dt.datetime(2026, 1, 2, 3, 4, 5),  # naive stays naive
    dt.date(2026, 2, 28),
    dt.time(23, 59, 58, 123),
    dt.time(1, 2, tzinfo=dt.UTC),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    decimal.Decimal("3.14159265358979323846264338327950288"),
    (1, (2, "x"), [dt.date(2020, 1, 1)]),
    {"when": [dt.datetime(2000, 1, 1, tzinfo=dt.UTC)], "ids": (uuid.UUID(int=5),)},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_round_trip_through_json_text(value: Any) -> None:
    back = decode(json.loads(json.dumps(encode(value))))
    assert back == value
    assert type(back) is type(value)
    if isinstance(value, dt.datetime | dt.time):
        assert back.utcoffset() == value.utcoffset()


def test_arguments_round_trip_positional_and_keyword() -> None:
    data = encode_arguments((1, dt.date(2024, 5, 6)), {"amount": decimal.Decimal("9.99")})
    assert decode_arguments(json.loads(json.dumps(data))) == (
        [1, dt.date(2024, 5, 6)],
        {"amount": decimal.Decimal("9.99")},
    )


class Opaque:
    pass


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        (({1, 2},), {}, "argument 0 is of type builtins.set"),
        ((b"raw",), {}, "argument 0 is of type builtins.bytes"),
        (
            (),
            {"thing": Opaque()},
            "argument 'thing' is of type tests.unit.test_serialization.Opaque",
        ),
        ((float("nan"),), {}, "argument 0 is nan"),
        ((float("inf"),), {}, "argument 0 is inf"),
        (({1: "a"},), {}, "argument 0 has a key 1 of type int"),
        (([1, {"deep": {2.5}}],), {}, "argument 0[1]['deep'] is of type builtins.set"),
        (({"__goodjob__": "x"},), {}, "reserved key"),
    ],
)
def test_rejected_with_argument_and_type(
    args: tuple[Any, ...], kwargs: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(SerializationError) as info:
        encode_arguments(args, kwargs)
    assert fragment in str(info.value)
    assert isinstance(info.value, TypeError)  # callers catching TypeError see it too
