"""Getting a chain to talk to: the embedded in-process EVM, or any JSON-RPC endpoint.

The embedded chain (``Web3(EthereumTesterProvider())``, py-evm) needs no setup and dies with the
process; it is not thread-safe, so every client using it must hold ``EmbeddedChain.lock``
around each request (pass it to the clients). ``connect_rpc`` reaches anvil, Besu or any other
node (proof-of-authority block headers included); transactions are signed locally either way,
so only the URL, chain id and keys differ.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.middleware import ExtraDataToPOAMiddleware
from web3.types import RPCEndpoint

from incentive.errors import ChainError, ChainUnavailable

logger = logging.getLogger(__name__)

DEFAULT_ACCOUNTS = 10


class EmbeddedChain:
    """An in-process EVM with ``num_accounts`` funded accounts (1,000,000 ETH each)."""

    def __init__(self, num_accounts: int = DEFAULT_ACCOUNTS) -> None:
        from eth_tester import EthereumTester, PyEVMBackend

        if num_accounts < 1:
            raise ValueError("an embedded chain needs at least one account")
        genesis = PyEVMBackend.generate_genesis_state(num_accounts=num_accounts)
        backend = PyEVMBackend(genesis_state=genesis)
        self.provider = EthereumTesterProvider(EthereumTester(backend))
        self.w3: Any = Web3(self.provider)
        self.lock = threading.Lock()
        self.private_keys: list[str] = [key.to_hex() for key in backend.account_keys]
        self.accounts: list[LocalAccount] = [Account.from_key(k) for k in self.private_keys]
        logger.info("embedded chain started with %d funded accounts", num_accounts)

    @property
    def chain_id(self) -> int:
        """The chain id transactions must be signed for."""
        with self.lock:
            return int(self.w3.eth.chain_id)

    def snapshot(self) -> int:
        """Remember the current chain state; returns an id for :meth:`revert`."""
        with self.lock:
            return int(self.provider.ethereum_tester.take_snapshot())

    def revert(self, snapshot_id: int) -> None:
        """Return the chain to a state remembered by :meth:`snapshot`."""
        with self.lock:
            self.provider.ethereum_tester.revert_to_snapshot(snapshot_id)


def connect_rpc(url: str, chain_id: int | None = None, timeout: float = 10.0) -> Any:
    """Connect to a JSON-RPC node; raise ChainUnavailable if nothing answers at ``url``.

    ``chain_id``, when given, must match the node's (guards against signing for the wrong
    network). ``timeout`` bounds each HTTP request in seconds. web3.py's own retrying is
    turned off: :class:`incentive.tx.TransactionSender` retries an unreachable node with its
    ``RetryPolicy``, and this first probe fails fast.
    """
    if not url.startswith(("http://", "https://")):
        raise ChainUnavailable(url, "only http:// and https:// URLs are supported")
    # web3's request validation asks for the chain id before every call; it cannot change
    # under a URL, so that one answer is cached.
    provider = HTTPProvider(
        url,
        request_kwargs={"timeout": timeout},
        exception_retry_configuration=None,
        cache_allowed_requests=True,
        cacheable_requests={RPCEndpoint("eth_chainId")},
    )
    w3 = Web3(provider)
    # Proof-of-authority chains (Besu QBFT/IBFT 2.0, Clique, Nethermind AuRa) put more than
    # 32 bytes into a block's extraData, which web3 refuses unless it is moved aside; on
    # other chains this only renames the field, which medswarm never reads.
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    try:
        actual = int(w3.eth.chain_id)
    except Exception as exc:  # requests and web3 raise many types for an unreachable node
        raise ChainUnavailable(url, _short(exc)) from exc
    if chain_id is not None and actual != chain_id:
        raise ChainError(
            f"the node at {url} serves chain id {actual}, not {chain_id}; check the URL or "
            "the configured chain id"
        )
    logger.info("connected to chain %d at %s", actual, url)
    return w3


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
