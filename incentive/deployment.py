"""Where a federation's contracts live: the :class:`Deployment` record and ABI decoders.

A deployment is saved as JSON (``Deployment.to_json``), e.g. in a run directory, so that clients
and auditors can find the Registry, Ledger and RewardPool again. Given only the Registry address
of a live chain, :meth:`Deployment.discover` reads the other two from it.
"""

from __future__ import annotations

import functools
import json
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

from eth_utils import is_address, to_checksum_address

from contracts import load_artifact
from incentive.abi_codec import ErrorDecoder, EventDecoder
from incentive.errors import DeploymentMismatch

REGISTRY = "Registry"
LEDGER = "Ledger"
REWARD_POOL = "RewardPool"
CONTRACT_NAMES = (REGISTRY, LEDGER, REWARD_POOL)
FORMAT = "medswarm-deployment/1"
_ZERO_ADDRESS = "0x" + "00" * 20


@dataclass(frozen=True)
class Deployment:
    """Addresses of one federation's contracts, and where they were deployed.

    Block numbers and transaction hashes are None when the deployment was discovered from the
    chain rather than recorded by :func:`incentive.deploy.deploy_federation`.
    """

    chain_id: int
    registry: str
    ledger: str
    rewards: str
    admin: str
    registry_block: int
    ledger_block: int | None = None
    rewards_block: int | None = None
    registry_tx: str | None = None
    ledger_tx: str | None = None
    rewards_tx: str | None = None

    def __post_init__(self) -> None:
        for name in ("registry", "ledger", "rewards", "admin"):
            value = getattr(self, name)
            if not (isinstance(value, str) and is_address(value)):
                raise ValueError(f"deployment {name} {value!r} is not an address")
            object.__setattr__(self, name, to_checksum_address(value))

    @property
    def start_block(self) -> int:
        """First block holding any of the federation's events (the Registry deployment)."""
        return self.registry_block

    def address_of(self, contract: str) -> str:
        """Address of ``"Registry"``, ``"Ledger"`` or ``"RewardPool"``."""
        return {REGISTRY: self.registry, LEDGER: self.ledger, REWARD_POOL: self.rewards}[contract]

    def to_json(self) -> str:
        """JSON text (one object, sorted keys, with a ``format`` tag)."""
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Deployment:
        """Parse :meth:`to_json` output; raises ValueError when it is not a deployment."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a deployment record (expected format {FORMAT!r})")
        fields = {k: v for k, v in data.items() if k != "format"}
        try:
            return cls(**fields)
        except TypeError as exc:
            raise ValueError(f"bad deployment record: {exc}") from exc

    @classmethod
    def discover(
        cls, w3: Any, registry: str, lock: AbstractContextManager[Any] | None = None
    ) -> Deployment:
        """Read the Ledger, RewardPool, admin and deployment block from a live Registry."""
        if not is_address(registry):
            raise ValueError(f"registry {registry!r} is not an address")
        address = to_checksum_address(registry)
        contract = w3.eth.contract(address=address, abi=load_artifact(REGISTRY).abi)
        with lock if lock is not None else nullcontext():
            chain_id = int(w3.eth.chain_id)
            if not w3.eth.get_code(address):
                raise DeploymentMismatch(
                    f"no contract at {address} on chain {chain_id}; check the registry address "
                    "and the RPC URL"
                )
            try:
                ledger = contract.functions.ledger().call()
                rewards = contract.functions.rewards().call()
                admin = contract.functions.admin().call()
                deployed_at = int(contract.functions.deployedAt().call())
            except Exception as exc:  # web3 raises several unrelated types for a bad ABI match
                raise DeploymentMismatch(
                    f"the contract at {address} does not answer as a medswarm Registry ({exc})"
                ) from exc
        if ledger == _ZERO_ADDRESS or rewards == _ZERO_ADDRESS:
            raise DeploymentMismatch(
                f"registry {address} names no Ledger/RewardPool yet; the deployment was not "
                "finished (setContracts was never called)"
            )
        return cls(
            chain_id=chain_id,
            registry=address,
            ledger=ledger,
            rewards=rewards,
            admin=admin,
            registry_block=deployed_at,
        )


CONSORTIUM_FORMAT = "medswarm-consortium/1"


@dataclass(frozen=True)
class ConsortiumDeployment:
    """Where a federation kept by the Consortium contract lives (its nodes'
    ``chain.deployment_file`` when ``federation.ledger = "consortium"``)."""

    chain_id: int
    consortium: str
    rewards: str

    def to_json(self) -> str:
        return json.dumps({"format": CONSORTIUM_FORMAT, **asdict(self)}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ConsortiumDeployment:
        try:
            raw = json.loads(text)
            if raw.get("format") != CONSORTIUM_FORMAT:
                raise ValueError(f"format is {raw.get('format')!r}, not {CONSORTIUM_FORMAT!r}")
            return cls(
                int(raw["chain_id"]),
                to_checksum_address(raw["consortium"]),
                to_checksum_address(raw["rewards"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DeploymentMismatch(
                f"not a consortium deployment record ({exc}); federation.ledger = "
                '"consortium" needs the file `medswarm testnet` or the deployer wrote'
            ) from exc


def is_consortium_record(text: str) -> bool:
    """Whether a deployment file's text describes a Consortium federation."""
    try:
        raw = json.loads(text)
    except ValueError:
        return False
    return isinstance(raw, dict) and raw.get("format") == CONSORTIUM_FORMAT


def event_decoder(deployment: Deployment) -> EventDecoder:
    """A decoder for the events of the deployment's three contracts."""
    return EventDecoder(
        {deployment.address_of(name): (name, load_artifact(name).abi) for name in CONTRACT_NAMES}
    )


ALL_CONTRACTS = (*CONTRACT_NAMES, "Consortium", "EpochRewards", "RewardToken")


@functools.cache
def error_decoder(contract: str | None = None) -> ErrorDecoder:
    """A decoder for the custom errors of all federation contracts; ``contract``'s own
    declarations win where two contracts name the same error's parameters differently."""
    names = [n for n in (contract, *ALL_CONTRACTS) if n in ALL_CONTRACTS]
    return ErrorDecoder(load_artifact(name).abi for name in dict.fromkeys(names))


def bind_contracts(w3: Any, deployment: Deployment) -> dict[str, Any]:
    """web3 contract objects for the deployment, keyed by contract name."""
    return {
        name: w3.eth.contract(address=deployment.address_of(name), abi=load_artifact(name).abi)
        for name in CONTRACT_NAMES
    }
