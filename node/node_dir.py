"""A new node directory: a commented config file and the node's two encrypted key files.

``medswarm init --dir DIR`` calls :func:`create_node_directory`, which writes

    DIR/node.toml       the config ``medswarm node run --config DIR/node.toml`` reads
    DIR/account.key     the Ethereum account key, a Web3 Secret Storage (v3) keystore
    DIR/identity.key    the libp2p identity seed, a medswarm-identity keystore

and returns the account's address and the libp2p peer id (both public). A directory that
already holds any of the three files is refused whole: keys are never overwritten. Key files
are made by :mod:`node.keystore` (mode 0600, scrypt); nothing here logs a key or the
passphrase.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from libp2p.peer.id import ID

from incentive.deployment import ConsortiumDeployment, is_consortium_record
from incentive.errors import DeploymentMismatch
from node.config import config_from_dict
from node.errors import ConfigError, NodeDirectoryError
from node.keystore import load_or_create_account_key, load_or_create_identity
from node.passphrase import ENV_VAR, Passphrase
from node.sealed_keys import DEFAULT_SCRYPT_N, check_scrypt_n

logger = logging.getLogger(__name__)

CONFIG_FILE = "node.toml"
ACCOUNT_KEY_FILE = "account.key"
IDENTITY_KEY_FILE = "identity.key"
ADMIN_KEY_PLACEHOLDER = "ADMIN_KEY_FILE"
CONSORTIUM_PLACEHOLDER = "CONSORTIUM_ADDRESS"


@dataclass(frozen=True)
class NodeSetup:
    """What goes into a new node's config file (everything else takes node/config.py's
    defaults)."""

    name: str
    site: str = ""
    federation: str = "heart-disease"  # the federation's name: its gossip topic
    dataset: str = "heart-disease"
    chain_url: str = "http://127.0.0.1:8545"
    deployment_file: str = "deployment.json"
    passphrase_file: str = ""  # as written into node.passphrase_file; "": $MEDSWARM_PASSPHRASE
    scrypt_n: int = DEFAULT_SCRYPT_N
    cluster: int = 0  # only for the printed admission command


@dataclass(frozen=True)
class NodeDirectory:
    """A node directory made by :func:`create_node_directory` (no secret in it)."""

    directory: Path
    config_file: Path
    account_key_file: Path
    identity_key_file: Path
    address: str
    peer_id: str
    consortium: str  # the Consortium's address from the deployment record, or a placeholder

    def admission_command(self, setup: NodeSetup) -> list[str]:
        """The command a consortium admin runs to propose admitting this node's account."""
        return [
            "medswarm",
            "consortium",
            "propose",
            "--rpc",
            setup.chain_url,
            "--key-file",
            ADMIN_KEY_PLACEHOLDER,
            "--address",
            self.consortium,
            "admit",
            self.address,
            setup.name,
            str(setup.cluster),
        ]

    def run_command(self) -> list[str]:
        """The command that starts the node."""
        return ["medswarm", "node", "run", "--config", str(self.config_file)]

    def to_json(self, setup: NodeSetup) -> dict[str, object]:
        """Addresses, peer id and paths, for ``medswarm init --json``."""
        return {
            "address": self.address,
            "peer_id": self.peer_id,
            "directory": str(self.directory),
            "config_file": str(self.config_file),
            "account_key_file": str(self.account_key_file),
            "identity_key_file": str(self.identity_key_file),
            "consortium": self.consortium,
            "admission_command": shlex.join(self.admission_command(setup)),
            "run_command": shlex.join(self.run_command()),
        }


def create_node_directory(
    directory: Path, passphrase: Passphrase, setup: NodeSetup
) -> NodeDirectory:
    """Make ``directory`` (mode 0700) with a config file and new encrypted key files.

    Refuses (:class:`NodeDirectoryError`) a directory that already holds a config or key
    file, and options the configuration schema (node/config.py) refuses, before writing
    anything.
    """
    try:
        check_scrypt_n(setup.scrypt_n)
    except ValueError as exc:
        raise NodeDirectoryError(f"--scrypt-n: {exc}") from None
    if not passphrase.given:
        raise NodeDirectoryError(
            f"no passphrase to encrypt the new keys with: give --passphrase-file FILE or set "
            f"{ENV_VAR} (keys are never written unencrypted)"
        )
    directory = directory.resolve()
    files = [directory / name for name in (CONFIG_FILE, ACCOUNT_KEY_FILE, IDENTITY_KEY_FILE)]
    present = [path.name for path in files if path.exists() or path.is_symlink()]
    if present:
        raise NodeDirectoryError(
            f"{directory} already holds {', '.join(present)}: medswarm init never overwrites a "
            "node's keys; choose another --dir, or back the old directory up and move it away"
        )
    config_file, account_file, identity_file = files
    text = config_text(setup)
    try:
        config_from_dict(tomllib.loads(text), source=str(config_file))
    except ConfigError as exc:  # a value given on the command line the schema refuses
        raise NodeDirectoryError(
            f"the config made from these options is invalid, so nothing was written: {exc}"
        ) from exc
    if directory.exists() and not directory.is_dir():
        raise NodeDirectoryError(f"{directory} exists and is not a directory: choose another --dir")
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise NodeDirectoryError(f"cannot create {directory}: {exc}") from exc
    key = load_or_create_account_key(account_file, passphrase, setup.scrypt_n)
    identity = load_or_create_identity(identity_file, passphrase, setup.scrypt_n)
    address = str(Account.from_key(key).address)
    peer_id = str(ID.from_pubkey(identity.public_key).to_base58())
    _write_new(config_file, text)
    logger.info("made node directory %s for account %s, peer %s", directory, address, peer_id)
    return NodeDirectory(
        directory,
        config_file,
        account_file,
        identity_file,
        address,
        peer_id,
        _consortium_address(config_file.parent, setup.deployment_file),
    )


def _consortium_address(base_dir: Path, deployment_file: str) -> str:
    """The Consortium's address in the deployment record, if it is there and one."""
    path = Path(deployment_file)
    path = path if path.is_absolute() else base_dir / path
    try:
        text = path.read_text(encoding="utf-8")
        if is_consortium_record(text):
            return ConsortiumDeployment.from_json(text).consortium
    except (OSError, UnicodeDecodeError, DeploymentMismatch):
        pass
    return CONSORTIUM_PLACEHOLDER


def _write_new(path: Path, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise NodeDirectoryError(f"{path} appeared meanwhile; it is left alone") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def _quoted(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value, ensure_ascii=False)


def config_text(setup: NodeSetup) -> str:
    """The commented TOML of a new node (valid for ``medswarm node run``)."""
    passphrase_note = (
        "the file named here (mode 0600) holds the key files' passphrase"
        if setup.passphrase_file
        else f"empty: the passphrase comes from ${ENV_VAR} when the node starts"
    )
    return f"""\
# A medswarm hospital node. Start it with: medswarm node run --config node.toml
# Every key is described in node/config.py and docs/configuration.md; unknown keys are
# errors. Relative paths are relative to this file's directory.

[federation]
# Every member of the federation must run the same [federation], [training] and
# [strategy] values: copy them from the consortium's shared settings.
name = {_quoted(setup.federation)}
dataset = {_quoted(setup.dataset)}  # heart-disease, tcga-brca, mitbih-ecg or csv
ledger = "consortium"  # rounds are kept in the Consortium contract (docs/ledger.md)
# rounds = 20
# seed = 0

[node]
name = {_quoted(setup.name)}
# This node's site of the data set; for dataset "csv" the path of this hospital's file.
site = {_quoted(setup.site)}
# data_dir = "/data/medswarm"  # default: $MEDSWARM_DATA, else ../shared/data
state_dir = "state"  # blobs and checkpoint
account_key_file = "{ACCOUNT_KEY_FILE}"  # encrypted Ethereum account key (v3 keystore)
identity_key_file = "{IDENTITY_KEY_FILE}"  # encrypted libp2p identity
# {passphrase_note}
passphrase_file = {_quoted(setup.passphrase_file)}
scrypt_n = {setup.scrypt_n}  # scrypt cost of key files this node writes
events_file = "events.jsonl"  # structured round events, one JSON object per line

[chain]
url = {_quoted(setup.chain_url)}  # JSON-RPC of the federation's chain
# The deployment record the federation's deployer wrote (medswarm consortium deploy --record).
deployment_file = {_quoted(setup.deployment_file)}
# The federation's chain id (0: the record's): the node stops when the record or url is on
# another chain, and when its clock is behind the chain's latest block by more than
# max_clock_skew seconds (docs/deployment-guide.md).
# chain_id = 1337
# max_clock_skew = 60.0

[network]
# Other members dial the addresses this node registers on chain: listen on an address
# they can reach, and on a fixed port if a firewall sits between them (0: any free port).
listen_host = "127.0.0.1"
listen_port = 0
# bootstrap = ["/ip4/192.0.2.10/tcp/4001/p2p/12D3KooW..."]

# Node status over HTTP (GET /health, /status, /metrics), off unless bind is set.
# Keep it on 127.0.0.1: it has no authentication.
# [status]
# bind = "127.0.0.1:9464"
"""
