"""``medswarm --log-json``: each log record one JSON object on one line."""

from __future__ import annotations

import json
import logging
import sys

from medswarm.cli import build_parser
from medswarm.json_logs import JsonLineFormatter


def record(message: str, *args: object, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord(
        "node.hospital",
        logging.WARNING,
        __file__,
        1,
        message,
        args,
        exc_info,  # type: ignore[arg-type]
    )


def test_a_record_is_one_line_of_json_with_its_arguments_filled_in() -> None:
    line = JsonLineFormatter().format(record("%s: round %d failed\nretrying", "va", 3))

    assert "\n" not in line
    document = json.loads(line)
    assert document["message"] == "va: round 3 failed\nretrying"
    assert document["level"] == "WARNING" and document["logger"] == "node.hospital"
    assert document["time"].endswith("+00:00") and isinstance(document["ts"], float)
    assert "exception" not in document


def test_an_exception_is_kept_with_its_traceback() -> None:
    try:
        raise ValueError("bad value")
    except ValueError:
        line = JsonLineFormatter().format(record("failed", exc_info=sys.exc_info()))

    document = json.loads(line)
    assert document["exception"].startswith("Traceback (most recent call last):")
    assert document["exception"].endswith("ValueError: bad value")


def test_the_flag_is_on_the_top_level_command() -> None:
    args = build_parser().parse_args(["--log-json", "init", "--dir", "somewhere"])

    assert args.log_json is True
