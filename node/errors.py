"""Errors raised by the hospital node's learning core (data, weights, training, aggregation).

Every class derives from :class:`~medswarm.errors.MedswarmError` and, where it fits, from the
matching built-in, so callers can catch either.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medswarm.errors import MedswarmError


class DataError(MedswarmError):
    """A data set could not be loaded: missing, malformed or unknown."""


class DataFileMissing(DataError, FileNotFoundError):
    """One or more files of a data set are not where they were expected.

    ``paths`` holds the expected file paths and ``url`` the place to download them from.
    """

    def __init__(self, message: str, paths: Sequence[Path], url: str) -> None:
        super().__init__(message)
        self.paths = tuple(paths)
        self.url = url

    def __str__(self) -> str:
        return str(self.args[0])


class MalformedDataFile(DataError, ValueError):
    """A data file exists but its content does not follow the expected format."""


class ChecksumMismatch(DataError, ValueError):
    """A data file's MD5 differs from the published one (corrupt or a different version)."""


class UnknownDataset(DataError, ValueError):
    """The named data set is not one medswarm knows how to load."""


class UnknownSite(DataError, ValueError):
    """The site (hospital) is not part of the named data set."""


class InvalidWeights(MedswarmError, ValueError):
    """Model weights (or their byte encoding) are malformed, non-finite or too large."""


class InvalidUpdateEncoding(InvalidWeights):
    """An encoded update (:mod:`node.codecs`) is malformed: truncated, of another codec,
    with NaN or negative scales, values or indices out of range; or cannot be encoded."""


class InvalidTrainingConfig(MedswarmError, ValueError):
    """A training hyper-parameter has a value that cannot be used."""


class AggregationError(MedswarmError, ValueError):
    """Updates cannot be aggregated: empty input, mismatched tensors or bad sample counts."""


class InvalidStrategyConfig(MedswarmError, ValueError):
    """A federated strategy's parameter has a value that cannot be used."""


class InvalidStrategyState(MedswarmError, ValueError):
    """Saved server-optimizer state is malformed or belongs to a different configuration."""


class PrivacyError(MedswarmError, ValueError):
    """A differential-privacy parameter cannot be used: a noise multiplier, clipping norm,
    delta, epsilon target, sampling rate or Rényi order out of range."""


class NodeError(MedswarmError):
    """Base class for errors of the node's round machinery."""


class ConfigError(NodeError, ValueError):
    """The configuration is invalid; the message names the key and what is allowed."""


class RoundFailed(NodeError):
    """A round could not complete on this node (no quorum, no aggregate, bad aggregate)."""


class NotAMember(NodeError):
    """This node's account may not take part in rounds (removed, or excluded on chain)."""


class KeyFileError(NodeError):
    """A key file is malformed, too widely readable, or cannot be written."""


class PassphraseError(KeyFileError):
    """The passphrase of the key files is missing, wrong, or cannot be read."""


class NodeDirectoryError(NodeError):
    """A new node directory cannot be made: it already holds keys, or cannot be written."""


class StatusError(NodeError):
    """The node's status server cannot start: a bad ``status.bind`` or a port in use."""


class ChainSetupError(NodeError):
    """The chain the node's ``[chain]`` settings name cannot be used: nothing answers at
    ``chain.url``, it serves another chain, the deployment record's contracts are not there,
    or this machine's clock is behind the chain's."""


class SecAggError(MedswarmError):
    """Base class for errors of secure aggregation (:mod:`node.secagg`)."""


class SecAggConfigError(SecAggError, ValueError):
    """A secure-aggregation round is set up with values that cannot work."""


class SecAggOverflow(SecAggError, OverflowError):
    """An update's values, summed over the cluster, could leave the fixed-point range."""


class MalformedSecAggMessage(SecAggError, ValueError):
    """A secure-aggregation message could not be decoded, or names the wrong round or member."""


class ShareRefused(SecAggError):
    """A member was asked for shares it must not reveal (both secrets of one member)."""


class CannotUnmask(SecAggError):
    """Too few members are left to unmask the round's sum, or their answers disagree."""
