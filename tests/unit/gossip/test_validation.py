from dataclasses import replace
from types import SimpleNamespace

import pytest
import trio
from eth_account import Account
from libp2p.peer.id import ID

from gossip.blobs import BlobStore
from gossip.messages import AggregateInput, Announcement, AnnouncementKind
from gossip.service import GossipConfig, GossipService, new_identity
from gossip.validation import (
    AnnouncementPolicy,
    SenderQuota,
    Verdict,
    judge,
    judge_replay,
    validate_announcement,
)

KEY = "0x" + "11" * 32
STRANGER_KEY = "0x" + "33" * 32
ADDRESS = Account.from_key(KEY).address
STRANGER = Account.from_key(STRANGER_KEY).address
PEER = "12D3KooWmember"


def policy(current: int = 3) -> AnnouncementPolicy:
    members = {ADDRESS.lower(): PEER}
    return AnnouncementPolicy(
        federation="heart",
        member_peer_id=lambda address: members.get(address.lower()),
        current_round=lambda: current,
        max_blob_bytes=1_000,
    )


def announcement(**changes: object) -> Announcement:
    base = Announcement(
        kind=AnnouncementKind.UPDATE,
        federation="heart",
        round=3,
        cluster=0,
        blob_hash="ab" * 32,
        size=120,
        codec="msw1-f32",
        samples=10,
        sender=ADDRESS,
        peer_id=PEER,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_member_announcement_is_accepted() -> None:
    decision, decoded = validate_announcement(announcement().signed(KEY).encode(), PEER, policy())
    assert decision.verdict is Verdict.ACCEPT
    assert decoded is not None and decoded.samples == 10


def test_garbage_is_rejected() -> None:
    decision, decoded = validate_announcement(b"not json", PEER, policy())
    assert decision.verdict is Verdict.REJECT
    assert decoded is None


def test_tampered_announcement_is_rejected() -> None:
    tampered = replace(announcement().signed(KEY), blob_hash="cd" * 32)
    decision = judge(tampered, PEER, policy())
    assert decision.verdict is Verdict.REJECT
    assert "signed by" in decision.reason


def test_unknown_sender_is_ignored_and_reported() -> None:
    reported: list[str] = []
    base = policy()
    watching = AnnouncementPolicy(
        federation=base.federation,
        member_peer_id=base.member_peer_id,
        current_round=base.current_round,
        max_blob_bytes=base.max_blob_bytes,
        on_unknown_sender=reported.append,
    )
    message = announcement(sender=STRANGER).signed(STRANGER_KEY)
    decision = judge(message, PEER, watching)
    assert decision.verdict is Verdict.IGNORE
    assert "not a known member" in decision.reason
    assert reported == [STRANGER]


def test_member_address_from_another_peer_is_rejected() -> None:
    decision = judge(announcement().signed(KEY), "12D3KooWimpostor", policy())
    assert decision.verdict is Verdict.REJECT
    assert "registered as peer" in decision.reason


def test_wrong_federation_and_oversize_are_rejected() -> None:
    assert judge(announcement(federation="x").signed(KEY), PEER, policy()).verdict is Verdict.REJECT
    oversize = announcement(size=1_001).signed(KEY)
    assert "exceeds" in judge(oversize, PEER, policy()).reason


def test_inputs_must_match_kind() -> None:
    item = AggregateInput(sender=ADDRESS, blob_hash="ab" * 32, samples=1)
    update_with_inputs = announcement(inputs=(item,)).signed(KEY)
    assert judge(update_with_inputs, PEER, policy()).verdict is Verdict.REJECT
    bare_aggregate = announcement(kind=AnnouncementKind.AGGREGATE).signed(KEY)
    assert judge(bare_aggregate, PEER, policy()).verdict is Verdict.REJECT


def test_old_and_far_future_rounds_are_ignored_not_rejected() -> None:
    old = judge(announcement(round=2).signed(KEY), PEER, policy(current=3))
    ahead = judge(announcement(round=4).signed(KEY), PEER, policy(current=3))
    far = judge(announcement(round=5).signed(KEY), PEER, policy(current=3))
    assert old.verdict is Verdict.IGNORE
    assert ahead.verdict is Verdict.ACCEPT
    assert far.verdict is Verdict.IGNORE


def test_an_attestation_carries_a_round_signature_and_no_blob() -> None:
    attest = announcement(kind=AnnouncementKind.ATTEST, size=0, samples=0)
    signed = attest.signed(KEY)
    assert "round signature" in judge(signed, PEER, policy()).reason
    good = replace(attest, round_signature="ab" * 65).signed(KEY)
    assert judge(good, PEER, policy()).verdict is Verdict.ACCEPT
    with_blob = replace(attest, round_signature="ab" * 65, size=10).signed(KEY)
    assert "no blob" in judge(with_blob, PEER, policy()).reason
    update_with_signature = announcement(round_signature="ab" * 65).signed(KEY)
    assert judge(update_with_signature, PEER, policy()).verdict is Verdict.REJECT


def test_an_aggregate_lists_what_it_averaged_and_counts_only_that() -> None:
    taken = AggregateInput(ADDRESS, "ab" * 32, 7, score=12)
    refused = AggregateInput(STRANGER, "cd" * 32, 5, rejected=True)
    kind = AnnouncementKind.AGGREGATE
    good = announcement(kind=kind, inputs=(taken, refused), samples=7).signed(KEY)
    assert judge(good, PEER, policy()).verdict is Verdict.ACCEPT
    counted_rejected = announcement(kind=kind, inputs=(taken, refused), samples=12).signed(KEY)
    assert "sum of its accepted" in judge(counted_rejected, PEER, policy()).reason
    only_rejected = announcement(kind=kind, inputs=(refused,), samples=5).signed(KEY)
    assert "inputs it averaged" in judge(only_rejected, PEER, policy()).reason


@pytest.mark.parametrize("kind", [AnnouncementKind.EVALUATION, AnnouncementKind.VALIDATION])
def test_an_evaluation_lists_measured_updates_and_names_no_blob(kind: AnnouncementKind) -> None:
    measured = AggregateInput(ADDRESS, "ab" * 32, 7, score=600_000)
    good = announcement(kind=kind, inputs=(measured,), size=0, samples=0).signed(KEY)
    assert judge(good, PEER, policy()).verdict is Verdict.ACCEPT
    empty = announcement(kind=kind, size=0, samples=0).signed(KEY)
    assert "lists the updates" in judge(empty, PEER, policy()).reason
    refused = replace(measured, score=0, rejected=True)
    with_rejected = announcement(kind=kind, inputs=(refused,), size=0, samples=0).signed(KEY)
    assert judge(with_rejected, PEER, policy()).verdict is Verdict.REJECT
    with_blob = announcement(kind=kind, inputs=(measured,), size=5, samples=0).signed(KEY)
    assert "no blob" in judge(with_blob, PEER, policy()).reason
    twice = announcement(kind=kind, inputs=(measured, measured), size=0, samples=0).signed(KEY)
    assert "each sender's update once" in judge(twice, PEER, policy()).reason


def test_a_barred_member_is_rejected_a_stranger_only_ignored() -> None:
    barred = replace(policy(), is_barred=lambda address: address.lower() == STRANGER.lower())
    from_barred = announcement(sender=STRANGER).signed(STRANGER_KEY)
    decision = judge(from_barred, PEER, barred)
    assert decision.verdict is Verdict.REJECT and "excluded or removed" in decision.reason
    assert judge(from_barred, PEER, policy()).verdict is Verdict.IGNORE
    assert judge(announcement().signed(KEY), PEER, barred).verdict is Verdict.ACCEPT


def test_a_sender_gets_the_limit_of_announcements_per_round_and_no_more() -> None:
    quota = SenderQuota(limit=4)
    distinct = [announcement(blob_hash=f"{i:064x}").signed(KEY) for i in range(5)]
    verdicts = [quota.admit(a, current_round=3).verdict for a in distinct]
    assert verdicts == [Verdict.ACCEPT] * 4 + [Verdict.REJECT]
    refused = quota.admit(distinct[4], current_round=3)
    assert "flooding" in refused.reason and "4 announcements" in refused.reason
    # another round and another sender have limits of their own
    assert quota.admit(announcement(round=4).signed(KEY), current_round=3).accepted
    stranger = announcement(sender=STRANGER).signed(STRANGER_KEY)
    assert quota.admit(stranger, current_round=3).accepted


def test_a_repeat_of_a_counted_announcement_is_not_counted_again() -> None:
    quota = SenderQuota(limit=4)
    update = announcement().signed(KEY)
    assert all(quota.admit(update, current_round=3).accepted for _ in range(10))
    others = [announcement(blob_hash=f"{i:064x}").signed(KEY) for i in range(3)]
    assert all(quota.admit(a, current_round=3).accepted for a in others)
    assert not quota.admit(announcement(blob_hash="ef" * 32).signed(KEY), 3).accepted


def test_counts_of_rounds_that_are_over_are_forgotten() -> None:
    quota = SenderQuota(limit=4)
    for round_number in range(1, 100):
        for i in range(4):
            item = announcement(round=round_number, blob_hash=f"{i:064x}").signed(KEY)
            assert quota.admit(item, current_round=round_number).accepted
    assert len(quota._seen) == 1  # only the current round's count is kept


def test_the_gossip_service_rejects_a_flood_as_an_offence_of_the_publisher() -> None:
    identity = new_identity(b"\x07" * 32)
    peer = ID.from_pubkey(identity.public_key)
    members = {ADDRESS.lower(): peer.to_base58()}
    lookups = AnnouncementPolicy(
        federation="heart",
        member_peer_id=lambda address: members.get(address.lower()),
        current_round=lambda: 3,
        max_blob_bytes=1_000,
    )
    service = GossipService(
        GossipConfig(max_announcements_per_round=5), lookups, BlobStore(), identity
    )
    verdicts = []
    for index in range(7):
        signed = announcement(peer_id=peer.to_base58(), blob_hash=f"{index:064x}").signed(KEY)
        message = SimpleNamespace(from_id=peer.to_bytes(), data=signed.encode())
        verdicts.append(service._validate(peer, message))
    assert verdicts == [True] * 5 + [False] * 2
    assert service.offences[peer.to_base58()] == 2


def test_a_member_answers_for_a_refused_update_of_a_round_in_play() -> None:
    oversize = judge(announcement(size=1_001).signed(KEY), PEER, policy(current=3))
    assert oversize.verdict is Verdict.REJECT and oversize.accountable
    with_inputs = announcement(inputs=(AggregateInput(ADDRESS, "ab" * 32, 1),)).signed(KEY)
    assert judge(with_inputs, PEER, policy(current=3)).accountable
    # a round over: no aggregator to account for it, an offence like any other
    old = judge(announcement(size=1_001, round=1).signed(KEY), PEER, policy(current=3))
    assert old.verdict is Verdict.REJECT and not old.accountable
    # not from the member's own peer: nothing proves the member published it
    relayed = judge(announcement(size=1_001).signed(KEY), "12D3KooWother", policy(current=3))
    assert relayed.verdict is Verdict.REJECT and not relayed.accountable


def test_the_gossip_service_hands_on_refused_updates_without_an_offence() -> None:
    identity = new_identity(b"\x08" * 32)
    peer = ID.from_pubkey(identity.public_key)
    members = {ADDRESS.lower(): peer.to_base58()}
    lookups = AnnouncementPolicy(
        federation="heart",
        member_peer_id=lambda address: members.get(address.lower()),
        current_round=lambda: 3,
        max_blob_bytes=1_000,
    )
    service = GossipService(
        GossipConfig(max_announcements_per_round=5), lookups, BlobStore(), identity
    )
    refused: list[tuple[Announcement, str]] = []
    blacklisted: list[tuple[str, str]] = []
    service.on_refused = lambda a, reason: refused.append((a, reason))
    service.on_blacklisted = lambda p, reason: blacklisted.append((p, reason))
    verdicts = []
    for index in range(9):  # oversized, each a new one: refused, then flooding past 5
        signed = announcement(peer_id=peer.to_base58(), size=1_001 + index).signed(KEY)
        message = SimpleNamespace(from_id=peer.to_bytes(), data=signed.encode())
        verdicts.append(service._validate(peer, message))
    # the refused ones are passed on as evidence (True: forwarded), the floods are not
    assert verdicts == [True] * 5 + [False] * 4
    assert [a.size for a, _ in refused] == [1_001, 1_002, 1_003, 1_004, 1_005]
    assert all("exceeds the 1000-byte limit" in reason for _, reason in refused)
    assert service.offences[peer.to_base58()] == 4  # the floods only
    assert len(blacklisted) == 1 and "flooding" in blacklisted[0][1]
    assert service.rejected == {"oversized": 5, "flooding": 4}  # counted by reason


def test_each_decision_names_its_reason_in_a_word() -> None:
    item = AggregateInput(sender=ADDRESS, blob_hash="ab" * 32, samples=1)
    barred = replace(policy(), is_barred=lambda address: address.lower() == STRANGER.lower())
    tampered = replace(announcement().signed(KEY), blob_hash="cd" * 32)
    cases = {
        "accepted": judge(announcement().signed(KEY), PEER, policy()),
        "malformed": validate_announcement(b"not json", PEER, policy())[0],
        "wrong-federation": judge(announcement(federation="x").signed(KEY), PEER, policy()),
        "bad-signature": judge(tampered, PEER, policy()),
        "barred": judge(announcement(sender=STRANGER).signed(STRANGER_KEY), PEER, barred),
        "unknown": judge(announcement(sender=STRANGER).signed(STRANGER_KEY), PEER, policy()),
        "wrong-peer": judge(announcement().signed(KEY), "12D3KooWimpostor", policy()),
        "oversized": judge(announcement(size=1_001).signed(KEY), PEER, policy()),
        "bad-fields": judge(announcement(inputs=(item,)).signed(KEY), PEER, policy()),
        "late": judge(announcement(round=2).signed(KEY), PEER, policy(current=3)),
        "ahead": judge(announcement(round=5).signed(KEY), PEER, policy(current=3)),
    }
    assert {kind: decision.kind for kind, decision in cases.items()} == {k: k for k in cases}


def test_a_replay_two_rounds_late_of_a_delivered_update_is_rejected_and_accountable() -> None:
    replayed = announcement(round=1).signed(KEY)
    ignored = judge(replayed, PEER, policy(current=3))
    assert ignored.verdict is Verdict.IGNORE  # judged alone, only a round that is over
    decision = judge_replay(replayed, ignored, PEER, policy(current=3), delivered_before=True)
    assert decision.verdict is Verdict.REJECT and decision.accountable
    assert "replays its update announcement of round 1 in round 3" in decision.reason
    assert decision.kind == "replay"
    # never delivered here: a late announcement, not a repeat of one
    fresh = judge_replay(replayed, ignored, PEER, policy(current=3), delivered_before=False)
    assert fresh is ignored
    # one round late: perhaps an honest node retrying a round the others just finished
    late = announcement(round=2).signed(KEY)
    assert (
        judge_replay(
            late, judge(late, PEER, policy(current=3)), PEER, policy(current=3), True
        ).verdict
        is Verdict.IGNORE
    )
    # relayed for the member by another peer: nothing proves the member published it again
    relayed = judge(replayed, "12D3KooWother", policy(current=3))
    assert not judge_replay(replayed, relayed, "12D3KooWother", policy(current=3), True).accountable


def test_a_replay_is_judged_against_the_round_after_the_last_one_seen_finalized() -> None:
    # Working on round 2 still (adopting its model), but round 2 is final: a member that has
    # moved on to round 3 and replays round 1 there is two rounds late, not one.
    replayed = announcement(round=1).signed(KEY)
    finishing = replace(policy(current=2), finished_round=lambda: 2)
    assert finishing.replay_round() == 3
    ignored = judge(replayed, PEER, finishing)
    decision = judge_replay(replayed, ignored, PEER, finishing, delivered_before=True)
    assert decision.verdict is Verdict.REJECT
    assert "replays its update announcement of round 1 in round 3" in decision.reason
    # round 2 not yet final here: one round late, perhaps an honest retry
    waiting = replace(policy(current=2), finished_round=lambda: 1)
    assert waiting.replay_round() == 2
    assert judge_replay(replayed, ignored, PEER, waiting, True).verdict is Verdict.IGNORE
    # the rounds the node accepts announcements for do not move with it
    assert judge(announcement(round=2).signed(KEY), PEER, finishing).verdict is Verdict.ACCEPT


def test_the_gossip_service_passes_evidence_on_but_does_not_deliver_it() -> None:
    identity = new_identity(b"\x09" * 32)
    peer = ID.from_pubkey(identity.public_key)
    members = {ADDRESS.lower(): peer.to_base58()}
    now = [1]
    lookups = AnnouncementPolicy(
        federation="heart",
        member_peer_id=lambda address: members.get(address.lower()),
        current_round=lambda: now[0],
        max_blob_bytes=1_000,
    )
    service = GossipService(
        GossipConfig(max_announcements_per_round=5), lookups, BlobStore(), identity
    )
    refused: list[str] = []
    service.on_refused = lambda a, reason: refused.append(reason)
    update = announcement(peer_id=peer.to_base58(), round=1).signed(KEY)
    message = SimpleNamespace(from_id=peer.to_bytes(), data=update.encode())

    async def deliver_then_replay() -> list[Announcement]:
        assert service._validate(peer, message)
        await service._deliver(update.encode())
        now[0] = 3  # two rounds on, the very same signed bytes again
        assert service._validate(peer, message)
        await service._deliver(update.encode())
        return [service.announcements.receive_nowait()]

    delivered = trio.run(deliver_then_replay)
    assert delivered == [update]  # the first time only
    with pytest.raises(trio.WouldBlock):
        service.announcements.receive_nowait()
    assert refused == ["replays its update announcement of round 1 in round 3"]
    assert service.offences[peer.to_base58()] == 0


def test_a_secure_aggregation_key_advertisement_has_its_size_and_the_members_samples() -> None:
    keys = announcement(kind=AnnouncementKind.SECAGG_KEYS, size=100, samples=10)
    assert judge(keys.signed(KEY), PEER, policy()).verdict is Verdict.ACCEPT
    for wrong in (replace(keys, size=101), replace(keys, samples=0)):
        decision = judge(wrong.signed(KEY), PEER, policy())
        assert decision.verdict is Verdict.REJECT and "100 bytes" in decision.reason
    listed = replace(keys, inputs=(AggregateInput(ADDRESS, "ab" * 32, 1),)).signed(KEY)
    assert "must not list inputs" in judge(listed, PEER, policy()).reason


@pytest.mark.parametrize(
    "kind",
    [
        AnnouncementKind.SECAGG_SHARES,
        AnnouncementKind.SECAGG_REQUEST,
        AnnouncementKind.SECAGG_ANSWER,
    ],
)
def test_secure_aggregation_messages_name_a_blob_and_no_samples(kind: AnnouncementKind) -> None:
    good = announcement(kind=kind, size=188, samples=0)
    assert judge(good.signed(KEY), PEER, policy()).verdict is Verdict.ACCEPT
    for wrong in (replace(good, size=0), replace(good, samples=3)):
        assert "names a blob and no samples" in judge(wrong.signed(KEY), PEER, policy()).reason
    oversize = replace(good, size=1_001).signed(KEY)
    assert "exceeds" in judge(oversize, PEER, policy()).reason
    signed_round = replace(good, round_signature="ab" * 65).signed(KEY)
    assert "round signature" in judge(signed_round, PEER, policy()).reason
    late = judge(replace(good, round=2).signed(KEY), PEER, policy(current=3))
    assert late.verdict is Verdict.IGNORE


def test_a_secure_aggregation_roster_lists_members_once_with_their_samples() -> None:
    one = AggregateInput(ADDRESS, "ab" * 32, 7)
    two = AggregateInput(STRANGER, "cd" * 32, 5)
    kind = AnnouncementKind.SECAGG_ROSTER
    good = announcement(kind=kind, inputs=(one, two), size=0, samples=12)
    assert judge(good.signed(KEY), PEER, policy()).verdict is Verdict.ACCEPT
    problems = {
        "members to mask with": replace(good, inputs=(), samples=0),
        "each member once": replace(good, inputs=(one, one), samples=14),
        "members' sum": replace(good, samples=11),
        "names no blob": replace(good, size=4),
    }
    for reason, wrong in problems.items():
        decision = judge(wrong.signed(KEY), PEER, policy())
        assert decision.verdict is Verdict.REJECT and reason in decision.reason, reason
    rejected = replace(good, inputs=(one, replace(two, rejected=True))).signed(KEY)
    assert "none rejected" in judge(rejected, PEER, policy()).reason


def test_an_update_of_another_codec_is_rejected_for_what_it_says() -> None:
    expecting = replace(policy(), update_codec=lambda round_number: "mswc1-int8")
    ok = judge(announcement(codec="mswc1-int8").signed(KEY), PEER, expecting)
    assert ok.verdict is Verdict.ACCEPT
    decision = judge(announcement(codec="mswt1-f32").signed(KEY), PEER, expecting)
    assert decision.verdict is Verdict.REJECT and decision.accountable
    assert "update codec 'mswt1-f32' is not the federation's 'mswc1-int8'" in decision.reason
    assert "federation.update_codec" in decision.reason
    aggregate = announcement(
        kind=AnnouncementKind.AGGREGATE,
        codec="mswt1-f32",
        inputs=(AggregateInput(ADDRESS, "cd" * 32, 10, 1),),
    )
    assert judge(aggregate.signed(KEY), PEER, expecting).verdict is Verdict.ACCEPT
    anything = replace(policy(), update_codec=lambda round_number: None)
    assert judge(announcement(codec="x").signed(KEY), PEER, anything).verdict is Verdict.ACCEPT


def test_an_aggregate_of_another_codec_is_rejected_for_what_it_says() -> None:
    expecting = replace(
        policy(),
        update_codec=lambda round_number: "mswc1-int8",
        aggregate_codec=lambda round_number: "mswc1-int8" if round_number > 1 else "mswt1-f32",
    )
    taken = (AggregateInput(ADDRESS, "cd" * 32, 10, 1),)
    aggregate = announcement(kind=AnnouncementKind.AGGREGATE, inputs=taken, codec="mswc1-int8")
    assert judge(aggregate.signed(KEY), PEER, expecting).verdict is Verdict.ACCEPT
    float32 = replace(aggregate, codec="mswt1-f32").signed(KEY)
    decision = judge(float32, PEER, expecting)
    assert decision.verdict is Verdict.REJECT and decision.accountable
    assert "aggregate codec 'mswt1-f32' is not the federation's 'mswc1-int8'" in decision.reason
    # a round whose aggregates are float32 (the statistics round, say): int8 is refused
    first = replace(aggregate, round=1).signed(KEY)
    assert judge(first, PEER, replace(expecting, current_round=lambda: 1)).verdict is (
        Verdict.REJECT
    )
