"""Job arguments and results as JSON, with datetime, date, time, UUID, Decimal and tuple kept.

Plain JSON types pass through; the extra types become ``{"__goodjob__": type, "value": text}``
and come back as themselves. Anything else is refused when the job is enqueued (not when it
runs), with the argument's path and type in the message, so a bad call fails where it was made.

What Postgres's ``jsonb`` cannot hold is refused the same way rather than by the database with
its own text (issue 11): NUL characters and lone surrogates in strings or keys, NaN and infinity,
containers nested more than :data:`MAX_DEPTH` deep, integers of more than :data:`MAX_INT_DIGITS`
digits, and a job whose encoded arguments exceed the ``max_payload_bytes`` setting. Floats of
16 digits or more before the point are tagged, because ``jsonb`` would hand them back as ints.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from goodjob.errors import SerializationError

TAG = "__goodjob__"
MAX_DEPTH = 64  # containers nested deeper are refused: decoding them would risk RecursionError
MAX_INT_DIGITS = 4000  # Python refuses to print (so to store) ints past 4,300 digits
_INT_BOUND = 10**MAX_INT_DIGITS
# Floats at least this large print as 1e+16: jsonb stores the number exactly and returns it as
# 10000000000000000, which json.loads makes an int; such floats travel tagged instead.
_FLOAT_AS_INT = 1e16

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
    "float": float,
}


class _NotPlain(Exception):
    """Raised by :func:`_encode_fast` for anything but plain, storable JSON; :func:`encode`
    then redoes the value the slow way, which tags it or names the offending path."""


def unstorable_text(text: str) -> bool:
    """Whether Postgres cannot store ``text``: a NUL character or a lone surrogate."""
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _encode_fast(value: Any, depth: int = 0) -> Any:
    """A copy of plain JSON data; builds no path strings (most arguments are plain)."""
    kind = type(value)
    if kind is str:
        if "\x00" in value or (not value.isascii() and unstorable_text(value)):
            raise _NotPlain
        return value
    if value is None or kind is bool:
        return value
    if kind is int:
        if -_INT_BOUND < value < _INT_BOUND:
            return value
        raise _NotPlain
    if kind is float:
        if value != value or not -_FLOAT_AS_INT < value < _FLOAT_AS_INT:
            raise _NotPlain  # NaN, infinity, or a float jsonb would turn into an int
        return value
    if depth >= MAX_DEPTH:
        raise _NotPlain
    if kind is list:
        return [_encode_fast(item, depth + 1) for item in value]
    if kind is dict:
        out = {}
        for key, item in value.items():
            if (
                type(key) is not str
                or key == TAG
                or "\x00" in key
                or (not key.isascii() and unstorable_text(key))
            ):
                raise _NotPlain
            out[key] = _encode_fast(item, depth + 1)
        return out
    raise _NotPlain


def encode(value: Any, path: str = "value") -> Any:
    """``value`` as JSON-ready data; raises SerializationError naming ``path`` and the type."""
    try:
        return _encode_fast(value)
    except _NotPlain:
        return _encode(value, path, 0)


def _describe_text(text: str) -> str:
    if "\x00" in text:
        return "a NUL character (\\x00), which Postgres cannot store"
    return "a lone surrogate, which is not valid Unicode"


def _encode(value: Any, path: str, depth: int) -> Any:
    """:func:`encode` with the path of every value, for tagged types and error messages."""
    kind = type(value)
    if kind is str:
        if unstorable_text(value):
            raise SerializationError(f"{path} contains {_describe_text(value)}")
        return value
    if value is None or kind is bool:
        return value
    if kind is int:
        if -_INT_BOUND < value < _INT_BOUND:
            return value
        raise SerializationError(f"{path} is an integer of more than {MAX_INT_DIGITS} digits")
    if kind is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise SerializationError(f"{path} is {value!r}, which JSON cannot hold")
        if not -_FLOAT_AS_INT < value < _FLOAT_AS_INT:
            return {TAG: "float", "value": repr(value)}
        return value
    if kind in (list, dict, tuple) and depth >= MAX_DEPTH:
        where = path if len(path) <= 60 else path[:60] + "..."
        raise SerializationError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if kind is list:
        return [_encode(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise SerializationError(
                    f"{path} has a key {_safe_repr(key)} of type {type(key).__name__};"
                    " keys must be str"
                )
            if key == TAG:
                raise SerializationError(f"{path} uses the reserved key {TAG!r}")
            if unstorable_text(key):
                raise SerializationError(f"{path} has a key that contains {_describe_text(key)}")
            out[key] = _encode(item, f"{path}[{key!r}]", depth + 1)
        return out
    if kind is tuple:
        return {
            TAG: "tuple",
            "value": [_encode(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)],
        }
    if kind in _ENCODERS:
        if kind in (dt.datetime, dt.time):
            _check_offset(value, path)
        tag, to_text = _ENCODERS[kind]
        try:
            text = to_text(value)
        except Exception as exc:  # e.g. a tzinfo whose utcoffset() raises
            raise SerializationError(
                f"{path} ({kind.__name__}) cannot be written: {exc!r}"
            ) from None
        return {TAG: tag, "value": text}
    raise SerializationError(
        f"{path} is of type {kind.__module__}.{kind.__qualname__}, which goodjob cannot store; "
        "pass JSON types, datetime, date, time, UUID, Decimal or tuples of them"
    )


def _check_offset(value: dt.datetime | dt.time, path: str) -> None:
    """Refuse a time zone offset with a fraction of a second, which ISO 8601 text drops."""
    try:
        offset = value.utcoffset()
    except Exception as exc:  # a tzinfo of the caller's whose utcoffset() raises
        raise SerializationError(f"{path} has a time zone that failed: {exc!r}") from None
    if offset is not None and offset.microseconds:
        raise SerializationError(
            f"{path} has a time zone offset of {offset}, with a fraction of a second that"
            " goodjob cannot store"
        )


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)[:80]
    except Exception:
        return f"<{type(value).__name__}>"


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
        decoder = _DECODERS.get(tag)
        if decoder is None:
            # "undecodable" is what goodjob's connections make of JSON nested too deep
            # (db/database.py); any other tag was not written by goodjob.
            detail = data.get("value") if tag == "undecodable" else f"an unknown tag {tag!r}"
            raise SerializationError(f"a stored value cannot be decoded: {detail}")
        try:
            return decoder(data["value"])
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise SerializationError(f"a stored {tag} cannot be decoded: {exc}") from None
    return data


def encode_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A job's call arguments, as stored in ``goodjob_jobs.arguments``, with its headers (a
    middleware's, e.g. a trace context) under the reserved key ``headers`` when it has any."""
    if headers:
        return {**encode_arguments(args, kwargs), "headers": _checked_headers(headers)}
    try:
        # Empty args or kwargs skip the copying calls (a batch's per-job client time).
        return {
            "args": [_encode_fast(a, 1) for a in args] if args else [],
            "kwargs": _encode_fast(kwargs) if kwargs else {},
        }
    except _NotPlain:
        pass
    return {
        "args": [_encode(a, f"argument {i}", 1) for i, a in enumerate(args)],
        "kwargs": {k: _encode(v, f"argument {k!r}", 1) for k, v in _checked(kwargs).items()},
    }


def _checked_headers(headers: dict[str, str]) -> dict[str, str]:
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise SerializationError(
                f"job header {key!r}: {value!r} is not text: use str keys and values"
            )
    return dict(headers)


def load_headers(text: str) -> dict[str, str]:
    """A job's headers from its stored arguments' JSON text (empty when it has none)."""
    if '"headers"' not in text:  # most jobs: no parsing
        return {}
    try:
        headers = json.loads(text).get("headers")
    except (ValueError, AttributeError, RecursionError):
        return {}
    return headers if isinstance(headers, dict) else {}


def _checked(kwargs: dict[str, Any]) -> dict[str, Any]:
    for key in kwargs:
        if unstorable_text(key):
            raise SerializationError(f"a keyword argument's name contains {_describe_text(key)}")
    return kwargs


def decode_arguments(data: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    return decode(data.get("args", [])), decode(data.get("kwargs", {}))


def load_arguments(text: str) -> tuple[list[Any], dict[str, Any]]:
    """A job's arguments from their stored JSON text (as the claim returns them), decoded.

    Rows written by goodjob are at most :data:`MAX_DEPTH` deep; anything else that cannot be
    decoded (nested too deep for Python, unknown tags) raises SerializationError, so the caller
    can end the job with that error instead of losing a thread (issue 11).
    """
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"expected an object with args and kwargs, got {type(data).__name__}")
        args, kwargs = decode_arguments(data)
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("args must be a list and kwargs an object")
        return args, kwargs
    except RecursionError:
        raise SerializationError("the job's arguments are nested too deep to decode") from None
    except Exception as exc:
        raise SerializationError(f"the job's arguments cannot be decoded: {exc!r}") from None


def dumps_checked(
    encoded: Sequence[Any], limit: int, describe: Callable[[int], str]
) -> tuple[str, list[int]]:
    """One JSON document (an array) of ``encoded`` values, and each value's size in bytes when
    it had to be measured.

    A value that encodes to more than ``limit`` bytes raises SerializationError, with
    ``describe(index)`` naming it. The document is dumped once: when it is no larger than
    ``limit`` no value can be, so only larger documents are measured value by value.
    """
    document = json.dumps(encoded)
    if len(document) <= limit:
        return document, []
    sizes = [len(json.dumps(value)) for value in encoded]
    for index, size in enumerate(sizes):
        if size > limit:
            raise too_large(describe(index), size, limit)
    return document, sizes


def too_large(what: str, size: int, limit: int) -> SerializationError:
    """The error for ``what`` (a job's arguments, a result) encoding to ``size`` bytes."""
    return SerializationError(
        f"{what}: {size:,} bytes as JSON, over the max_payload_bytes limit of {limit:,}"
    )


def dump_result(value: Any, limit: int) -> str:
    """A task's return value as the JSON text stored in ``goodjob_jobs.result``; raises
    SerializationError (and nothing else) when it cannot be stored or is over ``limit`` bytes."""
    try:
        text = json.dumps(encode(value, "the result"))
    except SerializationError:
        raise
    except Exception as exc:  # never expected: encode refuses what json.dumps could not write
        raise SerializationError(f"the result cannot be written as JSON: {exc!r}") from None
    if len(text) > limit:
        raise too_large("the result", len(text), limit)
    return text


def clean_text(text: str, limit: int | None = None) -> str:
    """``text`` in a form a Postgres ``text`` column accepts: NUL characters and lone surrogates
    written as escapes, and (with ``limit``) cut to that many characters with a note saying so.

    Used for what a job's failure leaves (its error message and backtrace), which goodjob must
    record whatever characters the task put in them (issue 11: a NUL in an error jammed the
    completer).
    """
    if not text.isascii() or "\x00" in text:
        text = text.replace("\x00", "\\x00")
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if limit is not None and len(text) > limit:
        cut = len(text) - limit
        text = text[:limit] + f"\n[... {cut:,} more characters not stored]"
    return text
