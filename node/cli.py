"""``medswarm node``: run one hospital node as its own process; ``medswarm init``: make a
new node's directory."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import trio
from eth_account import Account
from libp2p.peer.id import ID

from node.config import load_config
from node.errors import ConfigError, PassphraseError
from node.keystore import load_account_key, load_identity
from node.node_dir import CONFIG_FILE, NodeDirectory, NodeSetup, create_node_directory
from node.passphrase import ENV_VAR, Passphrase, node_passphrase, resolve_passphrase
from node.process import release_large_allocations, run_node_process
from node.sealed_keys import DEFAULT_SCRYPT_N

INIT_FILE_OPTION = "--passphrase-file"


def add_node_parser(subparsers: Any) -> None:
    """Register ``node`` and its sub-commands on the ``medswarm`` parser."""
    node = subparsers.add_parser("node", help="run one hospital node, or check its key files")
    commands = node.add_subparsers(dest="node_command", required=True)
    run = commands.add_parser(
        "run",
        help="run a node from its config file until the federation's last round is final",
        description=(
            "Start a hospital node: load or create its encrypted key files, load its site's "
            "data, connect to the chain named in [chain] and to the members the registry "
            "lists, and take part in rounds until the last one is final. Restarted with the "
            "same config, it resumes from its checkpoint. The key files' passphrase comes "
            f"from the file named in node.passphrase_file, else from ${ENV_VAR}. With "
            "[status] bind set, it serves GET /health, /status, /metrics and a dashboard page "
            "at / on that address (docs/operator-guide.md)."
        ),
    )
    run.add_argument("--config", type=Path, required=True, help="the node's TOML config file")
    run.set_defaults(handler=run_node)
    keys = commands.add_parser(
        "keys",
        help="open the node's key files and print its address and peer id",
        description=(
            "Open the key files named in the node's config with its passphrase (from "
            f"node.passphrase_file, else ${ENV_VAR}) and print the account's address and the "
            "libp2p peer id, nothing secret; checks a backup or a passphrase. The files are "
            "never created or changed: a missing one is an error."
        ),
    )
    keys.add_argument("--config", type=Path, required=True, help="the node's TOML config file")
    keys.add_argument("--json", action="store_true", help="print one JSON object instead")
    keys.set_defaults(handler=show_node_keys)


def run_node(args: argparse.Namespace) -> int:
    """Handler of ``medswarm node run``."""
    if not args.config.exists():
        raise ConfigError(f"config file {args.config} does not exist")
    config = load_config(args.config)
    base_dir = args.config.resolve().parent
    passphrase = node_passphrase(config.node.passphrase_file, base_dir, os.environ)
    torch.set_num_threads(1)
    release_large_allocations()
    return trio.run(run_node_process, config, base_dir, passphrase)


def show_node_keys(args: argparse.Namespace) -> int:
    """Handler of ``medswarm node keys``."""
    if not args.config.exists():
        raise ConfigError(f"config file {args.config} does not exist")
    config = load_config(args.config)
    base_dir = args.config.resolve().parent
    passphrase = node_passphrase(config.node.passphrase_file, base_dir, os.environ)
    account_file = base_dir / config.node.account_key_file
    identity_file = base_dir / config.node.identity_key_file
    address = Account.from_key(load_account_key(account_file, passphrase)).address
    peer_id = ID.from_pubkey(load_identity(identity_file, passphrase).public_key).to_base58()
    shown = {
        "address": str(address),
        "peer_id": str(peer_id),
        "account_key_file": str(account_file),
        "identity_key_file": str(identity_file),
    }
    if args.json:
        print(json.dumps(shown, indent=2))
    else:
        print(
            f"address  {address}\npeer id  {peer_id}\n(opened with the passphrase from "
            f"{passphrase.source})"
        )
    return 0


def add_init_parser(subparsers: Any) -> None:
    """Register ``init`` on the ``medswarm`` parser."""
    init = subparsers.add_parser(
        "init",
        help="make a new node directory: config file and encrypted keys",
        description=(
            f"Make DIR/{CONFIG_FILE} (commented; for `medswarm node run --config`), a new "
            "Ethereum account key and libp2p identity, each in an encrypted key file (mode "
            "0600), and print the account's address, the peer id and the command a consortium "
            "admin runs to admit the account. The passphrase comes from --passphrase-file, "
            f"else ${ENV_VAR}, else a prompt (typed twice). A directory that already holds a "
            "config or key file is refused: keys are never overwritten."
        ),
    )
    init.add_argument("--dir", type=Path, required=True, help="the node directory to make")
    init.add_argument(
        INIT_FILE_OPTION,
        type=Path,
        default=None,
        metavar="FILE",
        help=f"file (mode 0600) holding the passphrase; written into node.passphrase_file "
        f"(default: ${ENV_VAR}, else a prompt)",
    )
    init.add_argument("--name", default="", help="the hospital's name (default: DIR's name)")
    init.add_argument("--site", default="", help="node.site: this node's site of the data set")
    init.add_argument(
        "--federation", default="heart-disease", help="federation.name (default heart-disease)"
    )
    init.add_argument(
        "--dataset", default="heart-disease", help="federation.dataset (default heart-disease)"
    )
    init.add_argument(
        "--rpc",
        default="http://127.0.0.1:8545",
        metavar="URL",
        help="chain.url (default http://127.0.0.1:8545)",
    )
    init.add_argument(
        "--deployment-file",
        default="deployment.json",
        metavar="FILE",
        help="chain.deployment_file, relative to DIR (default deployment.json); when it is "
        "there, the admission command names its Consortium",
    )
    init.add_argument(
        "--cluster",
        type=int,
        default=0,
        help="the cluster in the printed admission command (default 0)",
    )
    init.add_argument(
        "--scrypt-n",
        type=int,
        default=DEFAULT_SCRYPT_N,
        metavar="N",
        help=f"scrypt cost of the key files (default {DEFAULT_SCRYPT_N}, the v3 standard)",
    )
    init.add_argument("--json", action="store_true", help="print one JSON object instead")
    init.set_defaults(handler=run_init)


def run_init(args: argparse.Namespace) -> int:
    """Handler of ``medswarm init``."""
    passphrase = init_passphrase(args.passphrase_file, os.environ)
    setup = NodeSetup(
        name=args.name or args.dir.resolve().name,
        site=args.site,
        federation=args.federation,
        dataset=args.dataset,
        chain_url=args.rpc,
        deployment_file=args.deployment_file,
        passphrase_file=str(args.passphrase_file.resolve()) if args.passphrase_file else "",
        scrypt_n=args.scrypt_n,
        cluster=args.cluster,
    )
    made = create_node_directory(args.dir, passphrase, setup)
    if args.json:
        print(json.dumps(made.to_json(setup), indent=2))
    else:
        print(_init_report(made, setup, passphrase))
    return 0


def init_passphrase(
    passphrase_file: Path | None,
    environ: Mapping[str, str],
    ask: Callable[[str], str] = getpass.getpass,
    interactive: bool | None = None,
) -> Passphrase:
    """The passphrase ``medswarm init`` encrypts with: ``--passphrase-file``, else
    ``$MEDSWARM_PASSPHRASE``, else asked twice on the terminal."""
    found = resolve_passphrase(environ, passphrase_file, INIT_FILE_OPTION)
    if found.given:
        return found
    if not (sys.stdin.isatty() if interactive is None else interactive):
        raise PassphraseError(
            f"no passphrase for the new keys and no terminal to ask on: give "
            f"{INIT_FILE_OPTION} FILE (mode 0600) or set {ENV_VAR}"
        )
    first = ask("Passphrase for the new key files: ")
    if ask("The same passphrase again: ") != first:
        raise PassphraseError("the two passphrases differ: run medswarm init again")
    return Passphrase(first, "the terminal", found.options)


def _init_report(made: NodeDirectory, setup: NodeSetup, passphrase: Passphrase) -> str:
    start = shlex.join(made.run_command())
    if not setup.passphrase_file:
        start = f"{ENV_VAR}=... {start}   # the passphrase you gave, or node.passphrase_file"
    lines = [
        f"node directory  {made.directory}",
        f"config          {made.config_file}",
        f"account key     {made.account_key_file} (encrypted, from {passphrase.source})",
        f"identity key    {made.identity_key_file} (encrypted)",
        f"address         {made.address}",
        f"peer id         {made.peer_id}",
        "",
        "Next:",
        "1. Back up both key files and keep the passphrase apart from them (without both the "
        "account is lost).",
        "2. A consortium admin proposes admitting this account (other admins approve with "
        "`medswarm consortium approve ... ID` until the threshold is met):",
        f"   {shlex.join(made.admission_command(setup))}",
        f"3. The account pays gas for registering and for its rounds' transactions: have ETH "
        f"sent to {made.address} on the federation's chain.",
    ]
    if not setup.site:
        lines.append(f"4. Set node.site in {made.config_file} to this hospital's site or file.")
    lines += [
        f"{4 if setup.site else 5}. Start the node; it registers its peer id on chain itself:",
        f"   {start}",
    ]
    return "\n".join(lines)
