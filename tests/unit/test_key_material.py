"""The scan that looks for key material finds keys planted in any form it claims to cover."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests import key_material
from tests.key_material import Finding, KeyMaterial

KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
SEED = bytes(range(100, 132))
PASSPHRASE = "a passphrase nobody logs"


def material() -> KeyMaterial:
    found = KeyMaterial()
    found.add_key("account key", KEY)
    found.add_key("identity seed", SEED)
    found.add_passphrase("passphrase", PASSPHRASE)
    return found


@pytest.mark.parametrize(
    ("content", "secret", "form"),
    [
        (f"tx signed with 0x{KEY.hex()}\n".encode(), "account key", "hex"),
        (f'{{"key": "0X{KEY.hex().upper()}"}}'.encode(), "account key", "hex"),
        (f"key={KEY.hex()[:10].upper()}{KEY.hex()[10:]}".encode(), "account key", "hex"),
        (b"\x00\x01" + KEY + b"\xff", "account key", "raw bytes"),
        (f"seed {SEED.hex()}".encode(), "identity seed", "hex"),
        (f"MEDSWARM_PASSPHRASE={PASSPHRASE}\n".encode(), "passphrase", "text"),
    ],
)
def test_a_planted_secret_is_found_in_a_nested_file(
    tmp_path: Path, content: bytes, secret: str, form: str
) -> None:
    nested = tmp_path / "nodes" / "a" / ".hidden"
    nested.mkdir(parents=True)
    (tmp_path / "clean.log").write_text("nothing to see " * 100)
    (nested / "node.log").write_bytes(secrets.token_bytes(500) + content + b"more\n")

    report = material().scan(tmp_path)

    assert report.findings == [Finding(str(nested / "node.log"), secret, form)]
    assert len(report.files) == 2


def test_a_secret_across_a_chunk_boundary_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(key_material, "_CHUNK", 64)
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 50 + KEY.hex().encode() + b"y" * 300)

    assert material().scan(tmp_path).findings == [Finding(str(path), "account key", "hex")]


def test_clean_files_and_other_keys_give_no_finding(tmp_path: Path) -> None:
    other = secrets.token_bytes(32)
    (tmp_path / "events.jsonl").write_text(f'{{"peer": "{other.hex()}"}}\n{KEY.hex()[:-2]}\n')
    (tmp_path / "passphrase-ish").write_text(PASSPHRASE[:-1] + "!")

    report = material().scan(tmp_path)

    assert report.findings == [] and len(report.files) == 2


def test_captured_output_is_searched_too() -> None:
    findings = material().find("stderr", f"error: bad key {SEED.hex().upper()}".encode())

    assert findings == [Finding("stderr", "identity seed", "hex")]


def test_secrets_too_short_to_search_for_are_refused() -> None:
    with pytest.raises(ValueError, match="by chance"):
        KeyMaterial().add_passphrase("pin", "1234")
    with pytest.raises(ValueError, match="by chance"):
        KeyMaterial().add_key("short", b"\x01\x02")
