"""Errors raised by the gossip layer."""

from medswarm.errors import MedswarmError


class GossipError(MedswarmError):
    """Base class for network-layer errors."""


class MalformedMessage(GossipError, ValueError):
    """A gossip message could not be decoded or is not well formed."""


class BadSignature(GossipError, ValueError):
    """A message's signature does not match its claimed sender."""


class BlobError(GossipError):
    """Base class for blob store and blob transfer errors."""


class BlobTooLarge(BlobError, ValueError):
    """A blob is larger than the configured limit."""


class BlobNotFound(BlobError, LookupError):
    """No provider could supply the requested blob."""


class BlobHashMismatch(BlobError, ValueError):
    """Bytes received for a blob do not hash to the announced SHA-256."""


class FetchFailed(BlobError):
    """Fetching a blob failed at every provider that was tried."""


class BulkChannelError(BlobError):
    """The bulk channel could not deliver a blob; the fetcher falls back to a libp2p stream."""


class FrameRejected(BulkChannelError, ValueError):
    """A bulk frame was altered, out of bounds, mis-flagged, or the stream ended early."""


class SessionRefused(BulkChannelError):
    """A bulk connection named an unknown, used or expired session, or a wrong token."""


class GossipConfigError(GossipError, ValueError):
    """A network setting is out of range."""
