"""Compile ``contracts/*.sol`` into the committed artifacts ``contracts/artifacts/<Name>.json``.

    python -m contracts.compile           regenerate every artifact
    python -m contracts.compile --check   exit 1, naming each artifact that differs

Settings are fixed (solc 0.8.37, evmVersion cancun, optimizer on with 200 runs) and every source
is passed inline under its repository-relative name, so the output is byte-for-byte the same on
every machine. The compiler is, in order of preference: the executable named by the environment
variable ``MEDSWARM_SOLC``; a native solc 0.8.37 installed with ``solcx.install_solc``; the npm
WebAssembly build through the ``contracts/solc.js`` wrapper (after ``npm install``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from incentive.errors import CompilationFailed, CompilerNotFound

logger = logging.getLogger(__name__)

CONTRACTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = CONTRACTS_DIR.parent
ARTIFACTS_DIR = CONTRACTS_DIR / "artifacts"
NODE_WRAPPER = CONTRACTS_DIR / "solc.js"
SOLC_VERSION = "0.8.37"
SOLC_ENV = "MEDSWARM_SOLC"
SETTINGS: dict[str, Any] = {
    "evmVersion": "cancun",
    "viaIR": True,
    "optimizer": {"enabled": True, "runs": 200},
    "outputSelection": {
        "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "metadata"]}
    },
}


def source_files(contracts_dir: Path = CONTRACTS_DIR) -> dict[str, str]:
    """Solidity sources keyed by repository-relative name (``contracts/X.sol``), sorted."""
    return {
        f"{contracts_dir.name}/{path.name}": path.read_text(encoding="utf-8")
        for path in sorted(contracts_dir.glob("*.sol"))
    }


def sources_hash(sources: dict[str, str], names: Sequence[str]) -> str:
    """SHA-256 over the named sources (name and content, in sorted order)."""
    digest = hashlib.sha256()
    for name in sorted(names):
        for part in (name, sources[name]):
            data = part.encode("utf-8")
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)
    return digest.hexdigest()


def find_compiler() -> Path:
    """Return the path of a solc-compatible executable, or raise CompilerNotFound."""
    configured = os.environ.get(SOLC_ENV)
    if configured:
        path = Path(configured)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise CompilerNotFound(f"{SOLC_ENV}={configured} is not an executable file")
        return path
    native = _solcx_installed()
    if native is not None:
        return native
    if not (REPO_ROOT / "node_modules" / "solc" / "package.json").is_file():
        raise CompilerNotFound(
            "no Solidity compiler found: run `npm install` (or `make setup`) in "
            f"{REPO_ROOT} to get solc {SOLC_VERSION}, or set {SOLC_ENV} to a solc "
            f"{SOLC_VERSION} executable, or run solcx.install_solc('{SOLC_VERSION}')"
        )
    if shutil.which("node") is None:
        raise CompilerNotFound("node is not on PATH; install Node.js 18+ to run the npm solc")
    if not os.access(NODE_WRAPPER, os.X_OK):
        raise CompilerNotFound(f"{NODE_WRAPPER} is not executable; run `chmod +x` on it")
    return NODE_WRAPPER


def _solcx_installed() -> Path | None:
    import solcx
    from packaging.version import Version

    try:
        if Version(SOLC_VERSION) in solcx.get_installed_solc_versions():
            return Path(solcx.get_executable(SOLC_VERSION))
    except Exception:  # solcx raises its own errors for a missing or odd install folder
        logger.debug("no solcx-installed solc %s", SOLC_VERSION, exc_info=True)
    return None


def compile_sources(
    sources: dict[str, str] | None = None, solc_binary: Path | None = None
) -> dict[str, dict[str, Any]]:
    """Compile the sources and return artifacts keyed by contract name.

    Interfaces and abstract contracts (empty bytecode) are left out.
    """
    import solcx
    from solcx.exceptions import SolcError

    sources = source_files() if sources is None else sources
    binary = find_compiler() if solc_binary is None else solc_binary
    standard_input = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": SETTINGS,
    }
    logger.info("compiling %d Solidity sources with %s", len(sources), binary)
    try:
        output = solcx.compile_standard(standard_input, solc_binary=binary)
    except SolcError as exc:
        raise CompilationFailed(f"Solidity compilation failed:\n{exc.message}") from exc
    artifacts: dict[str, dict[str, Any]] = {}
    for source_name, contracts in sorted(output.get("contracts", {}).items()):
        for name, compiled in sorted(contracts.items()):
            bytecode = compiled["evm"]["bytecode"]["object"]
            if not bytecode:
                continue
            metadata = json.loads(compiled["metadata"])
            used = sorted(metadata["sources"])
            artifacts[name] = {
                "contractName": name,
                "sourceName": source_name,
                "abi": compiled["abi"],
                "bytecode": "0x" + bytecode,
                "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
                "compiler": {
                    "version": metadata["compiler"]["version"],
                    "evmVersion": SETTINGS["evmVersion"],
                    "optimizer": SETTINGS["optimizer"],
                },
                "sources": used,
                "sourceHash": sources_hash(sources, used),
            }
    return artifacts


def render(artifact: dict[str, Any]) -> str:
    """The exact text written for one artifact."""
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def stale_artifacts(
    artifacts: dict[str, dict[str, Any]], artifacts_dir: Path = ARTIFACTS_DIR
) -> list[str]:
    """File names in ``artifacts_dir`` that are missing, differ, or have no source any more."""
    stale = []
    for name, artifact in sorted(artifacts.items()):
        path = artifacts_dir / f"{name}.json"
        if not path.is_file() or path.read_text(encoding="utf-8") != render(artifact):
            stale.append(path.name)
    expected = {f"{name}.json" for name in artifacts}
    stale.extend(sorted(p.name for p in artifacts_dir.glob("*.json") if p.name not in expected))
    return stale


def write_artifacts(
    artifacts: dict[str, dict[str, Any]], artifacts_dir: Path = ARTIFACTS_DIR
) -> list[Path]:
    """Write every artifact, remove artifacts whose contract is gone; return written paths."""
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, artifact in sorted(artifacts.items()):
        path = artifacts_dir / f"{name}.json"
        path.write_text(render(artifact), encoding="utf-8")
        written.append(path)
    for path in artifacts_dir.glob("*.json"):
        if path.stem not in artifacts:
            path.unlink()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: regenerate artifacts, or with ``--check`` report stale ones."""
    parser = argparse.ArgumentParser(
        prog="python -m contracts.compile", description="Compile contracts/*.sol into artifacts."
    )
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if any artifact is stale"
    )
    args = parser.parse_args(argv)
    try:
        artifacts = compile_sources()
    except (CompilerNotFound, CompilationFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        stale = stale_artifacts(artifacts)
        if stale:
            print(
                f"stale contract artifacts: {', '.join(stale)}; "
                "run `python -m contracts.compile` and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"{len(artifacts)} contract artifacts are up to date")
        return 0
    for path in write_artifacts(artifacts):
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
