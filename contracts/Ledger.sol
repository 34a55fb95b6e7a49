// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {ILedger} from "./ILedger.sol";
import {IRegistry} from "./IRegistry.sol";

/// @title Two-tier round ledger: per-cluster records, per-hash attestations, contributions.
/// @notice Round r (r = 1, 2, ...) opens when round r-1 is final (round 1 when the genesis
/// hash is set). In an open round each cluster's aggregate is recorded once, by any member of
/// that cluster: the first valid record wins, so an aggregator that takes over from a silent
/// one either records first or learns from `ClusterAlreadyRecorded` that it lost. Who should
/// try first is `aggregatorCandidates(round, cluster)`; the deadlines between candidates are
/// the nodes' business, not the chain's. Once every cluster is recorded, members attest the
/// global hash they computed; votes are counted per hash and the first hash to reach
/// `quorum()` (ceil(2/3 of the members)) becomes the round's final hash. Each attestation
/// carries the attester's differential-privacy budget after the round (`epsilonE6`,
/// `deltaE18`, encoded as in the Consortium); the attestation that finalizes a round stores
/// its budget with the round (`roundPrivacy`).
contract Ledger is ILedger {
    /// `epsilonE6` of a round whose updates carry no differential-privacy guarantee (no noise).
    uint64 public constant NO_PRIVACY_GUARANTEE = type(uint64).max;
    /// `deltaE18` is delta in parts per 10**18: below this, above 0.
    uint64 public constant DELTA_SCALE = 1e18;

    /// Bytes per member record in the `recordsHash` preimage:
    /// address (20) | updateHash (32) | samples (8, big-endian) | score (8, big-endian).
    uint256 private constant RECORD_BYTES = 68;

    /// The commitment of one cluster's aggregate in one round (3 storage slots).
    struct ClusterRecord {
        bytes32 aggregateHash;
        bytes32 recordsHash;
        address aggregator;
        uint64 totalSamples;
        uint32 blockNumber;
    }

    /// A final round. Records go to the open round only, so its cluster count lives in
    /// `_openClustersRecorded` and is copied here when the round becomes final.
    struct Round {
        bytes32 finalHash;
        /// Block in which the round became final (0 = not final).
        uint64 finalizedAt;
        uint32 clustersRecorded;
        /// The finalizing attestation's privacy budget (same slot as `finalizedAt`).
        uint64 epsilonE6;
        uint64 deltaE18;
    }

    IRegistry public immutable registry;
    /// Hash of the shared initial model: round 1's previous global hash (0 = not set yet).
    bytes32 public genesisHash;

    // One storage slot, written by every record and every finalization.
    uint64 private _lastFinalizedRound;
    /// Clusters recorded so far in the open round (_lastFinalizedRound + 1).
    uint32 private _openClustersRecorded;
    uint160 private _totalContribution;
    mapping(address => uint256) public contribution;
    mapping(uint64 => Round) private _rounds;
    mapping(uint64 => mapping(uint16 => ClusterRecord)) private _clusters;
    /// Attestations per round and global hash.
    mapping(uint64 => mapping(bytes32 => uint256)) public votes;
    /// Attestation bitmaps: bit (index % 256) of word (index / 256) is set once the member
    /// with that admission index attested the round.
    mapping(uint64 => mapping(uint256 => uint256)) private _attestedBits;

    event GenesisSet(bytes32 genesisHash);
    event ClusterRecorded(
        uint64 indexed round,
        uint16 indexed cluster,
        bytes32 aggregateHash,
        bytes32 previousGlobalHash,
        bytes32 recordsHash,
        address aggregator,
        uint64 totalSamples,
        uint256 candidateRank
    );
    event UpdateRecorded(
        uint64 indexed round, address indexed member, bytes32 updateHash, uint64 samples, uint64 score
    );
    event Attested(
        uint64 indexed round,
        address indexed member,
        bytes32 globalHash,
        uint64 epsilonE6,
        uint64 deltaE18
    );
    event RoundFinalized(uint64 indexed round, bytes32 globalHash, uint256 attestations);

    error NotAdmin(address caller);
    error GenesisAlreadySet();
    error ZeroHash();
    error GenesisNotSet();
    error NotMember(address caller);
    error NotInCluster(address account, uint16 cluster);
    error ClusterAlreadyRecorded(uint64 round, uint16 cluster);
    error RoundNotOpen(uint64 round, uint64 expected);
    error PreviousHashMismatch(uint64 round, bytes32 expected, bytes32 given);
    error LengthMismatch();
    error NoRecords();
    error RecordsNotSorted(uint256 index);
    error UnknownMember(address member);
    error SamplesOverflow();
    error RoundIncomplete(uint64 round);
    error AlreadyAttested(uint64 round, address member);
    error HashMismatch(uint64 round, bytes32 finalHash, bytes32 attested);
    error BadPrivacyBudget(uint64 epsilonE6, uint64 deltaE18);

    constructor(IRegistry registry_) {
        registry = registry_;
    }

    /// @notice Set the hash of the shared initial model (registry admin, once, non-zero).
    function setGenesis(bytes32 initialModelHash) external {
        if (msg.sender != registry.admin()) revert NotAdmin(msg.sender);
        if (genesisHash != bytes32(0)) revert GenesisAlreadySet();
        if (initialModelHash == bytes32(0)) revert ZeroHash();
        genesisHash = initialModelHash;
        emit GenesisSet(initialModelHash);
    }

    /// @notice Members whose attestations of one hash finalize a round: ceil(2n/3).
    function quorum() public view returns (uint256) {
        return (2 * registry.memberCount() + 2) / 3;
    }

    function lastFinalizedRound() external view returns (uint64) {
        return _lastFinalizedRound;
    }

    function totalContribution() external view returns (uint256) {
        return _totalContribution;
    }

    /// @notice The members of `cluster` ordered by keccak256(round, cluster, member) (packed:
    /// uint64 | uint16 | address), ascending. Index 0 aggregates the cluster in `round`; index
    /// 1 takes over if it stays silent, and so on.
    function aggregatorCandidates(uint64 round, uint16 cluster)
        external
        view
        returns (address[] memory candidates)
    {
        candidates = registry.clusterMembers(cluster);
        uint256 n = candidates.length;
        bytes32[] memory keys = new bytes32[](n);
        for (uint256 i = 0; i < n; ++i) {
            address member = candidates[i];
            bytes32 key = _candidateKey(round, cluster, member);
            uint256 j = i;
            for (; j > 0 && keys[j - 1] > key; --j) {
                keys[j] = keys[j - 1];
                candidates[j] = candidates[j - 1];
            }
            keys[j] = key;
            candidates[j] = member;
        }
    }

    /// @notice Record the aggregate of `cluster` in the open round. The caller must belong to
    /// the cluster; records are sorted by member address, strictly ascending (no duplicates),
    /// and name members of the cluster only.
    function recordCluster(
        uint64 round,
        uint16 cluster,
        bytes32 aggregateHash,
        bytes32 previousGlobalHash,
        address[] calldata members,
        bytes32[] calldata updateHashes,
        uint64[] calldata samples,
        uint64[] calldata scores
    ) external {
        _checkRecordable(round, cluster, previousGlobalHash);
        (bytes32 recordsHash, uint64 totalSamples) =
            _storeRecords(round, cluster, members, updateHashes, samples, scores);
        _clusters[round][cluster] = ClusterRecord({
            aggregateHash: aggregateHash,
            recordsHash: recordsHash,
            aggregator: msg.sender,
            totalSamples: totalSamples,
            blockNumber: uint32(block.number)
        });
        _openClustersRecorded += 1;
        emit ClusterRecorded(
            round,
            cluster,
            aggregateHash,
            previousGlobalHash,
            recordsHash,
            msg.sender,
            totalSamples,
            _candidateRank(round, cluster, msg.sender)
        );
    }

    /// @notice Attest that the caller computed `globalHash` as the global model of `round`.
    /// Before the round is final any hash may be attested, and the first hash whose votes
    /// reach `quorum()` becomes final. Afterwards only the final hash is accepted.
    /// `epsilonE6` and `deltaE18` are the caller's cumulative differential-privacy budget after
    /// the round: epsilon in millionths (rounded up) at delta in parts per 10**18
    /// (0 < deltaE18 < DELTA_SCALE), or NO_PRIVACY_GUARANTEE with deltaE18 = 0.
    function attest(uint64 round, bytes32 globalHash, uint64 epsilonE6, uint64 deltaE18)
        external
    {
        // slither-disable-next-line unused-return (the cluster is not needed)
        (bool active, uint256 index,) = registry.membership(msg.sender);
        if (!active) revert NotMember(msg.sender);
        uint64 lastFinal = _lastFinalizedRound;
        // Rounds become final in order, so the rounds up to lastFinal are exactly the final ones.
        bool alreadyFinal = round != 0 && round <= lastFinal;
        if (alreadyFinal) {
            bytes32 finalHash_ = _rounds[round].finalHash;
            if (globalHash != finalHash_) revert HashMismatch(round, finalHash_, globalHash);
        } else if (round != lastFinal + 1 || _openClustersRecorded < registry.clusterCount()) {
            revert RoundIncomplete(round);
        }
        if (
            epsilonE6 == NO_PRIVACY_GUARANTEE
                ? deltaE18 != 0
                : deltaE18 == 0 || deltaE18 >= DELTA_SCALE
        ) revert BadPrivacyBudget(epsilonE6, deltaE18);
        uint256 bit = 1 << (index & 255);
        uint256 word = _attestedBits[round][index >> 8];
        if (word & bit != 0) revert AlreadyAttested(round, msg.sender);
        _attestedBits[round][index >> 8] = word | bit;
        uint256 count = votes[round][globalHash] + 1;
        votes[round][globalHash] = count;
        emit Attested(round, msg.sender, globalHash, epsilonE6, deltaE18);
        if (!alreadyFinal && count >= quorum()) {
            Round storage r = _rounds[round];
            r.finalHash = globalHash;
            r.finalizedAt = uint64(block.number);
            r.clustersRecorded = _openClustersRecorded;
            r.epsilonE6 = epsilonE6;
            r.deltaE18 = deltaE18;
            _lastFinalizedRound = round;
            _openClustersRecorded = 0;
            emit RoundFinalized(round, globalHash, count);
        }
    }

    /// @notice The commitment of `cluster` in `round` (all zero when not recorded). The
    /// previous hash is the one the record was checked against: genesis or round-1's final.
    function clusterRecord(uint64 round, uint16 cluster)
        external
        view
        returns (
            bytes32 aggregateHash,
            bytes32 previousGlobalHash,
            bytes32 recordsHash,
            address aggregator,
            uint256 totalSamples,
            uint256 blockNumber
        )
    {
        ClusterRecord storage c = _clusters[round][cluster];
        if (c.aggregator == address(0)) return (0, 0, 0, address(0), 0, 0);
        return (
            c.aggregateHash,
            _previousHash(round),
            c.recordsHash,
            c.aggregator,
            c.totalSamples,
            c.blockNumber
        );
    }

    /// @notice How far `round` got: clusters recorded, and its final hash once final.
    function roundStatus(uint64 round)
        external
        view
        returns (
            uint256 clustersRecorded,
            bool finalized,
            bytes32 finalHash_,
            uint256 attestationsForFinal
        )
    {
        Round storage r = _rounds[round];
        uint64 lastFinal = _lastFinalizedRound;
        finalized = round != 0 && round <= lastFinal;
        if (finalized) {
            clustersRecorded = r.clustersRecorded;
            attestationsForFinal = votes[round][r.finalHash];
        } else if (round == lastFinal + 1) {
            clustersRecorded = _openClustersRecorded;
        }
        return (clustersRecorded, finalized, r.finalHash, attestationsForFinal);
    }

    /// @notice The final global hash of `round` (0 while it is not final).
    function finalHash(uint64 round) external view returns (bytes32) {
        return _rounds[round].finalHash;
    }

    /// @notice The privacy budget the attestation that finalized `round` carried (0, 0 while
    /// it is not final); every attestation's is in its `Attested` event.
    function roundPrivacy(uint64 round) external view returns (uint64 epsilonE6, uint64 deltaE18) {
        Round storage r = _rounds[round];
        return (r.epsilonE6, r.deltaE18);
    }

    /// @notice Block in which `round` became final (0 while it is not final).
    function finalizedAt(uint64 round) external view returns (uint256) {
        return _rounds[round].finalizedAt;
    }

    function hasAttested(uint64 round, address member) external view returns (bool) {
        (bool active, uint256 index) = registry.memberIndex(member);
        return active && (_attestedBits[round][index >> 8] >> (index & 255)) & 1 == 1;
    }

    function _checkRecordable(uint64 round, uint16 cluster, bytes32 previousGlobalHash)
        private
        view
    {
        // slither-disable-next-line unused-return (the admission index is not needed)
        (bool active,, uint16 callerCluster) = registry.membership(msg.sender);
        if (!active) revert NotMember(msg.sender);
        if (callerCluster != cluster) revert NotInCluster(msg.sender, cluster);
        if (_clusters[round][cluster].aggregator != address(0)) {
            revert ClusterAlreadyRecorded(round, cluster);
        }
        uint64 open = _lastFinalizedRound + 1;
        if (round != open) revert RoundNotOpen(round, open);
        bytes32 expected = _previousHash(round);
        // slither-disable-next-line incorrect-equality (an unset hash is exactly zero)
        if (expected == bytes32(0)) revert GenesisNotSet();
        if (previousGlobalHash != expected) {
            revert PreviousHashMismatch(round, expected, previousGlobalHash);
        }
    }

    /// The global hash round `round` builds on: genesis for round 1, else round-1's final.
    function _previousHash(uint64 round) private view returns (bytes32) {
        return round <= 1 ? genesisHash : _rounds[round - 1].finalHash;
    }

    function _candidateKey(uint64 round, uint16 cluster, address member)
        private
        pure
        returns (bytes32)
    {
        return keccak256(abi.encodePacked(round, cluster, member));
    }

    /// Position of `member` in aggregatorCandidates(round, cluster).
    function _candidateRank(uint64 round, uint16 cluster, address member)
        private
        view
        returns (uint256 rank)
    {
        address[] memory list = registry.clusterMembers(cluster);
        bytes32 own = _candidateKey(round, cluster, member);
        for (uint256 i = 0; i < list.length; ++i) {
            if (_candidateKey(round, cluster, list[i]) < own) ++rank;
        }
    }

    /// Credits scores, emits one UpdateRecorded per member and hashes the packed records.
    function _storeRecords(
        uint64 round,
        uint16 cluster,
        address[] calldata members,
        bytes32[] calldata updateHashes,
        uint64[] calldata samples,
        uint64[] calldata scores
    ) private returns (bytes32 recordsHash, uint64 totalSamples) {
        uint256 n = members.length;
        if (updateHashes.length != n || samples.length != n || scores.length != n) {
            revert LengthMismatch();
        }
        if (n == 0) revert NoRecords();
        bytes memory packed = _newRecordBuffer(n);
        address previous = address(0);
        uint256 sampleSum = 0;
        uint256 scoreSum = 0;
        for (uint256 i = 0; i < n; ++i) {
            address member = members[i];
            if (uint160(member) <= uint160(previous)) revert RecordsNotSorted(i);
            previous = member;
            _checkInCluster(member, cluster);
            _pack(packed, i, member, updateHashes[i], samples[i], scores[i]);
            contribution[member] += scores[i];
            emit UpdateRecorded(round, member, updateHashes[i], samples[i], scores[i]);
            sampleSum += samples[i];
            scoreSum += scores[i];
        }
        if (sampleSum > type(uint64).max) revert SamplesOverflow();
        _totalContribution += uint160(scoreSum);
        return (keccak256(packed), uint64(sampleSum));
    }

    function _checkInCluster(address member, uint16 cluster) private view {
        // slither-disable-next-line unused-return (the admission index is not needed)
        (bool active,, uint16 memberCluster) = registry.membership(member);
        if (!active) revert UnknownMember(member);
        if (memberCluster != cluster) revert NotInCluster(member, cluster);
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
