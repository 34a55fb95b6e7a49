"""Look for secret keys and passphrases in files and captured output.

A 32-byte key is looked for as hex in any case (so with or without ``0x``) and as raw bytes;
a passphrase as its UTF-8 bytes. Files are read in chunks that overlap by the longest needle,
so a large file costs no more memory than a chunk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Finding:
    """A secret found somewhere: which one, in what form, where."""

    where: str
    secret: str
    form: str


@dataclass(frozen=True)
class _Needle:
    secret: str
    form: str
    data: bytes
    any_case: bool


@dataclass
class ScanReport:
    """What a scan found and which files it read."""

    findings: list[Finding] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


class KeyMaterial:
    """The secrets to look for."""

    def __init__(self) -> None:
        self._needles: list[_Needle] = []

    def add_key(self, name: str, key: bytes) -> None:
        """A secret key: found as hex in any case (with or without 0x) or as raw bytes."""
        if len(key) < 16:
            raise ValueError(f"{name}: a key this short would match by chance")
        self._needles.append(_Needle(name, "hex", key.hex().encode(), any_case=True))
        self._needles.append(_Needle(name, "raw bytes", key, any_case=False))

    def add_passphrase(self, name: str, passphrase: str) -> None:
        """A passphrase: found as its exact UTF-8 bytes."""
        if len(passphrase) < 12:
            raise ValueError(f"{name}: a passphrase this short would match by chance")
        self._needles.append(_Needle(name, "text", passphrase.encode(), any_case=False))

    def find(self, where: str, data: bytes) -> list[Finding]:
        """The secrets in ``data`` (one finding per secret and form)."""
        lowered = data.lower()
        return [
            Finding(where, needle.secret, needle.form)
            for needle in self._needles
            if needle.data in (lowered if needle.any_case else data)
        ]

    def scan(self, *roots: Path) -> ScanReport:
        """Every regular file under ``roots`` (hidden ones too; symbolic links not followed)."""
        report = ScanReport()
        for root in roots:
            paths = [root] if root.is_file() else _files_under(root)
            for path in paths:
                report.files.append(path)
                report.findings.extend(self._scan_file(path))
        return report

    def _scan_file(self, path: Path) -> list[Finding]:
        overlap = max((len(n.data) for n in self._needles), default=1) - 1
        found: dict[tuple[str, str], Finding] = {}
        tail = b""
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                window = tail + chunk
                for finding in self.find(str(path), window):
                    found.setdefault((finding.secret, finding.form), finding)
                tail = window[-overlap:] if overlap else b""
        return list(found.values())


def _files_under(root: Path) -> list[Path]:
    files = []
    for directory, _dirs, names in os.walk(root, followlinks=False):
        for name in names:
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                files.append(path)
    return sorted(files)
