"""Job arguments and results as JSON, with datetime, date, time, UUID, Decimal and tuple kept.

Plain JSON types pass through; the extra types become ``{"__goodjob__": type, "value": text}``
and come back as themselves. Anything else is refused when the job is enqueued (not when it
runs), with the argument's path and type in the message, so a bad call fails where it was made.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable
from typing import Any

from goodjob.errors import SerializationError

TAG = "__goodjob__"

_ENCODERS: dict[type, tuple[str, Callable[[Any], str]]] = {
    dt.datetime: ("datetime", dt.datetime.isoformat),
    dt.date: ("date", dt.date.isoformat),
    dt.time: ("time", dt.time.isoformat),
    uuid.UUID: ("uuid", str),
    decimal.Decimal: ("decimal", str),
}
_DECODERS: dict[str, Callable[[str], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "uuid": uuid.UUID,
    "decimal": decimal.Decimal,
}


class _NotPlain(Exception):
    """Raised by :func:`_encode_fast` for anything but plain JSON; :func:`encode` then redoes
    the value the slow way, which tags it or names the offending path."""


def _encode_fast(value: Any) -> Any:
    """A copy of plain JSON data; builds no path strings (most arguments are plain)."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if kind is float:
        if value != value or value in (_INF, _NINF):
            raise _NotPlain
        return value
    if kind is list:
        return [_encode_fast(item) for item in value]
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str or key == TAG:
                raise _NotPlain
            out[key] = _encode_fast(item)
        return out
    raise _NotPlain


_INF, _NINF = float("inf"), float("-inf")


def encode(value: Any, path: str = "value") -> Any:
    """``value`` as JSON-ready data; raises SerializationError naming ``path`` and the type."""
    try:
        return _encode_fast(value)
    except _NotPlain:
        return _encode(value, path)


def _encode(value: Any, path: str) -> Any:
    """:func:`encode` with the path of every value, for tagged types and error messages."""
    kind = type(value)
    if value is None or kind in (str, int, bool):
        return value
    if kind is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise SerializationError(f"{path} is {value!r}, which JSON cannot hold")
        return value
    if kind is list:
        return [_encode(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise SerializationError(
                    f"{path} has a key {key!r} of type {type(key).__name__}; keys must be str"
                )
            if key == TAG:
                raise SerializationError(f"{path} uses the reserved key {TAG!r}")
            out[key] = _encode(item, f"{path}[{key!r}]")
        return out
    if kind is tuple:
        return {
            TAG: "tuple",
            "value": [_encode(item, f"{path}[{i}]") for i, item in enumerate(value)],
        }
    if kind in _ENCODERS:
        tag, to_text = _ENCODERS[kind]
        return {TAG: tag, "value": to_text(value)}
    raise SerializationError(
        f"{path} is of type {kind.__module__}.{kind.__qualname__}, which goodjob cannot store; "
        "pass JSON types, datetime, date, time, UUID, Decimal or tuples of them"
    )


def decode(data: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(data, list):
        return [decode(item) for item in data]
    if isinstance(data, dict):
        tag = data.get(TAG)
        if tag is None:
            return {key: decode(item) for key, item in data.items()}
        if tag == "tuple":
            return tuple(decode(item) for item in data["value"])
        return _DECODERS[tag](data["value"])
    return data


def encode_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """A job's call arguments, as stored in ``goodjob_jobs.arguments``."""
    try:
        # Empty args or kwargs skip the copying calls (a batch's per-job client time).
        return {
            "args": [_encode_fast(a) for a in args] if args else [],
            "kwargs": _encode_fast(kwargs) if kwargs else {},
        }
    except _NotPlain:
        pass
    return {
        "args": [encode(a, f"argument {i}") for i, a in enumerate(args)],
        "kwargs": {k: encode(v, f"argument {k!r}") for k, v in kwargs.items()},
    }


def decode_arguments(data: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    return decode(data.get("args", [])), decode(data.get("kwargs", {}))
