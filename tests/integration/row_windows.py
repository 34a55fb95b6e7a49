"""A hospital's rows as 8-byte windows, in every encoding a leak of them could plausibly take,
and a search of captured bytes for them.

A row leaks if any 8 consecutive bytes of one of its encodings appear in what the node sends.
The encodings of one Fed-Heart-Disease row (features, then the label):

- ``loaded/*``: the arrays as the loader standardised them (the site's own statistics);
- ``trained/*``: the arrays the node trained on last (under federated standardisation, scaled
  by the federation's statistics; otherwise the loaded ones again);
- ``raw/*``: the encoded features before standardisation (``load_raw_split``);
- ``file/*``: all 14 columns of the file's line as parsed (NaN where missing);
- ``file/text``: the line of the file itself.

Each numeric one as little-endian float32 and float64 (``raw`` also as the float64 nearest the
decimal in the file, which is not the float32 widened). Windows start at every byte, so a row
cut anywhere, or laid out beside other bytes, is still found.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from node.data import SiteData, dataset_spec, site_info
from node.data.heart_disease import load_raw_split, read_table

WINDOW = 8
# A window needs this many bytes other than its most common one to be evidence alone (see
# RowWindows).
MIN_INFORMATIVE = 3
# Every row must keep at least this many windows in every encoding once the exclusions are
# made, or the search could miss a leak of that row in that encoding.
MIN_WINDOWS_PER_ROW = 8


@dataclass(frozen=True)
class Hit:
    """A window of a row found in captured bytes."""

    encoding: str
    row: int
    window: bytes
    offset: int  # in the captured stream


@dataclass(frozen=True)
class Exclusions:
    """How the windows were searched for (see :class:`RowWindows`), counted once per row,
    encoding and start."""

    lengthened: int  # too plain alone: searched with the row's next bytes
    plain: int  # too plain even to the end of the row: not searched
    public: int  # in bytes every node sends whatever its rows: not searched


class RowWindows:
    """The 8-byte windows of one site's rows; :meth:`find` searches bytes for them.

    Two kinds of window are no evidence of a row by themselves:

    - *Plain windows*, with fewer than :data:`MIN_INFORMATIVE` bytes other than their most
      common byte: a float32 integer or 0.0 beside another, a float64 small integer, a run of
      zeros or 0xff. Any binary framing writes such bytes by chance: Yamux headers (big-endian
      ids and lengths), protobuf fields, 8-byte big-endian lengths, ABI words and strings
      padded with zeros to 32 bytes (the end of a registered peer id, "WC" and six zeros,
      matched a row's float32 215.0 and 0.0 in one run), and thousands of rows share them. Such
      a window is searched for together with the row's bytes after it, up to the
      :data:`MIN_INFORMATIVE`-th byte that is not its most common one; a leaked row brings
      those along. One that the row ends before is not searched (it is all the same byte,
      or nearly so, to the end of the row).
    - *Public windows*, found in bytes that every node sends whatever its rows are (the
      initial model: its hash is the chain's genesis).
    """

    def __init__(self, encodings: Mapping[str, list[bytes]], public: Iterable[bytes]) -> None:
        self.encodings = dict(encodings)
        public_blobs = list(public)
        # first 8 bytes of a window -> the windows that start with them, where each is from
        self._windows: dict[bytes, dict[bytes, tuple[str, int]]] = {}
        lengthened = plain = excluded_public = 0
        self.kept_per_row: dict[str, list[int]] = {}
        for name, rows in self.encodings.items():
            kept_counts = []
            for index, row in enumerate(rows):
                kept = 0
                for start in range(len(row) - WINDOW + 1):
                    window = _evidence(row, start)
                    if window is None:
                        plain += 1
                        continue
                    if any(window in blob for blob in public_blobs):
                        excluded_public += 1
                        continue
                    lengthened += len(window) > WINDOW
                    kept += 1
                    found = self._windows.setdefault(window[:WINDOW], {})
                    found.setdefault(window, (name, index))
                kept_counts.append(kept)
            self.kept_per_row[name] = kept_counts
        self.exclusions = Exclusions(lengthened, plain, excluded_public)
        self._keys = np.sort(np.frombuffer(b"".join(self._windows), dtype="<u8"))

    def __len__(self) -> int:
        """How many distinct windows are searched for."""
        return sum(len(windows) for windows in self._windows.values())

    def rows_too_thin(self) -> dict[str, list[int]]:
        """Rows (by encoding) left with fewer than :data:`MIN_WINDOWS_PER_ROW` windows."""
        thin = {
            name: [i for i, kept in enumerate(counts) if kept < MIN_WINDOWS_PER_ROW]
            for name, counts in self.kept_per_row.items()
        }
        return {name: rows for name, rows in thin.items() if rows}

    def find(self, streams: Iterable[bytes | bytearray]) -> list[Hit]:
        """Every window of a row that occurs in one of ``streams`` (each searched alone, so no
        window straddles two streams)."""
        hits: list[Hit] = []
        for stream in streams:
            for start in range(min(WINDOW, max(len(stream) - WINDOW + 1, 0))):
                count = (len(stream) - start) // WINDOW
                values = np.frombuffer(stream, dtype="<u8", offset=start, count=count)
                places = np.searchsorted(self._keys, values)
                places[places == len(self._keys)] = 0
                for i in np.flatnonzero(self._keys[places] == values):
                    offset = start + WINDOW * int(i)
                    prefix = bytes(stream[offset : offset + WINDOW])
                    for window, (name, row) in self._windows[prefix].items():
                        if stream[offset : offset + len(window)] == window:
                            hits.append(Hit(name, row, window, offset))
        return hits


def site_encodings(loaded: SiteData, trained: SiteData, data_dir: Path) -> dict[str, list[bytes]]:
    """Every row of ``loaded``'s site (train, then test) in the encodings of the module
    docstring; ``trained`` is the same site as the node last standardised it."""
    info = site_info(loaded.dataset, loaded.site)
    folder = data_dir / dataset_spec(loaded.dataset).subdir
    raw = load_raw_split(folder, info)
    encodings: dict[str, list[bytes]] = {}
    arrays = {
        "loaded": _rows(loaded.train_x, loaded.train_y, loaded.test_x, loaded.test_y),
        "trained": _rows(trained.train_x, trained.train_y, trained.test_x, trained.test_y),
        "raw": _rows(raw.train_x, raw.train_y, raw.test_x, raw.test_y),
        "file": read_table(folder / info.filename),
    }
    for name, rows in arrays.items():
        encodings[f"{name}/float32"] = [row.astype("<f4").tobytes() for row in rows]
        encodings[f"{name}/float64"] = [row.astype("<f8").tobytes() for row in rows]
    # The file holds decimals with at most one digit after the point; rounding the float32
    # value to 6 places gives back the float64 nearest that decimal.
    exact = np.round(arrays["raw"].astype(np.float64), 6)
    encodings["raw/float64-exact"] = [row.astype("<f8").tobytes() for row in exact]
    text = (folder / info.filename).read_text(encoding="ascii")
    encodings["file/text"] = [line.encode("ascii") for line in text.splitlines() if line.strip()]
    return encodings


def _rows(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> np.ndarray:
    """One row per sample: its features, then its label."""
    x = np.concatenate([train_x, test_x]).astype(np.float64)
    y = np.concatenate([train_y, test_y]).astype(np.float64).reshape(len(x), -1)
    return np.concatenate([x, y], axis=1)


def _evidence(row: bytes, start: int) -> bytes | None:
    """The window of ``row`` from ``start``: 8 bytes, or more until it holds
    :data:`MIN_INFORMATIVE` bytes other than its most common one; ``None`` if the row ends
    first."""
    for end in range(start + WINDOW, len(row) + 1):
        window = row[start:end]
        if len(window) - max(window.count(value) for value in set(window)) >= MIN_INFORMATIVE:
            return window
    return None
