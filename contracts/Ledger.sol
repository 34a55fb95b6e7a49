// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {ILedger} from "./ILedger.sol";
import {IRegistry} from "./IRegistry.sol";

/// @title Per-round commitments, attestations and cumulative contribution scores.
/// @notice Round r (r = 1, 2, ...) is recorded once, in order, by its expected aggregator:
/// the member at index r % memberCount in admission order. A record stores a compact
/// commitment; per-member detail goes into `UpdateRecorded` events. Members then attest the
/// global hash; the round is final once ceil(2/3 of memberCount) members have attested.
contract Ledger is ILedger {
    /// Bytes per member record in the `recordsHash` preimage:
    /// address (20) | updateHash (32) | samples (8, big-endian) | score (8, big-endian).
    uint256 private constant RECORD_BYTES = 68;

    struct Round {
        bytes32 globalHash;
        bytes32 previousGlobalHash;
        bytes32 recordsHash;
        address aggregator;
        uint48 blockNumber;
        uint32 attestations;
        bool finalized;
    }

    IRegistry public immutable registry;

    uint64 private _lastRecordedRound;
    uint192 private _totalContribution;
    mapping(address => uint256) public contribution;
    mapping(uint64 => Round) private _rounds;
    /// Attestation bitmaps: bit (index % 256) of word (index / 256) is set once the member
    /// with that admission index attested the round.
    mapping(uint64 => mapping(uint256 => uint256)) private _attestedBits;

    event RoundRecorded(
        uint64 indexed round,
        bytes32 globalHash,
        bytes32 previousGlobalHash,
        bytes32 recordsHash,
        address aggregator
    );
    event UpdateRecorded(
        uint64 indexed round, address indexed member, bytes32 updateHash, uint64 samples, uint64 score
    );
    event Attested(uint64 indexed round, address indexed member, bytes32 globalHash);
    event RoundFinalized(uint64 indexed round, bytes32 globalHash, uint256 attestations);

    error NotMember(address caller);
    error NoMembers();
    error WrongAggregator(address caller, address expected);
    error RoundAlreadyRecorded(uint64 round);
    error RoundNotNext(uint64 round, uint64 expected);
    error LengthMismatch();
    error NoRecords();
    error RecordsNotSorted(uint256 index);
    error UnknownMember(address member);
    error RoundNotRecorded(uint64 round);
    error AlreadyAttested(uint64 round, address member);
    error HashMismatch(uint64 round, bytes32 recorded, bytes32 attested);

    constructor(IRegistry registry_) {
        registry = registry_;
    }

    /// @notice The member allowed to record `round`: members[round % memberCount].
    function expectedAggregator(uint64 round) public view returns (address) {
        uint256 count = registry.memberCount();
        if (count == 0) revert NoMembers();
        return registry.memberAt(round % count);
    }

    /// @notice Members whose attestations finalize a round: ceil(2 * memberCount / 3).
    function quorum() public view returns (uint256) {
        return (2 * registry.memberCount() + 2) / 3;
    }

    function lastRecordedRound() external view returns (uint64) {
        return _lastRecordedRound;
    }

    function totalContribution() external view returns (uint256) {
        return _totalContribution;
    }

    /// @notice Record round `round`. Records must be sorted by member address, strictly
    /// ascending (which also rules out duplicates); every named member must be admitted.
    function recordRound(
        uint64 round,
        bytes32 globalHash,
        bytes32 previousGlobalHash,
        address[] calldata members,
        bytes32[] calldata updateHashes,
        uint64[] calldata samples,
        uint64[] calldata scores
    ) external {
        _checkRecorder(round);
        (bytes32 recordsHash, uint256 roundTotal) =
            _storeRecords(round, members, updateHashes, samples, scores);
        _commitRound(round, globalHash, previousGlobalHash, recordsHash, roundTotal);
    }

    /// @notice Attest that the caller computed the same global model for `round`.
    function attest(uint64 round, bytes32 globalHash) external {
        (bool active, uint256 index) = registry.memberIndex(msg.sender);
        if (!active) revert NotMember(msg.sender);
        Round storage r = _rounds[round];
        if (r.aggregator == address(0)) revert RoundNotRecorded(round);
        if (r.globalHash != globalHash) revert HashMismatch(round, r.globalHash, globalHash);
        uint256 bit = 1 << (index & 255);
        uint256 word = _attestedBits[round][index >> 8];
        if (word & bit != 0) revert AlreadyAttested(round, msg.sender);
        _attestedBits[round][index >> 8] = word | bit;
        uint32 count = r.attestations + 1;
        r.attestations = count;
        emit Attested(round, msg.sender, globalHash);
        if (!r.finalized && count >= quorum()) {
            r.finalized = true;
            emit RoundFinalized(round, globalHash, count);
        }
    }

    function roundInfo(uint64 round)
        external
        view
        returns (
            bytes32 globalHash,
            bytes32 previousGlobalHash,
            bytes32 recordsHash,
            address aggregator,
            uint256 blockNumber,
            uint256 attestations,
            bool finalized
        )
    {
        Round storage r = _rounds[round];
        return (
            r.globalHash,
            r.previousGlobalHash,
            r.recordsHash,
            r.aggregator,
            r.blockNumber,
            r.attestations,
            r.finalized
        );
    }

    function isFinal(uint64 round) external view returns (bool) {
        return _rounds[round].finalized;
    }

    function hasAttested(uint64 round, address member) external view returns (bool) {
        (bool active, uint256 index) = registry.memberIndex(member);
        return active && (_attestedBits[round][index >> 8] >> (index & 255)) & 1 == 1;
    }

    function _checkRecorder(uint64 round) private view {
        if (!registry.isMember(msg.sender)) revert NotMember(msg.sender);
        if (_rounds[round].aggregator != address(0)) revert RoundAlreadyRecorded(round);
        uint64 next = _lastRecordedRound + 1;
        if (round != next) revert RoundNotNext(round, next);
        address expected = expectedAggregator(round);
        if (msg.sender != expected) revert WrongAggregator(msg.sender, expected);
    }

    /// Credits scores, emits one UpdateRecorded per member and hashes the packed records.
    function _storeRecords(
        uint64 round,
        address[] calldata members,
        bytes32[] calldata updateHashes,
        uint64[] calldata samples,
        uint64[] calldata scores
    ) private returns (bytes32 recordsHash, uint256 roundTotal) {
        uint256 n = members.length;
        if (updateHashes.length != n || samples.length != n || scores.length != n) {
            revert LengthMismatch();
        }
        if (n == 0) revert NoRecords();
        bytes memory packed = _newRecordBuffer(n);
        address previous = address(0);
        for (uint256 i = 0; i < n; ++i) {
            address member = members[i];
            if (uint160(member) <= uint160(previous)) revert RecordsNotSorted(i);
            previous = member;
            roundTotal +=
                _storeRecord(round, packed, i, member, updateHashes[i], samples[i], scores[i]);
        }
        recordsHash = keccak256(packed);
    }

    function _storeRecord(
        uint64 round,
        bytes memory packed,
        uint256 i,
        address member,
        bytes32 updateHash,
        uint64 sampleCount,
        uint64 score
    ) private returns (uint64) {
        if (!registry.isMember(member)) revert UnknownMember(member);
        _pack(packed, i, member, updateHash, sampleCount, score);
        contribution[member] += score;
        emit UpdateRecorded(round, member, updateHash, sampleCount, score);
        return score;
    }

    function _commitRound(
        uint64 round,
        bytes32 globalHash,
        bytes32 previousGlobalHash,
        bytes32 recordsHash,
        uint256 roundTotal
    ) private {
        _rounds[round] = Round({
            globalHash: globalHash,
            previousGlobalHash: previousGlobalHash,
            recordsHash: recordsHash,
            aggregator: msg.sender,
            blockNumber: uint48(block.number),
            attestations: 0,
            finalized: false
        });
        _lastRecordedRound = round;
        _totalContribution += uint192(roundTotal);
        emit RoundRecorded(round, globalHash, previousGlobalHash, recordsHash, msg.sender);
    }

    /// A buffer for `n` packed records, allocated with 32 spare bytes past its length because
    /// each record is written with whole-word stores (see `_pack`).
    function _newRecordBuffer(uint256 n) private pure returns (bytes memory packed) {
        packed = new bytes(n * RECORD_BYTES + 32);
        assembly ("memory-safe") {
            mstore(packed, mul(n, RECORD_BYTES))
        }
    }

    /// Writes record `i` into `packed` (see RECORD_BYTES). Words are stored in increasing
    /// address order, so each store's zero tail is overwritten by the next field or record;
    /// the last record's tail falls into the buffer's spare bytes.
    function _pack(
        bytes memory packed,
        uint256 i,
        address member,
        bytes32 updateHash,
        uint64 sampleCount,
        uint64 score
    ) private pure {
        assembly ("memory-safe") {
            let p := add(add(packed, 0x20), mul(i, RECORD_BYTES))
            mstore(p, shl(96, member))
            mstore(add(p, 20), updateHash)
            mstore(add(p, 52), or(shl(192, sampleCount), shl(128, score)))
        }
    }
}
