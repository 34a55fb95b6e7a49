"""Errors raised by the hospital node."""

from medswarm.errors import MedswarmError


class NodeError(MedswarmError):
    """Base class for node errors."""


class ConfigError(NodeError, ValueError):
    """The configuration is invalid; the message names the key and what is allowed."""


class RoundFailed(NodeError):
    """A round could not complete on this node (no quorum, no aggregate, bad aggregate)."""
