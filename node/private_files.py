"""Files only their owner may read: key files and passphrase files.

Reading refuses a file that group or others can access; writing goes through a temporary
file created with mode 0600 (whatever the umask) and fsynced, so the file appears whole or
not at all and is never readable by others, not even for a moment.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from node.errors import KeyFileError

FILE_MODE = 0o600
_TOO_OPEN = stat.S_IRWXG | stat.S_IRWXO


def read_private_text(path: Path, what: str) -> str:
    """The text of ``path`` (UTF-8), refused when group or others may access the file."""
    try:
        mode = path.stat().st_mode
        if mode & _TOO_OPEN:
            raise KeyFileError(
                f"{path} holds {what} but other users may access it (mode "
                f"{stat.S_IMODE(mode):03o}); run `chmod 600 {path}`"
            )
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read {what}: {exc}") from exc


def write_private_text(path: Path, text: str, *, replace: bool = False) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically.

    Without ``replace`` an existing file is left alone and :class:`FileExistsError` raised
    (two processes creating the same file at once: the first one wins); with ``replace`` the
    file is swapped for the new one in one step.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), FILE_MODE)
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(partial, path)
        else:
            os.link(partial, path)  # fails if the file appeared meanwhile
    finally:
        partial.unlink(missing_ok=True)
