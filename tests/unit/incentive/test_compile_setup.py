"""Compiler discovery and artifact loading without running a compiler."""

from __future__ import annotations

from pathlib import Path

import pytest

import contracts.compile as compile_module
from contracts import load_artifact
from incentive.errors import ArtifactMissing, CompilerNotFound


def test_missing_compiler_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(compile_module.SOLC_ENV, raising=False)
    monkeypatch.setattr(compile_module, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(compile_module, "_solcx_installed", lambda: None)

    with pytest.raises(CompilerNotFound, match=r"run `npm install` \(or `make setup`\)"):
        compile_module.find_compiler()


def test_configured_compiler_must_be_executable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(compile_module.SOLC_ENV, str(tmp_path / "solc"))

    with pytest.raises(CompilerNotFound, match="MEDSWARM_SOLC"):
        compile_module.find_compiler()


def test_artifacts_load_without_a_compiler() -> None:
    ledger = load_artifact("Ledger")

    assert ledger.bytecode.startswith("0x") and len(ledger.bytecode) > 1000
    assert any(item.get("name") == "recordCluster" for item in ledger.abi)
    with pytest.raises(ArtifactMissing, match=r"python -m contracts\.compile"):
        load_artifact("NoSuchContract")
