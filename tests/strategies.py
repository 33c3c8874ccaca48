"""Hypothesis strategies for job arguments: what users pass, and what they should not (issue 11).

``values()`` draws anything a caller might hand ``enqueue``: every JSON type, the extra types
goodjob keeps (datetime, date, time, UUID, Decimal, tuples), and the hostile ones (NUL characters
and lone surrogates, NaN and infinity, floats jsonb would turn into ints, huge integers, deep
nesting, sets, bytes, objects, non-text keys).
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from typing import Any

from hypothesis import strategies as st

from tests.helpers import nested

# Every code point, surrogates and NUL included (the default leaves surrogates out).
any_text = st.text(st.characters(codec=None, categories=None), max_size=20)

offsets = st.timedeltas(
    min_value=-dt.timedelta(hours=23, minutes=59), max_value=dt.timedelta(hours=23, minutes=59)
).map(dt.timezone)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**3990, max_value=10**4010),
    st.floats(),  # NaN and infinity included
    st.sampled_from([1e16, -1e300, 5e-324, -0.0, 2.0**53 + 2]),
    any_text,
    st.binary(max_size=4),
    st.datetimes(timezones=st.none() | offsets),
    st.dates(),
    st.times(timezones=st.none() | offsets),
    st.uuids(),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.just(object()),
)


values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(any_text, children, max_size=4),
        st.dictionaries(st.integers() | st.booleans(), children, min_size=1, max_size=2),
        st.frozensets(st.integers(), max_size=2),
    ),
    max_leaves=12,
) | st.integers(min_value=60, max_value=80).map(nested)


def same(a: Any, b: Any) -> bool:
    """Equality as a round trip promises it: exact types, NaN decimals equal to themselves,
    datetimes and times with the same offset."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dt.datetime | dt.time):
        return a == b and a.utcoffset() == b.utcoffset()
    if isinstance(a, uuid.UUID | dt.date):
        return bool(a == b)
    return bool(a == b)
