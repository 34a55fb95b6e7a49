"""Checks on a data set's files: presence (with a helpful error) and MD5 checksums."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from node.data.paths import DATA_DIR_ENV, DATA_DIR_FLAG
from node.data.types import DataFile, DatasetSpec, SiteInfo
from node.errors import ChecksumMismatch, DataFileMissing


def site_path(spec: DatasetSpec, site: SiteInfo, data_dir: Path) -> Path:
    """Return where ``site``'s file of ``spec`` is expected under ``data_dir``."""
    return data_dir / spec.subdir / site.filename


def _files_of(spec: DatasetSpec, sites: Sequence[SiteInfo]) -> list[DataFile]:
    """The distinct files ``sites`` read: their own files, then the data set's shared ones."""
    files = [DataFile(site.filename, site.md5) for site in sites]
    return list(dict.fromkeys([*files, *(spec.shared_files if sites else ())]))


def _checksum_list(spec: DatasetSpec) -> str:
    return ", ".join(f"{f.filename} {f.md5}" for f in _files_of(spec, spec.sites))


def require_files(spec: DatasetSpec, data_dir: Path, sites: Sequence[SiteInfo]) -> list[Path]:
    """Return the paths of the files ``sites`` read, or raise :class:`DataFileMissing`.

    The files are the sites' own and the data set's shared files, each once. The message says
    which files are missing, how to point the node at another data directory, and where to
    download the originals (with their MD5 checksums).
    """
    paths = [data_dir / spec.subdir / f.filename for f in _files_of(spec, sites)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        listed = ", ".join(str(p) for p in missing)
        raise DataFileMissing(
            f"{spec.title}: data file(s) not found: {listed}. "
            f"The data directory is {data_dir}; point the node at the directory holding "
            f"'{spec.subdir}/' with {DATA_DIR_FLAG} or the {DATA_DIR_ENV} environment variable. "
            f"To get the files, download {spec.download_url} ({spec.download_note}) into "
            f"{data_dir / spec.subdir} and check them with verify_checksums; "
            f"expected MD5: {_checksum_list(spec)}.",
            paths=missing,
            url=spec.download_url,
        )
    return paths


def file_md5(path: Path) -> str:
    """Return the lowercase hex MD5 digest of the file at ``path``."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def check_spec_checksums(spec: DatasetSpec, data_dir: Path) -> list[Path]:
    """Check every file of ``spec`` against its published MD5; return the checked paths.

    Raises :class:`DataFileMissing` if a file is absent and :class:`ChecksumMismatch` (listing
    every file that differs) if any digest is wrong.
    """
    paths = require_files(spec, data_dir, spec.sites)
    wrong = [
        f"{path} has MD5 {actual}, expected {file.md5}"
        for file, path in zip(_files_of(spec, spec.sites), paths, strict=True)
        if (actual := file_md5(path)) != file.md5
    ]
    if wrong:
        raise ChecksumMismatch(
            f"{spec.title}: {'; '.join(wrong)}. The file(s) are corrupt or a different "
            f"version; download the originals again from {spec.download_url}."
        )
    return paths
