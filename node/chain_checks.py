"""What a node checks about its chain before it takes part (``medswarm node run``).

:func:`open_chain` connects to ``chain.url`` and checks, in this order, that

- ``chain.chain_id`` (when set) is the chain the deployment record was written for;
- a JSON-RPC node answers at ``chain.url``, within ``chain.rpc_timeout`` seconds;
- it serves the federation's chain (the record's chain id);
- every contract the record names has code there;
- this machine's clock is not behind the chain: the latest block may be stamped at most
  ``chain.max_clock_skew`` seconds ahead of it. A latest block far in the past is only
  logged: chains that mine on demand (anvil) stay idle between transactions.

Each failure is a :class:`~node.errors.ChainSetupError` naming the setting to change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from incentive.chain import connect_rpc
from incentive.errors import ChainUnavailable
from node.config import ChainSettings
from node.errors import ChainSetupError

log = logging.getLogger(__name__)

_ZERO_ADDRESS = "0x" + "00" * 20


def open_chain(
    settings: ChainSettings,
    record_chain_id: int,
    record_file: Path,
    contracts: Mapping[str, str],
    now: Callable[[], float] = time.time,
) -> Any:
    """A web3 connection to ``settings.url`` once every check above has passed.

    ``contracts`` maps each contract's name to its address in the record ``record_file``.
    """
    url = settings.url
    if settings.chain_id and settings.chain_id != record_chain_id:
        raise ChainSetupError(
            f"chain.chain_id = {settings.chain_id}, but the deployment record {record_file} "
            f"is for chain {record_chain_id}: use the record the federation's deployer wrote "
            "for its chain, or correct chain.chain_id"
        )
    try:
        w3 = connect_rpc(url, timeout=settings.rpc_timeout)
    except ChainUnavailable as exc:
        raise ChainSetupError(
            f"chain.url = {url!r}: no Ethereum JSON-RPC node answers there ({exc.reason}); "
            "check the URL, that the chain's RPC node is running, and that it lets this "
            "machine in (firewall; Besu's --host-allowlist, Nethermind's JsonRpc.Host)"
        ) from exc
    try:
        actual = int(w3.eth.chain_id)
        if actual != record_chain_id:
            raise ChainSetupError(
                f"chain.url = {url!r} serves chain id {actual}, but the federation's chain "
                f"(deployment record {record_file}) is {record_chain_id}: point chain.url at "
                "an RPC node of the federation's chain"
            )
        for name, address in contracts.items():
            if address != _ZERO_ADDRESS and not w3.eth.get_code(address):
                raise ChainSetupError(
                    f"no contract at {address} on chain {actual} ({url}): the deployment "
                    f"record {record_file} names it as the {name}, but nothing is deployed "
                    "there; the record belongs to another deployment or an earlier chain: get "
                    "the current record from the federation's deployer"
                )
        if settings.max_clock_skew > 0:
            check_clock(w3.eth.get_block("latest"), settings.max_clock_skew, now())
    except ChainSetupError:
        raise
    except Exception as exc:  # transport errors from web3/requests while checking
        raise ChainSetupError(f"chain.url = {url!r}: checking the chain failed: {exc}") from exc
    return w3


def check_clock(block: Mapping[str, Any], max_skew: float, now: float) -> None:
    """Raise when ``block`` is stamped more than ``max_skew`` seconds after ``now``."""
    stamped = int(block["timestamp"])
    ahead = stamped - now
    if ahead > max_skew:
        raise ChainSetupError(
            f"this machine's clock is {ahead:.0f} s behind the chain's: its latest block "
            f"{block['number']} is stamped {_utc(stamped)}, this clock says {_utc(now)} "
            f"(chain.max_clock_skew = {max_skew:g} s); set the clock right (turn on NTP: "
            "`timedatectl set-ntp true`, or chrony) and start the node again"
        )
    if now - stamped > max_skew:
        log.warning(
            "the chain's latest block %s is stamped %s, %.0f s before this machine's clock: "
            "the chain is idle or stalled, or this clock is ahead (check NTP if the chain "
            "makes blocks regularly)",
            block["number"],
            _utc(stamped),
            now - stamped,
        )


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
