"""The passphrase that unlocks a node's key files, and where it came from.

It comes from a passphrase file, when one is named (``[node] passphrase_file`` for a node,
``--passphrase-file`` for ``medswarm consortium``), else from the environment variable
``MEDSWARM_PASSPHRASE``. A named file wins over the variable (a warning says the variable is
not used). The file must be readable by its owner only; its content is the passphrase, without
one trailing newline. An empty passphrase is refused. The entry points read the environment
and pass it in; nothing here logs or prints the passphrase, and its ``repr`` shows only the
source.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from node.errors import PassphraseError
from node.private_files import read_private_text

logger = logging.getLogger(__name__)

ENV_VAR = "MEDSWARM_PASSPHRASE"
NODE_FILE_OPTION = "node.passphrase_file"


class Passphrase:
    """A passphrase (or none), where it came from and how an operator gives one."""

    __slots__ = ("_secret", "options", "source")

    def __init__(self, secret: str | None, source: str, options: str) -> None:
        if secret == "":
            raise PassphraseError(f"the passphrase from {source} is empty: give a non-empty one")
        self._secret = secret
        self.source = source  # e.g. "MEDSWARM_PASSPHRASE" (never the passphrase itself)
        self.options = options  # e.g. "MEDSWARM_PASSPHRASE or node.passphrase_file"

    @classmethod
    def missing(cls, options: str) -> Passphrase:
        """No passphrase was given."""
        return cls(None, "nowhere", options)

    @property
    def given(self) -> bool:
        return self._secret is not None

    def reveal(self) -> str:
        """The passphrase itself, for a key derivation; never log it."""
        if self._secret is None:
            raise PassphraseError(f"no passphrase was given: set {self.options}")
        return self._secret

    def __repr__(self) -> str:
        return f"Passphrase(from {self.source})" if self.given else "Passphrase(none given)"


def resolve_passphrase(
    environ: Mapping[str, str], passphrase_file: Path | None, file_option: str
) -> Passphrase:
    """The passphrase from ``passphrase_file`` if given, else from ``MEDSWARM_PASSPHRASE``.

    ``file_option`` names the setting that gave the file (for messages), e.g.
    ``node.passphrase_file`` or ``--passphrase-file``.
    """
    options = f"{ENV_VAR} or {file_option}"
    from_env = environ.get(ENV_VAR)
    if passphrase_file is not None:
        if from_env is not None:
            logger.warning(
                "%s is set but not used: %s (%s) gives the passphrase",
                ENV_VAR,
                file_option,
                passphrase_file,
            )
        secret = _read_passphrase_file(passphrase_file, file_option)
        return Passphrase(secret, f"{file_option} {passphrase_file}", options)
    if from_env is None:
        return Passphrase.missing(options)
    if from_env == "":
        raise PassphraseError(
            f"{ENV_VAR} is set but empty: give it the passphrase, or unset it and name a "
            f"passphrase file in {file_option}"
        )
    return Passphrase(from_env, ENV_VAR, options)


def node_passphrase(passphrase_file: str, base_dir: Path, environ: Mapping[str, str]) -> Passphrase:
    """A node's passphrase: ``node.passphrase_file`` (relative to ``base_dir``, the config
    file's directory) when set, else ``MEDSWARM_PASSPHRASE``."""
    path = None
    if passphrase_file:
        path = Path(passphrase_file)
        path = path if path.is_absolute() else base_dir / path
    return resolve_passphrase(environ, path, NODE_FILE_OPTION)


def _read_passphrase_file(path: Path, file_option: str) -> str:
    if not path.is_file():
        raise PassphraseError(
            f"{file_option} {path} does not exist: create it (mode 0600) with the passphrase "
            f"as its only line, or leave {file_option} empty and set {ENV_VAR}"
        )
    text = read_private_text(path, "a passphrase")
    secret = text.removesuffix("\n").removesuffix("\r")
    if not secret:
        raise PassphraseError(f"{file_option} {path} is empty: write the passphrase into it")
    return secret
