"""``medswarm consortium``: deploy and govern a Consortium and its reward pool.

    medswarm consortium deploy   --rpc URL --key-file F --admins A [A ...] --threshold K
                                 [--token ADDRESS] [--record FILE] [--json]
    medswarm consortium propose  --rpc URL --key-file F --address C ACTION ARGS...
    medswarm consortium approve  --rpc URL --key-file F --address C ID
    medswarm consortium cancel   --rpc URL --key-file F --address C ID
    medswarm consortium register --rpc URL --key-file F --address C PEER_ID [MULTIADDR ...]
    medswarm consortium status   --rpc URL --address C [--rewards P] [--json]
    medswarm consortium fund|distribute|withdraw --rpc URL --key-file F --rewards P [AMOUNT]
    medswarm consortium pay      --rpc URL --key-file F --rewards P MODEL_HASH AMOUNT

The key file (``--key-file``, readable by its owner only) holds one account's private key: a
Web3 Secret Storage (v3) keystore such as a node's ``account_key_file``, unlocked with the
passphrase in ``--passphrase-file`` or else ``$MEDSWARM_PASSPHRASE``; or, unencrypted, 64 hex
digits (read with a warning). The file is never changed. Governance actions run when
``threshold`` admins approved them (docs/ledger.md).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from incentive.chain import connect_rpc
from incentive.consortium import (
    ACTION_ADMIT,
    ACTION_REINSTATE,
    ACTION_REMOVE,
    ACTION_SET_ADMINS,
    ACTION_SET_EXCLUSION,
    ACTION_SET_GENESIS,
    ACTION_SET_QUORUM,
    ROLE_AUDITOR,
    ROLE_HOSPITAL,
    ConsortiumClient,
    deploy_consortium,
)
from incentive.deployment import ConsortiumDeployment
from incentive.epoch_rewards import RewardsClient, deploy_rewards
from incentive.tx import TxOutcome
from medswarm.errors import MedswarmError
from node.keystore import load_account_key
from node.passphrase import ENV_VAR, resolve_passphrase

ACTIONS = {
    "admit": "ACCOUNT NAME CLUSTER [--auditor]",
    "remove": "ACCOUNT",
    "genesis": "HASH (64 hex digits)",
    "quorum": "NUMERATOR DENOMINATOR",
    "exclusion": "THRESHOLD (0..10000)",
    "reinstate": "ACCOUNT",
    "admins": "THRESHOLD ADDRESS [ADDRESS ...]",
}


ACTION_NAMES = {
    ACTION_ADMIT: "admit",
    ACTION_REMOVE: "remove",
    ACTION_SET_GENESIS: "genesis",
    ACTION_SET_QUORUM: "quorum",
    ACTION_SET_EXCLUSION: "exclusion",
    ACTION_REINSTATE: "reinstate",
    ACTION_SET_ADMINS: "admins",
}


class ConsortiumCliError(MedswarmError, ValueError):
    """A ``medswarm consortium`` command was given arguments it cannot use."""


def add_consortium_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "consortium",
        help="deploy and govern a Consortium contract and its reward pool",
        description="Deploy and govern a Consortium contract and its EpochRewards pool: "
        "governance proposals and approvals, registration, status, funding and payouts "
        "(docs/ledger.md).",
    )
    commands = parser.add_subparsers(dest="consortium_command", required=True)

    def command(name: str, help_text: str, key: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--rpc", required=True, metavar="URL", help="JSON-RPC URL of the chain")
        if key:
            sub.add_argument(
                "--key-file",
                required=True,
                type=Path,
                help="the account's private key: a v3 keystore (or, unencrypted, 64 hex digits)",
            )
            sub.add_argument(
                "--passphrase-file",
                type=Path,
                default=None,
                metavar="FILE",
                help=f"file (mode 0600) holding the keystore's passphrase (default: ${ENV_VAR})",
            )
        return sub

    deploy = command("deploy", "deploy a Consortium and an EpochRewards pool for it")
    deploy.add_argument("--admins", nargs="+", required=True, metavar="ADDRESS")
    deploy.add_argument("--threshold", type=int, required=True, help="approvals an action needs")
    deploy.add_argument("--token", default=None, help="pay rewards in this ERC-20 (default ETH)")
    deploy.add_argument(
        "--record",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the deployment record nodes read as chain.deployment_file "
        '(with federation.ledger = "consortium")',
    )
    deploy.add_argument("--json", action="store_true")
    deploy.set_defaults(handler=run_deploy)

    propose = command("propose", "propose a governance action (your approval counts)")
    propose.add_argument("--address", required=True, help="the Consortium contract")
    propose.add_argument("action", choices=sorted(ACTIONS), help="what to do")
    propose.add_argument("args", nargs="*", help="; ".join(f"{k}: {v}" for k, v in ACTIONS.items()))
    propose.add_argument("--auditor", action="store_true", help="admit: as an auditor")
    propose.set_defaults(handler=run_propose)

    for name, text in (
        ("approve", "approve a pending proposal"),
        ("cancel", "withdraw your own pending proposal"),
    ):
        sub = command(name, text)
        sub.add_argument("--address", required=True, help="the Consortium contract")
        sub.add_argument("id", type=int, help="proposal id")
        sub.set_defaults(handler=run_vote)

    register = command("register", "publish this member's libp2p peer id and addresses")
    register.add_argument("--address", required=True, help="the Consortium contract")
    register.add_argument("peer_id")
    register.add_argument("multiaddrs", nargs="*")
    register.set_defaults(handler=run_register)

    status = command(
        "status", "members, reputation, contributions, rounds and proposals", key=False
    )
    status.add_argument("--address", required=True, help="the Consortium contract")
    status.add_argument("--rewards", default=None, help="its EpochRewards pool, for credits")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=run_status)

    for name, text in (
        ("fund", "add AMOUNT (wei, or token units approved beforehand) to the pool"),
        ("distribute", "close a reward epoch"),
        ("withdraw", "take this account's credit"),
        ("pay", "pay AMOUNT for using the model MODEL_HASH; accrued rewards pay out at once"),
    ):
        sub = command(name, text)
        sub.add_argument("--rewards", required=True, help="the EpochRewards pool")
        if name == "pay":
            sub.add_argument("model_hash", help="the model's hash (64 hex digits)")
        if name in ("fund", "pay"):
            sub.add_argument("amount", type=int)
            sub.add_argument("--token", action="store_true", help="the pool pays in a token")
        sub.set_defaults(handler=run_pool)
    return parser


def _key(args: argparse.Namespace) -> str:
    passphrase = resolve_passphrase(os.environ, args.passphrase_file, "--passphrase-file")
    return load_account_key(args.key_file, passphrase)


def _client(args: argparse.Namespace) -> ConsortiumClient:
    return ConsortiumClient(connect_rpc(args.rpc), args.address, _key(args))


def _report(outcome: TxOutcome) -> None:
    events = ", ".join(e.event for e in outcome.events) or "no events"
    print(f"transaction {outcome.tx_hash} in block {outcome.block_number}: {events}")


def run_deploy(args: argparse.Namespace) -> int:
    w3, key = connect_rpc(args.rpc), _key(args)
    address, _ = deploy_consortium(w3, key, args.admins, args.threshold)
    rewards = deploy_rewards(w3, key, address, args.token)
    result = {"consortium": address, "rewards": rewards}
    if args.record is not None:
        record = ConsortiumDeployment(int(w3.eth.chain_id), address, rewards)
        args.record.write_text(record.to_json() + "\n")
    print(json.dumps(result) if args.json else f"Consortium {address}\nEpochRewards {rewards}")
    return 0


def run_propose(args: argparse.Namespace) -> int:
    client, a = _client(args), list(args.args)
    expected = {"admit": 3, "remove": 1, "genesis": 1, "quorum": 2, "exclusion": 1, "reinstate": 1}
    if (args.action in expected and len(a) != expected[args.action]) or (
        args.action == "admins" and len(a) < 2
    ):
        raise ConsortiumCliError(f"{args.action} takes {ACTIONS[args.action]}, got {a}")
    try:
        if args.action == "admit":
            role = ROLE_AUDITOR if args.auditor else ROLE_HOSPITAL
            outcome = client.propose_admit(a[0], a[1], int(a[2]), role)
        elif args.action == "remove":
            outcome = client.propose_remove(a[0])
        elif args.action == "genesis":
            outcome = client.propose_genesis(bytes.fromhex(a[0].removeprefix("0x")))
        elif args.action == "quorum":
            outcome = client.propose_quorum(int(a[0]), int(a[1]))
        elif args.action == "exclusion":
            outcome = client.propose_exclusion(int(a[0]))
        elif args.action == "reinstate":
            outcome = client.propose_reinstate(a[0])
        else:
            outcome = client.propose_admins(a[1:], int(a[0]))
    except ValueError as exc:  # int(), bytes.fromhex(), address checks
        raise ConsortiumCliError(f"{args.action}: {exc}; it takes {ACTIONS[args.action]}") from exc
    (proposed,) = outcome.named("Proposed")
    ran = " and ran it" if outcome.named("Executed") else ""
    print(f"proposal {proposed.args['id']}: {args.action} {' '.join(a)}{ran}")
    _report(outcome)
    return 0


def run_vote(args: argparse.Namespace) -> int:
    client = _client(args)
    outcome = (
        client.approve(args.id) if args.consortium_command == "approve" else client.cancel(args.id)
    )
    _report(outcome)
    return 0


def run_register(args: argparse.Namespace) -> int:
    _report(_client(args).register(args.peer_id, args.multiaddrs))
    return 0


def run_status(args: argparse.Namespace) -> int:
    w3 = connect_rpc(args.rpc)
    # views need no key: a throwaway one signs nothing
    client = ConsortiumClient(w3, args.address, "0x" + "11" * 32)
    pool = RewardsClient(w3, args.rewards, "0x" + "11" * 32) if args.rewards else None
    view = client.contract.functions
    members: list[dict[str, Any]] = []
    for m in client.members():
        members.append(
            {
                "index": m.index,
                "name": view.nameOf(m.index).call(),
                "account": m.account,
                "cluster": m.cluster,
                "role": "hospital" if m.role == ROLE_HOSPITAL else "auditor",
                "standing": "excluded" if m.excluded else "active" if m.active else "removed",
                "peer_id": view.peerIdOf(m.index).call(),
                "contribution": client.contribution(m.index),
                "reputation": client.reputation(m.index),
                **({"credit": pool.credit(m.account)} if pool else {}),
            }
        )
    proposals = []
    for pid in range(int(view.proposalCount().call())):
        kind, executed, approvals, _ = view.proposal(pid).call()
        withdrawn = bool(view.cancelled(pid).call())
        proposals.append(
            {
                "id": pid,
                "action": ACTION_NAMES.get(int(kind), str(kind)),
                "executed": executed,
                "cancelled": withdrawn,
                "approvals": approvals,
            }
        )
    status = {
        "admins": view.admins().call(),
        "threshold": int(view.threshold().call()),
        "quorum": client.quorum(),
        "last_finalized_round": client.last_finalized_round(),
        "last_global_hash": client.last_global_hash().hex(),
        "members": members,
        "proposals": proposals,
        **({"unallocated": pool.unallocated()} if pool else {}),
    }
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(
        f"{len(status['admins'])} admins, threshold {status['threshold']}; quorum "
        f"{status['quorum']}; last final round {status['last_finalized_round']}"
    )
    for row in members:
        print(
            f"  {row['index']:>3} {row['name']:<20} {row['role']:<8} cluster "
            f"{row['cluster']:<3} {row['standing']:<8} reputation {row['reputation']:>5} "
            f"contribution {row['contribution']}"
        )
    pending = [p["id"] for p in proposals if not p["executed"] and not p["cancelled"]]
    print(f"proposals: {len(proposals)}, pending: {pending}")
    return 0


def run_pool(args: argparse.Namespace) -> int:
    pool = RewardsClient(connect_rpc(args.rpc), args.rewards, _key(args))
    if args.consortium_command == "fund":
        outcome = pool.fund(args.amount, eth=not args.token)
    elif args.consortium_command == "pay":
        try:
            model = bytes.fromhex(args.model_hash.removeprefix("0x"))
        except ValueError as exc:
            raise ConsortiumCliError(f"MODEL_HASH must be 64 hex digits: {exc}") from exc
        if len(model) != 32:
            raise ConsortiumCliError(f"MODEL_HASH must be 64 hex digits, got {len(model)} bytes")
        outcome = pool.pay_for_model(model, args.amount, eth=not args.token)
    elif args.consortium_command == "distribute":
        outcome = pool.distribute()
    else:
        outcome = pool.withdraw()
    _report(outcome)
    return 0
