"""Parsing untrusted JSON without letting its nesting take the process down."""

from __future__ import annotations

import json

import pytest

from medswarm import untrusted_json


def test_parses_what_json_parses() -> None:
    text = '{"a":[1,2.5,{"b":null}],"c":"x"}'
    assert untrusted_json.loads(text) == json.loads(text)


def test_nesting_up_to_the_limit_is_accepted_and_one_more_level_is_not() -> None:
    assert untrusted_json.loads("[" * 4 + "]" * 4, max_depth=4) == [[[[]]]]
    with pytest.raises(json.JSONDecodeError, match="nested deeper than 4 levels") as caught:
        untrusted_json.loads("[" * 5 + "]" * 5, max_depth=4)
    assert caught.value.pos == 4  # the fifth opening bracket


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"name": "[[[[[{{{{{", "quote": 'a\\"[[[[[['})
    assert untrusted_json.loads(text, max_depth=1) == json.loads(text)


def test_nesting_deep_enough_to_overflow_the_c_stack_is_refused_before_parsing() -> None:
    # json.loads on this kills a process whose recursion limit eth-account raised to 100,000.
    with pytest.raises(json.JSONDecodeError, match="nested deeper"):
        untrusted_json.loads("[" * 200_000 + "]" * 200_000)


def test_an_unterminated_string_is_still_malformed() -> None:
    with pytest.raises(json.JSONDecodeError):
        untrusted_json.loads('["abc')
