"""Log records as JSON lines, for ``medswarm --log-json`` (only the CLI installs it).

Each record is one JSON object on one line: ``ts`` (seconds since the epoch), ``time`` (UTC,
ISO 8601), ``level``, ``logger``, ``message`` (arguments filled in), ``pid``, and ``exception``
(the formatted traceback) when the record carries one.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime


class JsonLineFormatter(logging.Formatter):
    """Formats a record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "ts": round(record.created, 6),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exception"] = record.exc_text
        return json.dumps(document, ensure_ascii=False, default=str)
