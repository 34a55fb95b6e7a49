"""Hypothesis strategies for JSON text, valid and not, shared by the fuzz tests.

Decoders of JSON off the wire or the disk must survive more than :func:`json.dumps` makes:
numbers past what fits (``1e400``, thousands of digits), ``NaN``, lone surrogates, raw
non-ASCII, duplicate keys, and arrays or objects nested far deeper than any real message.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

SPECIAL_LITERALS = (
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "-0",
    "0.0",
    "1E2",
    "18446744073709551616",  # 2**64
    "-1",
    '"\\ud800"',
    '"\\u0000"',
    '"\\n"',
    "true",
    "false",
    "null",
    "[]",
    "{}",
    '""',
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**65),
    st.floats(),
    st.text(max_size=24),
)

json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def huge_numbers() -> st.SearchStrategy[str]:
    """Integers of up to 6,000 digits (Python refuses to parse more than 4,300)."""
    return st.builds(
        lambda sign, digits: sign + "9" * digits,
        st.sampled_from(["", "-"]),
        st.integers(min_value=18, max_value=6000),
    )


def deep_nesting(max_depth: int) -> st.SearchStrategy[str]:
    """Arrays or objects nested up to ``max_depth`` levels, closed or left open."""

    def nest(opener: str, depth: int, closed: bool) -> str:
        closer = "]" if opener == "[" else "}"
        return opener * depth + "0" + (closer * depth if closed else "")

    return st.builds(
        nest,
        st.sampled_from(["[", '{"a":']),
        st.integers(min_value=1, max_value=max_depth),
        st.booleans(),
    )


def near(valid: str) -> st.SearchStrategy[str]:
    """Strings one small edit away from ``valid``: what a validator must still refuse."""
    edits = [
        valid + "\n",
        valid + " ",
        " " + valid,
        valid + "0",
        valid[:-1],
        valid.upper(),
        valid.lower(),
        "0x" + valid,
        valid.removeprefix("0x"),
        valid + "\u0660",
        "",
    ]
    inserted = st.builds(
        lambda position, char: valid[:position] + char + valid[position:],
        st.integers(min_value=0, max_value=len(valid)),
        st.characters(),
    )
    return st.sampled_from(edits) | inserted


def fragments(max_depth: int, like: Any = None) -> st.SearchStrategy[str]:
    """JSON text of one value; ``like`` (a valid value) adds near misses of it."""
    options = [
        json_values.map(json.dumps),
        json_values.map(lambda value: json.dumps(value, ensure_ascii=False)),
        huge_numbers(),
        st.sampled_from(SPECIAL_LITERALS),
        deep_nesting(max_depth),
    ]
    if isinstance(like, str):
        options.append(near(like).map(json.dumps))
    elif isinstance(like, int) and not isinstance(like, bool):
        options.append(st.sampled_from([like - 1, like + 1, -like, 2**64, 2**64 - 1]).map(str))
    return st.one_of(options)


def render_object(pairs: list[tuple[str, str]], spaced: bool = False) -> str:
    """A JSON object from (key, value text) pairs, in the given order, repeats kept."""
    colon, comma = (": ", ", ") if spaced else (":", ",")
    return "{" + comma.join(json.dumps(key) + colon + value for key, value in pairs) + "}"
