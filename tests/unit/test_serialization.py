"""Tagged JSON: the extra types round-trip, everything else is refused with its path and type."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goodjob.config import DEFAULT_MAX_PAYLOAD_BYTES
from goodjob.errors import SerializationError
from goodjob.serialization import (
    decode,
    decode_arguments,
    dumps_checked,
    encode,
    encode_arguments,
    load_arguments,
)
from tests.helpers import nested
from tests.strategies import any_text, same, values

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


@settings(max_examples=500, deadline=None)
@given(args=st.lists(values, max_size=3), kwargs=st.dictionaries(any_text, values, max_size=3))
def test_any_arguments_round_trip_or_are_refused_with_a_serialization_error(
    args: list[Any], kwargs: dict[str, Any]
) -> None:
    """Issue 11: whatever a caller passes, encoding either keeps it or raises
    SerializationError; never a RecursionError, ValueError or another exception."""
    try:
        encoded = encode_arguments(tuple(args), kwargs)
        text = dumps_checked([encoded], DEFAULT_MAX_PAYLOAD_BYTES, lambda index: "the job")[0]
    except SerializationError:
        return
    [stored] = json.loads(text)
    back_args, back_kwargs = decode_arguments(stored)
    assert same(back_args, list(args))
    assert same(back_kwargs, kwargs)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("a\x00b", "NUL character"),
        ("\udc80", "lone surrogate"),
        ({"k\x00": 1}, "key that contains a NUL"),
        (10**4001, "more than 4000 digits"),
        (nested(70), "nested more than 64 levels deep"),
    ],
    ids=["nul", "surrogate", "nul-key", "huge-int", "deep"],
)
def test_what_postgres_cannot_store_is_refused_naming_the_argument(
    value: Any, fragment: str
) -> None:
    with pytest.raises(SerializationError, match="argument 'x'") as info:
        encode_arguments((), {"x": value})
    assert fragment in str(info.value)


def test_an_oversized_job_is_refused_naming_its_largest_argument() -> None:
    with pytest.raises(SerializationError, match="max_payload_bytes limit of 1,000") as info:
        dumps_checked([{"args": ["x" * 2_000]}], 1_000, lambda index: f"job {index}")
    assert "job 0" in str(info.value)


def test_floats_that_jsonb_would_turn_into_ints_are_tagged() -> None:
    for value in (1e16, -3e300):
        data = encode(value)
        assert data == {"__goodjob__": "float", "value": repr(value)}
        assert decode(data) == value
        assert type(decode(data)) is float


def test_stored_values_that_cannot_be_decoded_raise_serialization_error() -> None:
    for stored in (
        {"__goodjob__": "undecodable", "value": "nested too deep to decode"},
        {"__goodjob__": "mystery", "value": "x"},
        {"__goodjob__": "datetime", "value": "not a date"},
    ):
        with pytest.raises(SerializationError, match="cannot be decoded"):
            decode(stored)
    with pytest.raises(SerializationError, match="nested too deep to decode"):
        load_arguments('{"args": [' + "[" * 5_000 + "]" * 5_000 + "]}")
