"""Fuzzing the configuration loader: TOML text and the tables parsed from it.

Property: :func:`load_config` and :func:`config_from_dict` return a configuration or raise
:class:`ConfigError`. A configuration they return reads back the same from the values it
records (:func:`to_toml_dict`), and a table read from TOML text gives what the same table
given as a dict gives.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import re
import tomllib
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.config import MedswarmConfig, config_from_dict, load_config, to_toml_dict
from node.data import TASKS
from node.errors import ConfigError
from tests.fuzz.budget import FUZZ, fewer, one_input

TARGET = "node load_config + config_from_dict"
TABLES: dict[str, Any] = typing.get_type_hints(MedswarmConfig)
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

toml_scalars = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
)
toml_values: st.SearchStrategy[Any] = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
# tomllib reads integers of up to 4,300 digits (as Python does), so tables hold no longer ones
huge_integers = st.integers(min_value=300, max_value=4300).map(lambda digits: 10 ** (digits - 1))
edge_integers = st.sampled_from([0, 1, -1, 2**31, 2**63 - 1, -(2**63), 2**64])


def values_for(hint: Any) -> st.SearchStrategy[Any]:
    """Values of a key's type, near its edges, and of other types."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        typed: st.SearchStrategy[Any] = st.sampled_from(typing.get_args(hint))
    elif origin in (typing.Union, types.UnionType):
        typed = st.one_of([values_for(a) for a in typing.get_args(hint) if a is not type(None)])
    elif origin is tuple:
        typed = st.lists(st.text(max_size=8), max_size=3)
    elif hint is bool:
        typed = st.booleans()
    elif hint is int:
        typed = st.integers(min_value=-2, max_value=40) | edge_integers | huge_integers
    elif hint is float:
        typed = (
            st.floats()
            | st.integers(min_value=-2, max_value=40)
            | edge_integers
            | huge_integers
            | st.sampled_from([math.inf, -math.inf, math.nan, 1e-300, 0.0, -0.0])
        )
    elif hint is str:
        typed = st.text(max_size=12) | st.sampled_from(sorted(TASKS))
    else:
        typed = toml_values
    return st.one_of(typed, typed, toml_values)


@st.composite
def config_tables(draw: st.DrawFn) -> dict[str, Any]:
    """Tables with their real names and keys, values of the right type or not."""
    raw: dict[str, Any] = {}
    for table in draw(st.lists(st.sampled_from(sorted(TABLES)), unique=True, max_size=6)):
        if draw(st.integers(min_value=0, max_value=19)) == 0:
            raw[table] = draw(toml_scalars)  # not a table at all
            continue
        hints = typing.get_type_hints(TABLES[table])
        names = [f.name for f in dataclasses.fields(TABLES[table])]
        keys = draw(st.lists(st.sampled_from(names), unique=True, max_size=5))
        raw[table] = {key: draw(values_for(hints[key])) for key in keys}
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            raw[table][draw(st.text(max_size=8))] = draw(toml_values)
    if draw(st.integers(min_value=0, max_value=19)) == 0:
        raw[draw(st.text(max_size=8))] = draw(toml_values)
    return raw


def _key(name: str) -> str:
    return name if BARE_KEY.fullmatch(name) else json.dumps(name)


def toml_text(value: Any) -> str:
    """``value`` written as TOML (which may refuse it: lone surrogates, a DEL, ...)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {toml_text(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def toml_document(raw: dict[str, Any]) -> str:
    lines = [
        f"{_key(key)} = {toml_text(value)}"
        for key, value in raw.items()
        if not isinstance(value, dict)
    ]
    for table, values in raw.items():
        if isinstance(values, dict):
            lines.append(f"[{_key(table)}]")
            lines += [f"{_key(key)} = {toml_text(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


@st.composite
def edited_documents(draw: st.DrawFn) -> str:
    """A document of real tables and keys with characters or lines cut, repeated or added."""
    lines = toml_document(draw(config_tables())).splitlines()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        position = draw(st.integers(min_value=0, max_value=len(lines)))
        edit = draw(st.sampled_from(["repeat", "drop", "insert", "cut"]))
        if edit == "repeat" and position < len(lines):
            lines.insert(position, lines[position])
        elif edit == "drop" and position < len(lines):
            del lines[position]
        elif edit == "insert":
            lines.insert(position, draw(st.text(max_size=30)))
        elif edit == "cut" and position < len(lines) and lines[position]:
            line = lines[position]
            start = draw(st.integers(min_value=0, max_value=len(line) - 1))
            lines[position] = line[:start] + line[start + draw(st.integers(1, 5)) :]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("config") / "node.toml"


def _plain(value: Any) -> Any:
    """Recorded values as a TOML file holds them: tuples become lists."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


def _check_config(config: MedswarmConfig) -> None:
    recorded = {
        table: {k: v for k, v in values.items() if v is not None}
        for table, values in _plain(to_toml_dict(config)).items()
    }
    assert repr(config_from_dict(recorded)) == repr(config), (
        "the recorded values read back differently"
    )


def check_text(path: Path, data: bytes) -> MedswarmConfig | None:
    path.write_bytes(data)
    with one_input(TARGET):
        try:
            config: MedswarmConfig | None = load_config(path)
        except ConfigError:
            config = None
    if config is not None:
        _check_config(config)
    return config


def check_tables(raw: dict[str, Any]) -> MedswarmConfig | None:
    with one_input(TARGET):
        try:
            config: MedswarmConfig | None = config_from_dict(raw)
        except ConfigError:
            config = None
    if config is not None:
        _check_config(config)
    return config


@FUZZ
@given(config_tables())
def test_tables(raw: dict[str, Any]) -> None:
    check_tables(raw)


@FUZZ
@given(config_tables())
def test_tables_as_toml_text(config_path: Path, raw: dict[str, Any]) -> None:
    text = toml_document(raw)
    from_text = check_text(config_path, text.encode("utf-8", errors="surrogatepass"))
    try:
        parsed = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError):
        return
    if repr(parsed) == repr(raw):
        from_tables = check_tables(raw)
        assert repr(from_text) == repr(from_tables)


@FUZZ
@given(edited_documents())
def test_edited_toml_text(config_path: Path, text: str) -> None:
    check_text(config_path, text.encode("utf-8", errors="surrogatepass"))


def _nested(opener: str, depth: int) -> str:
    closer = {"[": "]", "{a = ": "}"}[opener]
    return "[federation]\nname = " + opener * depth + "1" + closer * depth + "\n"


@fewer(20)
@given(st.sampled_from(["[", "{a = "]), st.integers(min_value=1, max_value=200_000))
def test_deeply_nested_toml(config_path: Path, opener: str, depth: int) -> None:
    check_text(config_path, _nested(opener, depth).encode())


@FUZZ
@given(
    st.sampled_from(["rounds", "seed", "quorum", "update_timeout", "reward_pool_eth"]),
    st.integers(min_value=1, max_value=6000),
)
def test_long_integers_in_toml(config_path: Path, key: str, digits: int) -> None:
    check_text(config_path, f"[federation]\n{key} = {'9' * digits}\n".encode())


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text(config_path: Path, text: str) -> None:
    check_text(config_path, text.encode("utf-8", errors="surrogatepass"))


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(config_path: Path, data: bytes) -> None:
    check_text(config_path, data)
