"""What the fuzz suites draw: JSON of every shape, near-valid orders, raw bytes."""

import functools
from typing import Any

from hypothesis import strategies as st

SYMBOLS = ("AAPL", "MSFT")

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

ids = st.one_of(
    st.sampled_from(["o-1", "a/b", "a?b", "a#b", "x" * 65, "", "\u00e9", "\U0001f680", "ok.id"]),
    st.text(max_size=70),
    st.integers(),
)
numbers = st.one_of(
    st.sampled_from([0, 1, -1, 10, 2**31 - 1, 2**31, 2**62 - 1, 2**62, 2**63, 2**64, -(2**63)]),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.booleans(),
    st.none(),
)


# Built once: a strategy made inside orders() on every draw had hypothesis work out its
# properties (emptiness, reusable values: a walk of json_values) again each time.
_symbols = st.sampled_from(SYMBOLS) | ids
_sides = st.sampled_from(["BUY", "SELL", "buy", "HOLD", 1, None])
_optional = (
    ("type", st.sampled_from(["LIMIT", "MARKET", "STOP", "STOP_LIMIT", "x", 3])),
    ("tif", st.sampled_from(["GTC", "IOC", "FOK", "DAY", None])),
    ("post_only", st.sampled_from([True, False, "yes", 1])),
    ("client_ts_ns", numbers),
    ("user_id", ids),
    ("stop_price", numbers),
    ("display_quantity", numbers),
    ("request_id", json_values),
)


@functools.cache
def _dropped(names: tuple[str, ...]) -> st.SearchStrategy[set[str]]:
    """Up to two of these field names (one strategy per set of names a frame can have)."""
    return st.sets(st.sampled_from(names), max_size=2)


@st.composite
def orders(draw: Any) -> dict[str, Any]:
    """An order frame, mostly close to valid, every field sometimes wrong or missing."""
    frame: dict[str, Any] = {
        "symbol": draw(_symbols),
        "order_id": draw(ids),
        "side": draw(_sides),
        "price": draw(numbers),
        "quantity": draw(numbers),
    }
    for name, values in _optional:
        if draw(st.booleans()):
            frame[name] = draw(values)
    for name in draw(_dropped(tuple(sorted(frame)))):
        del frame[name]
    return frame
