"""JSON from a peer, or from a file something else may have written, parsed safely.

:func:`json.loads` recurses once per level of nested arrays and objects. Importing
eth-account raises the interpreter's recursion limit to 100,000 (its dependency py_ecc does so
on import), so in a medswarm process deeply nested text does not stop with a
``RecursionError``: the parser overflows the C stack and the process dies (from about 80,000
levels on the main thread). :func:`loads` refuses text nested deeper than any medswarm format
before it parses it.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32
"""Deepest nesting :func:`loads` accepts; medswarm's formats use four levels at most."""

# A string (to the closing quote, or to the end if there is none) or a bracket.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


def loads(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``text`` as :func:`json.loads` does, refusing nesting deeper than ``max_depth``.

    Raises :class:`json.JSONDecodeError` (a ``ValueError``) for text nested too deeply as
    for any other malformed text, and ``ValueError`` for an integer of more than 4,300 digits.
    """
    depth = 0
    for token in _TOKEN.finditer(text):
        opening = token.group()[0]
        if opening in "[{":
            depth += 1
            if depth > max_depth:
                raise json.JSONDecodeError(
                    f"arrays and objects nested deeper than {max_depth} levels", text, token.start()
                )
        elif opening in "]}":
            depth -= 1
    try:
        return json.loads(text)
    except RecursionError as exc:  # the stack was nearly full before parsing began
        raise json.JSONDecodeError(f"too deeply nested to parse here ({exc})", text, 0) from None
