"""Deciding what to do with an incoming announcement: accept, ignore or reject.

Reject means the message is invalid or forged and counts against the peer that sent it;
ignore means it is well formed but not useful now (a duplicate, a round long past, a round
too far ahead) and costs the peer nothing. This mirrors go-libp2p-pubsub's
``ValidationResult`` and is a pure function of the message and a small policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from gossip.errors import BadSignature, MalformedMessage
from gossip.messages import Announcement, AnnouncementKind


class Verdict(StrEnum):
    """The three outcomes of validating a gossip message."""

    ACCEPT = "accept"
    IGNORE = "ignore"
    REJECT = "reject"


@dataclass(frozen=True)
class Decision:
    """A verdict with the reason for it (for logs and peer scoring).

    ``accountable`` marks a rejection for what an announcement says (a blob over the size
    limit, fields its kind must not carry) for the round under way (or the next), or a
    replay of an old round's update announcement (:func:`judge_replay`), when a registered
    member signed it and published it from its own registered peer. The member answers for
    it on chain (its cluster's aggregator lists the update as rejected, which lowers its
    reputation), so it is not an offence of its peer: a member still in good standing on
    chain stays connected. Such an announcement is still forwarded, as evidence, so that
    every member holds what the member signed and judges its cluster's commitment alike;
    no node uses it.

    ``kind`` names the reason in a word or two (``bad-signature``, ``flooding``, ``late``, ...)
    for counting decisions by reason; ``reason`` says it in full, for the logs.
    """

    verdict: Verdict
    reason: str = ""
    accountable: bool = False
    kind: str = ""

    @property
    def accepted(self) -> bool:
        return self.verdict is Verdict.ACCEPT


ACCEPT = Decision(Verdict.ACCEPT, kind="accepted")


@dataclass(frozen=True)
class AnnouncementPolicy:
    """What a node accepts.

    ``member_peer_id`` maps a member's Ethereum address (any case) to the libp2p peer id it
    registered on chain, or ``None`` for a non-member. ``current_round`` is the round the
    node is working on; announcements up to ``rounds_ahead`` rounds ahead are accepted (a
    faster peer may already be there), older ones are ignored. An announcement signed by an
    address the node does not know is ignored (not rejected: the registry may have admitted it
    since the node last looked) and reported through ``on_unknown_sender``, unless
    ``is_stranger`` says the registry has been read again since that address (or the peer
    that published it) first spoke and still does not list it: then it is rejected, and a
    peer that keeps speaking for outsiders is cut off like any other offender.

    ``is_member_peer`` says whether a libp2p peer id belongs to a registered member: only
    members get blobs from this node (a member's node sets it; ``None`` serves every
    connected peer, for tools that run without a registry such as ``medswarm bench blob``).
    """

    federation: str
    member_peer_id: Callable[[str], str | None]
    current_round: Callable[[], int]
    max_blob_bytes: int
    rounds_ahead: int = 1
    on_unknown_sender: Callable[[str], None] | None = None
    is_member_peer: Callable[[str], bool] | None = None
    # Senders the registry lists as no longer taking part (excluded, removed): rejected.
    is_barred: Callable[[str], bool] | None = None
    # (sender address, publishing peer id) -> whether they are known not to be members.
    is_stranger: Callable[[str, str], bool] | None = None
    # round -> the codec its update announcements must name (None: any); another codec is
    # rejected, for what it says (the federation negotiated one codec in its configuration)
    update_codec: Callable[[int], str | None] | None = None
    # round -> the codec its cluster aggregate announcements must name, likewise
    aggregate_codec: Callable[[int], str | None] | None = None
    # The last round this node saw finalized: once it has, the federation is in the next
    # round for judging replays, even before this node starts it (None: current_round only).
    finished_round: Callable[[], int] | None = None

    def replay_round(self) -> int:
        """The round a replayed announcement is judged against (:func:`judge_replay`): the
        one this node works on, or the one after the last it saw finalized if that is later.
        A faster member moves on as soon as a round is final, while this node may still be
        adopting and scoring the model; its replay is no younger for that."""
        finished = self.finished_round() if self.finished_round is not None else 0
        return max(self.current_round(), finished + 1)

    @classmethod
    def without_registry(cls, federation: str, max_blob_bytes: int) -> AnnouncementPolicy:
        """No members known: every announcement is ignored and blobs go to any connected
        peer (benchmarks and tests that move blobs between hosts without a chain)."""
        return cls(federation, lambda address: None, lambda: 0, max_blob_bytes)


# The size of a secure-aggregation key advertisement: header 34, sender 2, two X25519 keys
# (node/secagg_messages.py; gossip does not import the node).
SECAGG_KEYS_BYTES = 34 + 2 + 2 * 32
SECAGG_BLOB_KINDS = (
    AnnouncementKind.SECAGG_SHARES,
    AnnouncementKind.SECAGG_REQUEST,
    AnnouncementKind.SECAGG_ANSWER,
)


def _secagg_shape_problem(announcement: Announcement) -> str:
    """What is wrong with a secure-aggregation announcement's fields (see
    :class:`~gossip.messages.AnnouncementKind`)."""
    kind, inputs = announcement.kind, announcement.inputs
    if announcement.round_signature:
        return f"only an attestation carries a round signature, not a {kind} announcement"
    if kind is AnnouncementKind.SECAGG_ROSTER:
        if not inputs or any(i.rejected for i in inputs):
            return "a secure-aggregation roster lists the members to mask with (none rejected)"
        if len({i.sender.lower() for i in inputs}) != len(inputs):
            return "a secure-aggregation roster lists each member once"
        if announcement.size or announcement.samples != sum(i.samples for i in inputs):
            return "a secure-aggregation roster names no blob; its samples are its members' sum"
        return ""
    if inputs:
        return f"a {kind} announcement must not list inputs"
    if kind is AnnouncementKind.SECAGG_KEYS:
        if announcement.size != SECAGG_KEYS_BYTES or announcement.samples <= 0:
            return (
                f"a secure-aggregation key advertisement is {SECAGG_KEYS_BYTES} bytes and names "
                "its member's samples"
            )
        return ""
    if announcement.size <= 0 or announcement.samples:
        return f"a {kind} announcement names a blob and no samples"
    return ""


def _shape_problem(announcement: Announcement) -> str:
    """What is wrong with the fields an announcement of its kind must (not) carry."""
    kind = announcement.kind
    if kind in (AnnouncementKind.SECAGG_KEYS, AnnouncementKind.SECAGG_ROSTER, *SECAGG_BLOB_KINDS):
        return _secagg_shape_problem(announcement)
    if kind is AnnouncementKind.ATTEST:
        if not announcement.round_signature:
            return "an attestation must carry its round signature"
        if announcement.inputs or announcement.size or announcement.samples:
            return "an attestation names no blob to fetch: no inputs, size 0, samples 0"
        return ""
    if kind in (AnnouncementKind.EVALUATION, AnnouncementKind.VALIDATION):
        if not announcement.inputs or any(i.rejected for i in announcement.inputs):
            return f"an {kind} lists the updates it measured (none rejected)"
        if len({i.sender.lower() for i in announcement.inputs}) != len(announcement.inputs):
            return f"an {kind} measures each sender's update once"
        if announcement.size or announcement.samples or announcement.round_signature:
            return f"an {kind} names no blob to fetch: size 0, samples 0, no round signature"
        return ""
    if announcement.round_signature:
        return f"only an attestation carries a round signature, not a {kind} announcement"
    if announcement.samples <= 0:
        return "announced update was trained on no samples"
    if kind is AnnouncementKind.UPDATE and announcement.inputs:
        return "an update announcement must not list inputs"
    if kind is AnnouncementKind.AGGREGATE:
        if not any(not i.rejected for i in announcement.inputs):
            return "an aggregate announcement must list the inputs it averaged"
        if announcement.samples != sum(i.samples for i in announcement.inputs if not i.rejected):
            return "an aggregate's samples must be the sum of its accepted inputs' samples"
    return ""


def _codec_problem(announcement: Announcement, policy: AnnouncementPolicy) -> str:
    """Why an update or aggregate announcement's codec is not the one the federation uses
    for it, or ""."""
    if announcement.kind is AnnouncementKind.UPDATE:
        rule, what = policy.update_codec, "update"
    elif announcement.kind is AnnouncementKind.AGGREGATE:
        rule, what = policy.aggregate_codec, "aggregate"
    else:
        return ""
    expected = rule(announcement.round) if rule is not None else None
    if expected is None or announcement.codec == expected:
        return ""
    return (
        f"{what} codec {announcement.codec!r} is not the federation's {expected!r} for round "
        f"{announcement.round}: every member must run the same federation.update_codec"
    )


def validate_announcement(
    data: bytes, origin_peer_id: str, policy: AnnouncementPolicy
) -> tuple[Decision, Announcement | None]:
    """Decode and judge one gossip payload published by ``origin_peer_id``."""
    try:
        announcement = Announcement.decode(data)
    except MalformedMessage as exc:
        return Decision(Verdict.REJECT, f"malformed: {exc}", kind="malformed"), None
    return judge(announcement, origin_peer_id, policy), announcement


def judge(announcement: Announcement, origin_peer_id: str, policy: AnnouncementPolicy) -> Decision:
    """Judge a decoded announcement against the policy."""
    if announcement.federation != policy.federation:
        return Decision(
            Verdict.REJECT, f"wrong federation {announcement.federation!r}", kind="wrong-federation"
        )
    try:
        announcement.verify_signature()
    except BadSignature as exc:
        return Decision(Verdict.REJECT, str(exc), kind="bad-signature")
    registered = policy.member_peer_id(announcement.sender)
    if (
        registered is None
        and policy.is_barred is not None
        and policy.is_barred(announcement.sender)
    ):
        return Decision(
            Verdict.REJECT,
            f"sender {announcement.sender} is excluded or removed from the federation",
            kind="barred",
        )
    if (
        registered is None
        and policy.is_stranger is not None
        and policy.is_stranger(announcement.sender, origin_peer_id)
    ):
        return Decision(
            Verdict.REJECT,
            f"sender {announcement.sender} (peer {origin_peer_id}) is not a member: the "
            "registry, read again since it first spoke, does not list it",
            kind="not-a-member",
        )
    if registered is None:
        # Possibly a member admitted after this node last read the registry: not an offence.
        if policy.on_unknown_sender is not None:
            policy.on_unknown_sender(announcement.sender)
        return Decision(
            Verdict.IGNORE, f"sender {announcement.sender} is not a known member", kind="unknown"
        )
    if registered != announcement.peer_id or origin_peer_id != announcement.peer_id:
        return Decision(
            Verdict.REJECT,
            f"sender {announcement.sender} is registered as peer {registered}, "
            f"but the announcement names {announcement.peer_id} and came from {origin_peer_id}",
            kind="wrong-peer",
        )
    current = policy.current_round()
    # Only a round under way has an aggregator to hold the member to account.
    in_play = current <= announcement.round <= current + policy.rounds_ahead
    if announcement.size > policy.max_blob_bytes:
        return Decision(
            Verdict.REJECT,
            f"announced blob of {announcement.size} bytes exceeds the "
            f"{policy.max_blob_bytes}-byte limit (network.max_blob_bytes)",
            accountable=in_play,
            kind="oversized",
        )
    problem = _shape_problem(announcement) or _codec_problem(announcement, policy)
    if problem:
        return Decision(Verdict.REJECT, problem, accountable=in_play, kind="bad-fields")
    if announcement.round < current:
        return Decision(
            Verdict.IGNORE, f"round {announcement.round} is over (now {current})", kind="late"
        )
    if announcement.round > current + policy.rounds_ahead:
        return Decision(
            Verdict.IGNORE,
            f"round {announcement.round} is too far ahead of {current}",
            kind="ahead",
        )
    return ACCEPT


# A repeat of an update announcement one round late may be an honest node retrying a round
# the others have just finished; from two rounds on it is a replay.
REPLAY_AGE = 2


def judge_replay(
    announcement: Announcement,
    decision: Decision,
    origin_peer_id: str,
    policy: AnnouncementPolicy,
    delivered_before: bool,
) -> Decision:
    """A member's update announcement, already delivered here once, published again from
    its own peer at least :data:`REPLAY_AGE` rounds after its round (judged against
    :meth:`AnnouncementPolicy.replay_round`): REJECT it as a replay the member answers for
    (``accountable``). Any other ``decision`` of :func:`judge` (which checked the signature)
    stands."""
    current_round = policy.replay_round()
    if (
        decision.verdict is Verdict.IGNORE
        and announcement.kind is AnnouncementKind.UPDATE
        and delivered_before
        and policy.member_peer_id(announcement.sender) == origin_peer_id == announcement.peer_id
        and announcement.round <= current_round - REPLAY_AGE
    ):
        return Decision(
            Verdict.REJECT,
            f"replays its update announcement of round {announcement.round} in round "
            f"{current_round}",
            accountable=True,
            kind="replay",
        )
    return decision


class SenderQuota:
    """At most ``limit`` announcements accepted from one sender for one round.

    A member announces a handful each round (its update, perhaps an aggregate, an
    attestation, an evaluation), so a sender past the limit is flooding the topic. The
    announcements a member answers for although they were rejected (``accountable``, which
    cost its peer no offence) count too. A repeat of an announcement already counted (the
    same signed bytes: a retried round announces its update again) adds nothing and is not
    counted again. Counts are kept only for the rounds the validator accepts, from the
    current one on, so the state stays within members x (``rounds_ahead`` + 1) x ``limit``
    signatures.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: dict[tuple[int, str], set[str]] = {}  # (round, sender) -> signatures

    def admit(self, announcement: Announcement, current_round: int) -> Decision:
        """Count an announcement :func:`judge` accepted (or rejected as ``accountable``);
        ACCEPT, or REJECT it as flooding if it is one too many."""
        for over in [key for key in self._seen if key[0] < current_round]:
            del self._seen[over]
        counted_in = max(announcement.round, current_round)  # a replay counts in the round now
        seen = self._seen.setdefault((counted_in, announcement.sender.lower()), set())
        if announcement.signature in seen:
            return ACCEPT
        if len(seen) >= self.limit:
            return Decision(
                Verdict.REJECT,
                f"flooding: sender {announcement.sender} already had {self.limit} "
                f"announcements accepted for round {counted_in}, the limit "
                "(network.max_announcements_per_round)",
                kind="flooding",
            )
        seen.add(announcement.signature)
        return ACCEPT
