"""Errors raised by the ledger side: chain access, contract calls, artifacts and audits.

Every class derives from :class:`medswarm.errors.MedswarmError`; where a built-in fits, it is a
base too (``ChainUnavailable`` is a ``ConnectionError``, ``InvalidContributionInput`` a
``ValueError``, as is ``InvalidMeasurementInput``).
"""

from __future__ import annotations

from typing import Any

from medswarm.errors import MedswarmError


class ChainError(MedswarmError):
    """Something went wrong talking to the chain or its contracts."""


class ChainUnavailable(ChainError, ConnectionError):
    """No Ethereum JSON-RPC endpoint answered at the given URL."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"no Ethereum JSON-RPC node answers at {url} ({reason}); start one "
            "(e.g. `anvil --host 127.0.0.1 --port 8545`) or point medswarm at a running node "
            "with the right URL"
        )


class ContractReverted(ChainError):
    """A contract call or transaction reverted; ``error_name`` is the Solidity custom error."""

    def __init__(
        self,
        contract: str,
        function: str,
        error_name: str | None,
        error_args: dict[str, Any] | None = None,
        detail: str | None = None,
    ) -> None:
        self.contract = contract
        self.function = function
        self.error_name = error_name
        self.error_args = dict(error_args or {})
        self.detail = detail
        if error_name is not None:
            shown_args = ", ".join(f"{k}={v}" for k, v in self.error_args.items())
            what = f"{error_name}({shown_args})"
        else:
            what = detail or "no revert reason given"
        super().__init__(f"{contract}.{function} reverted: {what}")


class TransactionTimeout(ChainError, TimeoutError):
    """A sent transaction was not mined within the allowed time."""


class DeploymentMismatch(ChainError):
    """A deployment description does not match what is on the chain."""


class ArtifactError(MedswarmError):
    """Compiled contract artifacts are missing, unreadable or out of date."""


class ArtifactMissing(ArtifactError, FileNotFoundError):
    """No committed artifact for a contract name."""


class ArtifactsStale(ArtifactError):
    """Committed artifacts differ from what the Solidity sources compile to."""

    def __init__(self, stale: list[str]) -> None:
        self.stale = list(stale)
        super().__init__(
            f"contract artifacts out of date: {', '.join(self.stale)}; "
            "regenerate them with `python -m contracts.compile` and commit the result"
        )


class CompilerNotFound(ArtifactError):
    """No usable Solidity compiler (native solc 0.8.37 or the npm WebAssembly build)."""


class CompilationFailed(ArtifactError):
    """The Solidity compiler reported errors."""


class AuditError(MedswarmError):
    """An audit could not be carried out (missing or garbled inputs)."""


class InvalidContributionInput(MedswarmError, ValueError):
    """Arguments to a contribution score are not valid numbers."""


class InvalidRoundCommit(MedswarmError, ValueError):
    """A round's records, cluster commitments or signatures cannot be submitted as given."""


class InvalidMeasurementInput(MedswarmError, ValueError):
    """Members, utilities, evaluator results or settings given to a contribution measurement
    (:mod:`incentive.shapley`) are not valid."""


class InvalidPrivacyBudget(MedswarmError, ValueError):
    """An epsilon or delta that the chain's fixed-point privacy record cannot hold."""
