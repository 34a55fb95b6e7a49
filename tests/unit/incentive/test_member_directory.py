"""The member directory reads the registry in full only after the Registry logged an event."""

from __future__ import annotations

from dataclasses import dataclass, field

from incentive.member_directory import MAX_LOG_BLOCKS, MemberDirectory
from incentive.records import MemberInfo

ALICE = MemberInfo("0x" + "aa" * 20, "Alice", "12D3KooWalice", ["/ip4/127.0.0.1/tcp/1"])
BOB = MemberInfo("0x" + "bb" * 20, "Bob", "", [], cluster=1)


@dataclass
class FakeRegistry:
    """A chain whose head and Registry events the test sets; counts the requests."""

    listed: list[MemberInfo]
    head: int = 10
    logged_at: set[int] = field(default_factory=set)  # blocks holding a Registry event
    full_reads: int = 0
    log_queries: list[tuple[int, int]] = field(default_factory=list)

    def members(self) -> list[MemberInfo]:
        self.full_reads += 1
        return list(self.listed)

    def block_number(self) -> int:
        return self.head

    def registry_logged(self, first_block: int, last_block: int) -> bool:
        self.log_queries.append((first_block, last_block))
        return any(first_block <= block <= last_block for block in self.logged_at)


def test_the_first_read_is_a_full_one() -> None:
    chain = FakeRegistry([ALICE, BOB])

    assert MemberDirectory(chain).members() == [ALICE, BOB]
    assert (chain.full_reads, chain.log_queries) == (1, [])


def test_without_a_new_block_the_list_is_kept_without_asking_for_logs() -> None:
    chain = FakeRegistry([ALICE])
    directory = MemberDirectory(chain)
    directory.members()

    assert directory.members() == [ALICE]
    assert (chain.full_reads, chain.log_queries) == (1, [])


def test_new_blocks_without_registry_events_cost_one_log_query() -> None:
    chain = FakeRegistry([ALICE])
    directory = MemberDirectory(chain)
    directory.members()  # at block 10
    chain.head = 14

    assert directory.members() == [ALICE]
    assert (chain.full_reads, chain.log_queries) == (1, [(11, 14)])

    chain.head = 15  # the next query starts after the block read last
    directory.members()
    assert chain.log_queries == [(11, 14), (15, 15)]


def test_a_registry_event_since_the_last_read_brings_a_full_read() -> None:
    chain = FakeRegistry([ALICE])
    directory = MemberDirectory(chain)
    directory.members()
    chain.listed = [ALICE, BOB]  # BOB admitted in block 12
    chain.logged_at = {12}
    chain.head = 13

    assert directory.members() == [ALICE, BOB]
    assert chain.full_reads == 2

    chain.head = 20  # the event is behind this read now
    assert directory.members() == [ALICE, BOB]
    assert (chain.full_reads, chain.log_queries[-1]) == (2, (14, 20))


def test_a_chain_that_went_back_is_read_in_full() -> None:
    chain = FakeRegistry([ALICE, BOB])
    directory = MemberDirectory(chain)
    directory.members()  # at block 10
    chain.listed, chain.head = [ALICE], 6  # restarted from a state of block 6

    assert directory.members() == [ALICE]
    assert chain.full_reads == 2


def test_a_gap_longer_than_one_log_query_is_read_in_full() -> None:
    chain = FakeRegistry([ALICE])
    directory = MemberDirectory(chain)
    directory.members()  # at block 10
    chain.head = 11 + MAX_LOG_BLOCKS

    directory.members()
    assert (chain.full_reads, chain.log_queries) == (2, [])


def test_callers_get_their_own_list() -> None:
    chain = FakeRegistry([ALICE])
    directory = MemberDirectory(chain)
    directory.members().append(BOB)

    assert directory.members() == [ALICE]
