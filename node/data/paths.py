"""Where the node looks for data sets on disk."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

DATA_DIR_ENV = "MEDSWARM_DATA"
"""Environment variable naming the data directory (the folder holding ``heart-disease/``...)."""

DATA_DIR_FLAG = "--data-dir"
"""The command-line flag that names the data directory; quoted in error messages."""

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The directory holding the ``node`` package: the project root in a source checkout."""


def default_data_dir(cwd: Path | None = None) -> Path:
    """Return the data directory used when neither the flag nor the environment names one.

    ``../shared/data`` next to the project root (found from this file, so it does not depend on
    the working directory) when that exists; otherwise ``../shared/data`` relative to ``cwd``
    (default: the working directory) when that exists; otherwise the project-root candidate, so
    that error messages name one definite place.
    """
    from_source = PROJECT_ROOT.parent / "shared" / "data"
    from_cwd = (cwd if cwd is not None else Path.cwd()).resolve().parent / "shared" / "data"
    for candidate in (from_source, from_cwd):
        if candidate.is_dir():
            return candidate
    return from_source


def resolve_data_dir(flag: str | None, env: Mapping[str, str]) -> Path:
    """Return the data directory: the flag if given, else ``$MEDSWARM_DATA``, else the default.

    Empty values count as not given; ``~`` is expanded and the result made absolute. The
    directory is not checked here: loaders report missing files with what to do about them.
    """
    for value in (flag, env.get(DATA_DIR_ENV)):
        if value:
            return Path(value).expanduser().resolve()
    return default_data_dir()
