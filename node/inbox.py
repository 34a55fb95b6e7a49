"""Announcements received for each round, filed by kind and sender, with waiting."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable

import trio

from gossip.messages import Announcement, AnnouncementKind

log = logging.getLogger(__name__)
ATTESTATIONS_KEPT = 4  # per (round, sender)
SECAGG_KINDS = frozenset(
    {
        AnnouncementKind.SECAGG_KEYS,
        AnnouncementKind.SECAGG_SHARES,
        AnnouncementKind.SECAGG_ROSTER,
        AnnouncementKind.SECAGG_REQUEST,
        AnnouncementKind.SECAGG_ANSWER,
    }
)


class RoundInbox:
    """The first update per (round, sender), the aggregates per (round, cluster), and the
    attestations, evaluations and validations per (round, sender).

    A second, different update from the same sender for the same round is an equivocation:
    it is dropped and remembered, never allowed to replace the first. A member may attest
    again (or evaluate again) after a failed attempt at a round; the newest
    :data:`ATTESTATIONS_KEPT` of each for a round are kept.

    Beside them it keeps the first *refused* update per (round, sender): one the gossip
    validators rejected for what it says though a member signed and published it (an
    oversized blob, say), which the cluster's aggregator lists as rejected.

    Secure-aggregation messages (keys, shares, rosters, requests, answers) are kept per
    (round, kind, sender), the newest :data:`ATTESTATIONS_KEPT` of each; their readers take
    the first one a sender sent unless a later one is what they look for (an answer to a
    later request).
    """

    def __init__(self) -> None:
        self._updates: dict[int, dict[str, Announcement]] = defaultdict(dict)
        self._aggregates: dict[int, dict[int, list[Announcement]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self._attestations: dict[int, dict[str, list[Announcement]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self._evaluations: dict[int, dict[str, list[Announcement]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self._validations: dict[int, dict[str, list[Announcement]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self._refused: dict[int, dict[str, tuple[Announcement, str]]] = defaultdict(dict)
        self._secagg: dict[int, dict[str, list[Announcement]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.equivocations: list[Announcement] = []
        self._changed = trio.Event()

    def add(self, announcement: Announcement) -> None:
        """File one validated announcement and wake any waiter."""
        sender = announcement.sender.lower()
        if announcement.kind is AnnouncementKind.UPDATE:
            existing = self._updates[announcement.round].get(sender)
            if existing is not None:
                if existing != announcement:
                    log.warning(
                        "equivocating update from %s in round %d dropped",
                        announcement.sender,
                        announcement.round,
                    )
                    self.equivocations.append(announcement)
                return
            self._updates[announcement.round][sender] = announcement
        elif announcement.kind in self._kept_per_sender or announcement.kind in SECAGG_KINDS:
            if announcement.kind in SECAGG_KINDS:
                kept = self._secagg[announcement.round][f"{announcement.kind}/{sender}"]
            else:
                kept = self._kept_per_sender[announcement.kind][announcement.round][sender]
            if announcement in kept:
                return
            kept.append(announcement)
            del kept[:-ATTESTATIONS_KEPT]
        else:
            bucket = self._aggregates[announcement.round][announcement.cluster]
            if announcement not in bucket:
                bucket.append(announcement)
        self._changed.set()
        self._changed = trio.Event()

    def refuse(self, announcement: Announcement, reason: str, round_number: int = 0) -> None:
        """File an update announcement the validators rejected, and why (see the class doc),
        under its round or ``round_number`` (a replay answers in the round it is replayed);
        the sender's first for the round stands."""
        refused = self._refused[round_number or announcement.round]
        refused.setdefault(announcement.sender.lower(), (announcement, reason))
        self._changed.set()
        self._changed = trio.Event()

    def refused_updates(self, round_number: int) -> dict[str, tuple[Announcement, str]]:
        """Refused updates for a round with the reasons, keyed by lowercase sender address."""
        return dict(self._refused.get(round_number, {}))

    def updates(self, round_number: int) -> dict[str, Announcement]:
        """Updates for a round, keyed by lowercase sender address."""
        return dict(self._updates.get(round_number, {}))

    def aggregates(self, round_number: int, cluster: int) -> list[Announcement]:
        return list(self._aggregates.get(round_number, {}).get(cluster, []))

    def attestations(self, round_number: int) -> list[Announcement]:
        """Every attestation kept for a round, by sender, oldest first."""
        by_sender = self._attestations.get(round_number, {})
        return [a for sender in sorted(by_sender) for a in by_sender[sender]]

    def evaluations(self, round_number: int) -> list[Announcement]:
        """Every evaluation kept for a round, by sender, oldest first."""
        by_sender = self._evaluations.get(round_number, {})
        return [a for sender in sorted(by_sender) for a in by_sender[sender]]

    def validations(self, round_number: int) -> list[Announcement]:
        """Every validation kept for a round, by sender, oldest first."""
        by_sender = self._validations.get(round_number, {})
        return [a for sender in sorted(by_sender) for a in by_sender[sender]]

    def secagg(self, round_number: int, kind: AnnouncementKind) -> dict[str, list[Announcement]]:
        """A round's secure-aggregation announcements of one kind, by lowercase sender,
        oldest first."""
        prefix = f"{kind}/"
        return {
            key.removeprefix(prefix): list(kept)
            for key, kept in sorted(self._secagg.get(round_number, {}).items())
            if key.startswith(prefix)
        }

    def first_secagg(self, round_number: int, kind: AnnouncementKind) -> dict[str, Announcement]:
        """The first secure-aggregation announcement of one kind each sender sent for a round."""
        return {sender: kept[0] for sender, kept in self.secagg(round_number, kind).items()}

    @property
    def _kept_per_sender(self) -> dict[AnnouncementKind, dict[int, dict[str, list[Announcement]]]]:
        return {
            AnnouncementKind.ATTEST: self._attestations,
            AnnouncementKind.EVALUATION: self._evaluations,
            AnnouncementKind.VALIDATION: self._validations,
        }

    def forget_before(self, round_number: int) -> None:
        """Drop everything about rounds older than ``round_number``."""
        tables = (
            self._updates,
            self._aggregates,
            self._attestations,
            self._evaluations,
            self._validations,
            self._refused,
            self._secagg,
        )
        for table in tables:
            for old in [r for r in table if r < round_number]:
                del table[old]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds; return False if ``timeout`` passes first."""
        with trio.move_on_after(max(0.0, timeout)):
            while not predicate():
                await self._changed.wait()
            return True
        return predicate()
