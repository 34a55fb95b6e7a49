"""One hospital node as its own OS process: ``medswarm node run --config node.toml``.

The process unlocks its encrypted keys (creating them on first start; node/keystore.py),
loads its site's data, the federation's deployment record and its checkpoint; registers its
libp2p peer id on chain; connects to the members the registry lists; and takes part in
rounds until the last one is final. Structured events go to ``node.events_file`` as JSON
lines. Killed and started again with the same config, it resumes from its checkpoint or
resyncs the current model from peers by hash.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import resource
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from gossip.blobs import BlobStore
from incentive.clients import MemberClient
from incentive.consortium import ConsortiumClient
from incentive.deployment import ConsortiumDeployment, Deployment, is_consortium_record
from incentive.records import MemberInfo
from node.chain_checks import open_chain
from node.config import MedswarmConfig
from node.consortium_book import ConsortiumBook
from node.data import SiteData, load_site, resolve_data_dir, shard
from node.errors import NodeError
from node.hospital import HospitalNode
from node.journal import Journal
from node.keystore import load_or_create_account_key, load_or_create_identity
from node.model import build_model
from node.passphrase import Passphrase
from node.round_book import LedgerBook, RoundBook
from node.weights import state_dict_to_weights

M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h

log = logging.getLogger(__name__)


class JsonLinesWriter:
    """Appends one JSON object per line and flushes it (readers tail the file)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("a", buffering=1)
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._handle.write(json.dumps(event, sort_keys=True) + "\n")

    def close(self) -> None:
        self._handle.close()


async def run_node_process(
    config: MedswarmConfig,
    base_dir: Path,
    passphrase: Passphrase,
    adapt_site: Callable[[SiteData], SiteData] | None = None,
    adapt_node: Callable[[HospitalNode], None] | None = None,
    instead_of_rounds: Callable[[HospitalNode], Awaitable[None]] | None = None,
) -> int:
    """Run one node until the federation's last round is final; return an exit code.

    ``passphrase`` unlocks the key files (node/passphrase.py says where it comes from).
    ``adapt_site`` and ``adapt_node`` let the testnet's attacker processes change the data or
    the node before it starts, and ``instead_of_rounds`` runs in place of registering and
    taking part in rounds (an attacker that was never admitted; testnet/attack_node.py); a
    hospital's node has none of them.
    """
    settings = config.node
    if not settings.site:
        raise NodeError('node.site is empty: name this node\'s site (e.g. site = "cleveland")')

    def path(value: str) -> Path:
        candidate = Path(value)
        return candidate if candidate.is_absolute() else base_dir / candidate

    data_dir = resolve_data_dir(settings.data_dir or None, os.environ)
    federation = config.federation
    if federation.dataset == "csv":  # the site is this hospital's own file
        own = load_site(
            "csv", str(path(settings.site)), data_dir, label_column=federation.csv_label
        )
    else:
        own = load_site(federation.dataset, settings.site, data_dir)
    site = shard(own, settings.shard, settings.shards)
    if adapt_site is not None:
        site = adapt_site(site)
    name = settings.name or site.site
    state_dir = path(settings.state_dir)
    account_key = load_or_create_account_key(
        path(settings.account_key_file), passphrase, settings.scrypt_n
    )
    identity = load_or_create_identity(
        path(settings.identity_key_file), passphrase, settings.scrypt_n
    )
    if passphrase.given:
        log.info("key files unlocked with the passphrase from %s", passphrase.source)
    deployment_file = path(config.chain.deployment_file)
    book = _open_book(config, deployment_file, account_key)
    initial = state_dict_to_weights(
        build_model(
            site.dataset, site.n_features, config.federation.seed, config.training.hidden_units
        )
    )
    events = JsonLinesWriter(path(settings.events_file))
    node = HospitalNode(
        config,
        site,
        book,
        account_key,
        BlobStore(state_dir / "blobs", config.network.max_blob_bytes),
        initial,
        name=name,
        identity=identity,
        journal=Journal(state_dir),
        on_event=events,
    )
    if adapt_node is not None:
        adapt_node(node)
    node.resume_from_journal()
    try:
        async with trio.open_nursery() as nursery:
            await node.start(nursery)
            if instead_of_rounds is None and not _registered_as(await book.members(), node):
                await node.register()
            node.emit(
                {
                    "event": "node-started",
                    "pid": os.getpid(),
                    "startup_seconds": round(_process_age_seconds(), 3),
                    "rss_mb": _rss_mb(),
                    "peer_id": node.gossip.peer_id,
                    "passphrase_from": passphrase.source if passphrase.given else None,
                    "address": node.address,
                    "resumed_round": node.completed_round,
                }
            )
            if instead_of_rounds is not None:
                await instead_of_rounds(node)
                nursery.cancel_scope.cancel()
                return 0
            await node.connect_to_members(settings.connect_timeout)
            await node.run(config.federation.rounds)
            node.emit(
                {
                    "event": "node-finished",
                    "pid": os.getpid(),
                    "rss_mb": _rss_mb(),
                    "peak_rss_mb": _peak_rss_mb(),
                    "global_hash": node.global_hash,
                    "round": node.completed_round,
                }
            )
            # Keep serving blobs for a while: a slower peer may still need the final model.
            await trio.sleep(settings.linger_seconds)
            nursery.cancel_scope.cancel()
    finally:
        events.close()
    return 0


def release_large_allocations(threshold: int = 2**20) -> None:
    """Serve allocations of ``threshold`` bytes or more by their own mappings (glibc only).

    glibc raises its mmap threshold as large blocks are freed, up to 32 MB, after which
    tensors of a few MB come from the heap and stay resident after they are freed. A node
    allocates and frees model-sized arrays every round; with a fixed threshold each goes
    back to the system when freed, so the resident set follows what the node holds.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, threshold)


def _open_book(config: MedswarmConfig, deployment_file: Path, account_key: str) -> RoundBook:
    """The round book ``federation.ledger`` names, on the contracts of the deployment record."""
    try:
        text = deployment_file.read_text()
    except FileNotFoundError as exc:
        raise NodeError(
            f"deployment record {deployment_file} not found: point chain.deployment_file at "
            "the file the federation's deployer wrote"
        ) from exc
    wanted = config.federation.ledger
    found = "consortium" if is_consortium_record(text) else "ledger"
    if wanted != found:
        raise NodeError(
            f"federation.ledger is {wanted!r} but {deployment_file} describes a {found!r} "
            f'federation: set federation.ledger = "{found}" or point chain.deployment_file '
            "at the right record"
        )
    if found == "consortium":
        record = ConsortiumDeployment.from_json(text)
        contracts = {"Consortium": record.consortium, "EpochRewards": record.rewards}
        w3 = open_chain(config.chain, record.chain_id, deployment_file, contracts)
        client = ConsortiumClient(w3, record.consortium, account_key)
        return ConsortiumBook(client, account_key, config.federation.takeover_timeout)
    try:
        deployment = Deployment.from_json(text)
    except ValueError as exc:
        raise NodeError(f"{deployment_file} is not a deployment record: {exc}") from exc
    contracts = {
        "Registry": deployment.registry,
        "Ledger": deployment.ledger,
        "RewardPool": deployment.rewards,
    }
    w3 = open_chain(config.chain, deployment.chain_id, deployment_file, contracts)
    return LedgerBook(MemberClient(w3, deployment, account_key))


def _registered_as(members: list[MemberInfo], node: HospitalNode) -> bool:
    """Whether the members' list already binds this account to this peer id and addresses."""
    for member in members:
        if member.address.lower() == node.address.lower():
            return bool(
                member.peer_id == node.gossip.peer_id
                and list(member.multiaddrs) == node.gossip.listen_addrs
            )
    raise NodeError(
        f"account {node.address} is not a member of the federation: ask the consortium "
        "admin to admit it first"
    )


def _process_age_seconds() -> float:
    """Seconds since this process was started (Linux; includes interpreter start-up)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started_ticks = int(fields[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return uptime - started_ticks / os.sysconf("SC_CLK_TCK")


def _rss_mb() -> float:
    """This process's resident memory now, in MB (Linux)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _peak_rss_mb() -> float:
    """The most resident memory this process has held, in MB.

    Linux's ``VmHWM`` counts from the process's own program; ``ru_maxrss`` would also count
    the launcher's memory at the fork before it (carried across ``execve``), so a large
    launcher would make every node look as large.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except (OSError, ValueError, IndexError):
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
