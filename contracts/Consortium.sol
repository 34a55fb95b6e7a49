// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title A consortium's system of record: k-of-n governance, membership, rounds, reputation.
/// @notice
/// Governance: `n` admins; any admin proposes an action, and it runs when `threshold` admins
/// have approved it (the proposer's approval counts). Actions admit and remove members, set
/// the genesis hash, the round quorum, the exclusion threshold, reinstate a member's reputation,
/// and replace the admin set.
///
/// Rounds: one transaction per round. A member submits, for round `lastFinalizedRound + 1`,
/// the global hash, each cluster's commitment (aggregator, aggregate hash, member records) and
/// the signatures of a quorum of hospitals over the EIP-712 message
/// `Round(round, previousHash, globalHash, commitments, epsilonE6, deltaE18)`, collected off
/// chain. The contract recomputes each cluster's Merkle root over its records and the
/// `commitments` hash, checks every signature, and finalizes the round. Each cluster's
/// aggregator must be one of the signers, so its commitment is its own. Records credit
/// contributions and move reputation. The signed message carries the round's
/// differential-privacy budget too (`epsilonE6`, `deltaE18`: see `finalizeRound`), so the
/// figure on chain is the one a quorum computed.
///
/// Reputation (0..10_000, admission at 10_000), once per finalized round for each member with a
/// record: an accepted record moves it a quarter of the way to 10_000, a rejected one a quarter
/// of the way to 0 (integer division; stored as `10_000 - reputation`). A member whose
/// reputation falls below `exclusionThreshold` is excluded: its records and signatures are
/// refused until governance reinstates it. Two rejections in a row from 10_000 end at 5_625,
/// below the default threshold of 6_000; one rejection after a clean round does not.
contract Consortium {
    uint16 public constant REPUTATION_MAX = 10_000;
    uint8 public constant ROLE_HOSPITAL = 1;
    uint8 public constant ROLE_AUDITOR = 2;
    uint8 public constant FLAG_REJECTED = 1;
    /// Record: member index (2) | update hash (32) | samples (8) | score (4) | flags (1).
    uint256 public constant RECORD_BYTES = 47;
    /// Signature: signer index (2) | r (32) | s (32) | v (1).
    uint256 public constant SIGNATURE_BYTES = 67;
    /// Member table entry: account (20) | cluster (2) | role (1) | active (1) | excluded (1).
    uint256 public constant MEMBER_BYTES = 25;
    bytes32 public constant ROUND_TYPEHASH = keccak256(
        "Round(uint64 round,bytes32 previousHash,bytes32 globalHash,bytes32 commitments,"
        "uint64 epsilonE6,uint64 deltaE18)"
    );
    /// `epsilonE6` of a round whose updates carry no differential-privacy guarantee (no noise).
    uint64 public constant NO_PRIVACY_GUARANTEE = type(uint64).max;
    /// `deltaE18` is delta in parts per 10**18: below this, above 0.
    uint64 public constant DELTA_SCALE = 1e18;
    uint256 private constant HALF_ORDER =
        0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    uint8 public constant ACTION_ADMIT = 1;
    uint8 public constant ACTION_REMOVE = 2;
    uint8 public constant ACTION_SET_GENESIS = 3;
    uint8 public constant ACTION_SET_QUORUM = 4;
    uint8 public constant ACTION_SET_EXCLUSION = 5;
    uint8 public constant ACTION_REINSTATE = 6;
    uint8 public constant ACTION_SET_ADMINS = 7;

    /// One storage slot per member.
    struct Member {
        address account;
        uint16 cluster;
        uint8 role;
        bool active;
        bool excluded;
    }

    /// One cluster's part of a round, as submitted.
    struct ClusterCommit {
        uint16 cluster;
        /// Member index of the cluster's aggregator.
        uint16 aggregator;
        bytes32 aggregateHash;
        /// How many of the round's records (taken in order) belong to this cluster.
        uint16 records;
    }

    struct Proposal {
        uint8 kind;
        bool executed;
        bool cancelled;
        /// Bit i set: admin i (position in `admins()`) approved.
        uint240 approvals;
        bytes data;
    }

    bytes32 public immutable DOMAIN_SEPARATOR;
    /// Block of deployment: where an auditor starts reading events.
    uint256 public immutable deployedAt;

    address[] private _admins;
    uint8 public threshold;
    /// Bumped when the admin set changes: proposals of an older generation cannot run.
    uint32 public adminGeneration;
    Proposal[] private _proposals;
    mapping(uint256 => uint32) private _proposalGeneration;
    mapping(uint256 => address) private _proposers;

    Member[] private _members;
    mapping(address => uint256) private _indexPlusOne;
    mapping(uint256 => string) public nameOf;
    mapping(uint256 => string) public peerIdOf;
    mapping(uint256 => string) public multiaddrsOf;
    /// keccak256 of `memberTable()`: a round brings the table along as calldata, which costs
    /// less than reading each member from storage.
    bytes32 public membersHash;
    uint16 public clusterCount;
    /// Active, non-excluded hospitals: the base of the quorum.
    uint32 public votingHospitals;

    bytes32 public genesisHash;
    uint64 public lastFinalizedRound;
    uint16 public quorumNumerator = 2;
    uint16 public quorumDenominator = 3;
    uint16 public exclusionThreshold = 6_000;
    /// The privacy budget of `lastFinalizedRound` (earlier rounds' are in their
    /// `RoundFinalized` events): epsilon in millionths, rounded up, or NO_PRIVACY_GUARANTEE;
    /// delta in parts per 10**18 (0 with NO_PRIVACY_GUARANTEE). Shares a slot with
    /// `lastFinalizedRound`, which every round writes anyway.
    uint64 public lastEpsilonE6;
    uint64 public lastDeltaE18;
    /// The final global hash of `lastFinalizedRound` (genesis before round 1). Earlier
    /// rounds' hashes are in their `RoundFinalized` events.
    bytes32 public lastGlobalHash;
    /// Four uint64 contribution totals per word, by member index.
    mapping(uint256 => uint256) private _contributionWords;
    /// Sixteen uint16 penalties (10_000 - reputation) per word, by member index.
    mapping(uint256 => uint256) private _penaltyWords;

    event Proposed(uint256 indexed id, address indexed proposer, uint8 kind, bytes data);
    event Approved(uint256 indexed id, address indexed admin, uint256 approvals);
    event Executed(uint256 indexed id, uint8 kind);
    event Cancelled(uint256 indexed id);
    event AdminsSet(address[] admins, uint8 threshold, uint32 generation);
    event MemberAdmitted(uint256 indexed index, address indexed account, string name, uint16 cluster, uint8 role);
    event MemberRemoved(uint256 indexed index, address indexed account);
    event MemberRegistered(uint256 indexed index, string peerId, string multiaddrs);
    event MemberExcluded(uint256 indexed index, uint64 round, uint16 reputation);
    event MemberReinstated(uint256 indexed index);
    event GenesisSet(bytes32 genesisHash);
    event QuorumSet(uint16 numerator, uint16 denominator);
    event ExclusionThresholdSet(uint16 threshold);
    event ClusterCommitted(
        uint64 indexed round,
        uint16 indexed cluster,
        uint16 aggregator,
        bytes32 aggregateHash,
        bytes32 recordsRoot,
        uint64 totalSamples,
        bytes records
    );
    event RoundFinalized(
        uint64 indexed round,
        bytes32 previousHash,
        bytes32 globalHash,
        bytes32 commitments,
        uint256 signatures,
        uint64 epsilonE6,
        uint64 deltaE18
    );

    error NotAdmin(address caller);
    error BadAdminSet();
    error UnknownProposal(uint256 id);
    error AlreadyApproved(uint256 id, address admin);
    error AlreadyExecuted(uint256 id);
    error AlreadyCancelled(uint256 id);
    error StaleProposal(uint256 id);
    error UnknownAction(uint8 kind);
    error ZeroAddress();
    error EmptyName();
    error BadRole(uint8 role);
    error AlreadyMember(address account);
    error NotMember(address account);
    error UnknownMember(uint256 index);
    error ClusterOutOfRange(uint16 cluster, uint16 clusterCount);
    error EmptyPeerId();
    error ZeroHash();
    error GenesisAlreadySet();
    error GenesisNotSet();
    error BadQuorum(uint16 numerator, uint16 denominator);
    error BadThreshold(uint16 threshold);
    error RoundNotOpen(uint64 round, uint64 expected);
    error NoClusters();
    error TooManyClusters(uint256 count);
    error NotProposer(uint256 id, address caller);
    error ClustersNotSorted(uint256 position);
    error EmptyCluster(uint16 cluster);
    error RecordsLength(uint256 length, uint256 expected);
    error RecordsNotSorted(uint16 cluster, uint256 position);
    error NotInCluster(uint256 index, uint16 cluster);
    error Excluded(uint256 index);
    error WrongAggregator(uint16 cluster, uint16 aggregator);
    error SignaturesLength(uint256 length);
    error SignersNotSorted(uint256 position);
    error BadSignature(uint256 signer);
    error AggregatorDidNotSign(uint16 cluster, uint16 aggregator);
    error QuorumNotReached(uint256 signatures, uint256 quorum);
    error StaleMemberTable(bytes32 given, bytes32 current);
    error BadPrivacyBudget(uint64 epsilonE6, uint64 deltaE18);

    constructor(address[] memory admins_, uint8 threshold_) {
        deployedAt = block.number;
        DOMAIN_SEPARATOR = keccak256(
            abi.encode(
                keccak256(
                    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
                ),
                keccak256("medswarm"),
                keccak256("1"),
                block.chainid,
                address(this)
            )
        );
        _setAdmins(admins_, threshold_);
    }

    // ------------------------------------------------------------------ governance

    /// @notice Propose an action (see the ACTION_* constants and `actionData` encodings in
    /// docs/ledger.md); the proposer's approval counts, so with threshold 1 it runs at once.
    function propose(uint8 kind, bytes calldata data) external returns (uint256 id) {
        uint256 position = _adminPosition(msg.sender);
        if (kind == 0 || kind > ACTION_SET_ADMINS) revert UnknownAction(kind);
        id = _proposals.length;
        _proposals.push(
            Proposal({kind: kind, executed: false, cancelled: false, approvals: 0, data: data})
        );
        _proposalGeneration[id] = adminGeneration;
        _proposers[id] = msg.sender;
        emit Proposed(id, msg.sender, kind, data);
        _approve(id, position);
    }

    /// @notice Approve proposal `id`; it runs when `threshold` admins have approved it.
    function approve(uint256 id) external {
        uint256 position = _adminPosition(msg.sender);
        if (id >= _proposals.length) revert UnknownProposal(id);
        _approve(id, position);
    }

    /// @notice Withdraw your own pending proposal (e.g. one whose action can no longer run,
    /// since a failing action reverts the approval that would run it).
    function cancel(uint256 id) external {
        if (id >= _proposals.length) revert UnknownProposal(id);
        if (_proposers[id] != msg.sender) revert NotProposer(id, msg.sender);
        Proposal storage p = _proposals[id];
        if (p.executed) revert AlreadyExecuted(id);
        if (p.cancelled) revert AlreadyCancelled(id);
        p.cancelled = true;
        emit Cancelled(id);
    }

    function admins() external view returns (address[] memory) {
        return _admins;
    }

    function proposal(uint256 id)
        external
        view
        returns (uint8 kind, bool executed, uint256 approvals, bytes memory data)
    {
        if (id >= _proposals.length) revert UnknownProposal(id);
        Proposal storage p = _proposals[id];
        uint256 count = 0;
        for (uint256 bits = p.approvals; bits != 0; bits &= bits - 1) ++count;
        return (p.kind, p.executed, count, p.data);
    }

    /// @notice Whether proposal `id` was withdrawn by its proposer.
    function cancelled(uint256 id) external view returns (bool) {
        if (id >= _proposals.length) revert UnknownProposal(id);
        return _proposals[id].cancelled;
    }

    function proposalCount() external view returns (uint256) {
        return _proposals.length;
    }

    function _approve(uint256 id, uint256 position) private {
        Proposal storage p = _proposals[id];
        if (p.executed) revert AlreadyExecuted(id);
        if (p.cancelled) revert AlreadyCancelled(id);
        if (_proposalGeneration[id] != adminGeneration) revert StaleProposal(id);
        uint240 bit = uint240(1 << position);
        if (p.approvals & bit != 0) revert AlreadyApproved(id, msg.sender);
        p.approvals |= bit;
        uint256 count = 0;
        for (uint256 bits = p.approvals; bits != 0; bits &= bits - 1) ++count;
        emit Approved(id, msg.sender, count);
        if (count >= threshold) {
            p.executed = true;
            _execute(p.kind, p.data);
            emit Executed(id, p.kind);
        }
    }

    function _execute(uint8 kind, bytes memory data) private {
        if (kind == ACTION_ADMIT) {
            (address account, string memory name, uint16 cluster, uint8 role) =
                abi.decode(data, (address, string, uint16, uint8));
            _admit(account, name, cluster, role);
        } else if (kind == ACTION_REMOVE) {
            _remove(abi.decode(data, (address)));
        } else if (kind == ACTION_SET_GENESIS) {
            bytes32 hash = abi.decode(data, (bytes32));
            if (genesisHash != bytes32(0)) revert GenesisAlreadySet();
            if (hash == bytes32(0)) revert ZeroHash();
            genesisHash = hash;
            lastGlobalHash = hash;
            emit GenesisSet(hash);
        } else if (kind == ACTION_SET_QUORUM) {
            (uint16 numerator, uint16 denominator) = abi.decode(data, (uint16, uint16));
            if (denominator == 0 || numerator == 0 || numerator > denominator) {
                revert BadQuorum(numerator, denominator);
            }
            quorumNumerator = numerator;
            quorumDenominator = denominator;
            emit QuorumSet(numerator, denominator);
        } else if (kind == ACTION_SET_EXCLUSION) {
            uint16 value = abi.decode(data, (uint16));
            if (value > REPUTATION_MAX) revert BadThreshold(value);
            exclusionThreshold = value;
            emit ExclusionThresholdSet(value);
        } else if (kind == ACTION_REINSTATE) {
            _reinstate(_indexOf(abi.decode(data, (address))));
        } else {
            (address[] memory list, uint8 k) = abi.decode(data, (address[], uint8));
            _setAdmins(list, k);
        }
    }

    function _setAdmins(address[] memory list, uint8 k) private {
        if (list.length == 0 || list.length > 240 || k == 0 || k > list.length) {
            revert BadAdminSet();
        }
        for (uint256 i = 0; i < list.length; ++i) {
            if (list[i] == address(0)) revert ZeroAddress();
            for (uint256 j = 0; j < i; ++j) {
                if (list[j] == list[i]) revert BadAdminSet();
            }
        }
        _admins = list;
        threshold = k;
        adminGeneration += 1;
        emit AdminsSet(list, k, adminGeneration);
    }

    function _adminPosition(address account) private view returns (uint256) {
        uint256 n = _admins.length;
        for (uint256 i = 0; i < n; ++i) {
            if (_admins[i] == account) return i;
        }
        revert NotAdmin(account);
    }

    // ------------------------------------------------------------------ membership

    function _admit(address account, string memory name, uint16 cluster, uint8 role) private {
        if (account == address(0)) revert ZeroAddress();
        if (bytes(name).length == 0) revert EmptyName();
        if (role != ROLE_HOSPITAL && role != ROLE_AUDITOR) revert BadRole(role);
        if (_indexPlusOne[account] != 0) revert AlreadyMember(account);
        uint16 count = clusterCount;
        if (role == ROLE_HOSPITAL) {
            if (cluster > count) revert ClusterOutOfRange(cluster, count);
            if (cluster == count) clusterCount = count + 1;
            votingHospitals += 1;
        }
        uint256 index = _members.length;
        _members.push(
            Member({account: account, cluster: cluster, role: role, active: true, excluded: false})
        );
        _indexPlusOne[account] = index + 1;
        nameOf[index] = name;
        _refreshMembersHash();
        emit MemberAdmitted(index, account, name, cluster, role);
    }

    function _remove(address account) private {
        uint256 index = _indexOf(account);
        Member storage m = _members[index];
        if (!m.active) revert NotMember(account);
        m.active = false;
        if (m.role == ROLE_HOSPITAL && !m.excluded) votingHospitals -= 1;
        _refreshMembersHash();
        emit MemberRemoved(index, account);
    }

    function _reinstate(uint256 index) private {
        Member storage m = _members[index];
        if (!m.active) revert NotMember(m.account);
        _setPenalty(index, 0);
        if (m.excluded) {
            m.excluded = false;
            if (m.role == ROLE_HOSPITAL) votingHospitals += 1;
        }
        _refreshMembersHash();
        emit MemberReinstated(index);
    }

    /// @notice Bind the caller's libp2p peer id and addresses to its membership.
    function register(string calldata peerId, string calldata multiaddrs) external {
        uint256 index = _indexOf(msg.sender);
        if (!_members[index].active) revert NotMember(msg.sender);
        if (bytes(peerId).length == 0) revert EmptyPeerId();
        peerIdOf[index] = peerId;
        multiaddrsOf[index] = multiaddrs;
        emit MemberRegistered(index, peerId, multiaddrs);
    }

    function memberCount() external view returns (uint256) {
        return _members.length;
    }

    function member(uint256 index) external view returns (Member memory) {
        if (index >= _members.length) revert UnknownMember(index);
        return _members[index];
    }

    /// @notice Every member's entry (see MEMBER_BYTES), in index order: `finalizeRound` takes
    /// this as its `members` argument.
    function memberTable() public view returns (bytes memory table) {
        uint256 n = _members.length;
        table = new bytes(0);
        for (uint256 i = 0; i < n; ++i) {
            Member storage m = _members[i];
            table = abi.encodePacked(table, m.account, m.cluster, m.role, m.active, m.excluded);
        }
    }

    function _refreshMembersHash() private {
        membersHash = keccak256(memberTable());
    }

    function indexOf(address account) external view returns (uint256) {
        return _indexOf(account);
    }

    function _indexOf(address account) private view returns (uint256) {
        uint256 plusOne = _indexPlusOne[account];
        if (plusOne == 0) revert NotMember(account);
        return plusOne - 1;
    }

    // ------------------------------------------------------------------ rounds

    /// @notice Hospitals whose signatures on one round message finalize it:
    /// ceil(votingHospitals * quorumNumerator / quorumDenominator), at least 1.
    function quorum() public view returns (uint256) {
        uint256 q = (uint256(votingHospitals) * quorumNumerator + quorumDenominator - 1)
            / quorumDenominator;
        return q == 0 ? 1 : q;
    }

    /// @notice The EIP-712 digest hospitals sign for a round.
    function roundDigest(
        uint64 round,
        bytes32 previousHash,
        bytes32 globalHash,
        bytes32 commitments,
        uint64 epsilonE6,
        uint64 deltaE18
    ) public view returns (bytes32) {
        bytes32 structHash = keccak256(
            abi.encode(
                ROUND_TYPEHASH, round, previousHash, globalHash, commitments, epsilonE6, deltaE18
            )
        );
        return keccak256(abi.encodePacked("\x19\x01", DOMAIN_SEPARATOR, structHash));
    }

    /// @notice Finalize round `lastFinalizedRound + 1`; see the contract notice.
    /// `records` are the clusters' records back to back, in the order of `clusters`, each
    /// cluster's sorted by member index; `signatures` are sorted by signer index.
    /// `epsilonE6` and `deltaE18` are the members' cumulative differential-privacy budget
    /// after this round: epsilon in millionths (rounded up) at delta in parts per 10**18
    /// (0 < deltaE18 < DELTA_SCALE), or NO_PRIVACY_GUARANTEE with deltaE18 = 0.
    function finalizeRound(
        uint64 round,
        bytes32 globalHash,
        uint64 epsilonE6,
        uint64 deltaE18,
        ClusterCommit[] calldata clusters,
        bytes calldata records,
        bytes calldata signatures,
        bytes calldata members
    ) external {
        if (!_members[_indexOf(msg.sender)].active) revert NotMember(msg.sender);
        bytes32 given = keccak256(members);
        if (given != membersHash) revert StaleMemberTable(given, membersHash);
        uint64 expected = lastFinalizedRound + 1;
        if (round != expected) revert RoundNotOpen(round, expected);
        bytes32 previous = lastGlobalHash;
        if (previous == bytes32(0)) revert GenesisNotSet();
        if (globalHash == bytes32(0)) revert ZeroHash();
        if (
            epsilonE6 == NO_PRIVACY_GUARANTEE
                ? deltaE18 != 0
                : deltaE18 == 0 || deltaE18 >= DELTA_SCALE
        ) revert BadPrivacyBudget(epsilonE6, deltaE18);
        bytes32 commitments = _commitClusters(round, clusters, records, members);
        uint256 signed = _checkSignatures(
            roundDigest(round, previous, globalHash, commitments, epsilonE6, deltaE18),
            clusters,
            signatures,
            members
        );
        lastGlobalHash = globalHash;
        lastFinalizedRound = round;
        lastEpsilonE6 = epsilonE6;
        lastDeltaE18 = deltaE18;
        _applyRecords(round, records);
        emit RoundFinalized(
            round, previous, globalHash, commitments, signed, epsilonE6, deltaE18
        );
    }

    /// Checks each cluster's records, emits its commitment and returns the hash of all of them:
    /// keccak256 over (cluster u16 | aggregator address | aggregateHash | recordsRoot |
    /// totalSamples u64) per cluster.
    function _commitClusters(
        uint64 round,
        ClusterCommit[] calldata clusters,
        bytes calldata records,
        bytes calldata members
    ) private returns (bytes32) {
        uint256 n = clusters.length;
        if (n == 0) revert NoClusters();
        if (n > 256) revert TooManyClusters(n);
        bytes memory packed = new bytes(0);
        uint256 offset = 0;
        for (uint256 c = 0; c < n; ++c) {
            ClusterCommit calldata commit = clusters[c];
            if (c > 0 && commit.cluster <= clusters[c - 1].cluster) revert ClustersNotSorted(c);
            if (commit.cluster >= clusterCount) revert ClusterOutOfRange(commit.cluster, clusterCount);
            if (commit.records == 0) revert EmptyCluster(commit.cluster);
            (address aggregator, uint16 aggregatorCluster) = _hospital(members, commit.aggregator);
            if (aggregatorCluster != commit.cluster) {
                revert WrongAggregator(commit.cluster, commit.aggregator);
            }
            uint256 end = offset + uint256(commit.records) * RECORD_BYTES;
            if (end > records.length) revert RecordsLength(records.length, end);
            bytes calldata mine = records[offset:end];
            (bytes32 root, uint64 samples) = _recordsRoot(round, commit.cluster, mine, members);
            emit ClusterCommitted(
                round, commit.cluster, commit.aggregator, commit.aggregateHash, root, samples, mine
            );
            packed = abi.encodePacked(
                packed, commit.cluster, aggregator, commit.aggregateHash, root, samples
            );
            offset = end;
        }
        if (offset != records.length) revert RecordsLength(records.length, offset);
        return keccak256(packed);
    }

    /// The Merkle root over a cluster's records (see `recordLeaf`; pairs hashed in order, an
    /// odd node carried up unchanged) and the cluster's total samples (of its accepted records:
    /// the samples behind the aggregate).
    function _recordsRoot(
        uint64 round,
        uint16 cluster,
        bytes calldata mine,
        bytes calldata members
    ) private pure returns (bytes32, uint64) {
        uint256 n = mine.length / RECORD_BYTES;
        bytes32[] memory level = new bytes32[](n);
        uint256 samples = 0;
        uint256 previous = 0;
        for (uint256 i = 0; i < n; ++i) {
            uint256 offset = i * RECORD_BYTES;
            uint256 index = _word(mine, offset) >> 240;
            if (i > 0 && index <= previous) revert RecordsNotSorted(cluster, i);
            previous = index;
            (address account, uint16 memberCluster) = _hospital(members, index);
            if (memberCluster != cluster) revert NotInCluster(index, cluster);
            uint256 tail = _word(mine, offset + 34); // samples u64 | score u32 | flags u8
            if (uint8(tail >> 152) & FLAG_REJECTED == 0) samples += tail >> 192;
            level[i] = recordLeaf(
                round,
                cluster,
                account,
                bytes32(_word(mine, offset + 2)),
                uint64(tail >> 192),
                uint32(tail >> 160),
                uint8(tail >> 152)
            );
        }
        for (uint256 width = n; width > 1; width = (width + 1) / 2) {
            for (uint256 i = 0; i < width / 2; ++i) {
                level[i] = keccak256(abi.encodePacked(level[2 * i], level[2 * i + 1]));
            }
            if (width % 2 == 1) level[width / 2] = level[width - 1];
        }
        return (level[0], uint64(samples));
    }

    /// @notice The Merkle leaf of one member record.
    function recordLeaf(
        uint64 round,
        uint16 cluster,
        address account,
        bytes32 updateHash,
        uint64 samples,
        uint32 score,
        uint8 flags
    ) public pure returns (bytes32) {
        return keccak256(
            abi.encodePacked(round, cluster, account, updateHash, samples, score, flags)
        );
    }

    /// @notice Whether `leaf` sits at `position` under `root`, given its sibling path
    /// (`width`: the number of leaves; levels with no sibling for the node are skipped).
    function verifyRecord(
        bytes32 root,
        bytes32 leaf,
        uint256 position,
        uint256 width,
        bytes32[] calldata proof
    ) external pure returns (bool) {
        if (position >= width) return false;
        bytes32 node = leaf;
        uint256 used = 0;
        for (; width > 1; width = (width + 1) / 2) {
            bool hasSibling = position % 2 == 1 || position + 1 < width;
            if (hasSibling) {
                if (used == proof.length) return false;
                bytes32 sibling = proof[used++];
                node = position % 2 == 1
                    ? keccak256(abi.encodePacked(sibling, node))
                    : keccak256(abi.encodePacked(node, sibling));
            }
            position /= 2;
        }
        return used == proof.length && node == root;
    }

    function _checkSignatures(
        bytes32 digest,
        ClusterCommit[] calldata clusters,
        bytes calldata signatures,
        bytes calldata members
    ) private view returns (uint256 count) {
        if (signatures.length % SIGNATURE_BYTES != 0) revert SignaturesLength(signatures.length);
        count = signatures.length / SIGNATURE_BYTES;
        uint256 signedBits = 0; // bit c: cluster c's aggregator signed (position in `clusters`)
        uint256 previous = 0;
        for (uint256 i = 0; i < count; ++i) {
            uint256 offset = i * SIGNATURE_BYTES;
            uint256 index = _word(signatures, offset) >> 240;
            if (i > 0 && index <= previous) revert SignersNotSorted(i);
            previous = index;
            uint256 s = _word(signatures, offset + 34);
            if (s > HALF_ORDER) revert BadSignature(index);
            uint8 v = uint8(_word(signatures, offset + 66) >> 248);
            address signer = ecrecover(digest, v, bytes32(_word(signatures, offset + 2)), bytes32(s));
            (address account,) = _hospital(members, index);
            if (signer == address(0) || signer != account) revert BadSignature(index);
            for (uint256 c = 0; c < clusters.length; ++c) {
                if (clusters[c].aggregator == index) signedBits |= 1 << c;
            }
        }
        for (uint256 c = 0; c < clusters.length; ++c) {
            if (signedBits & (1 << c) == 0) {
                revert AggregatorDidNotSign(clusters[c].cluster, clusters[c].aggregator);
            }
        }
        uint256 needed = quorum();
        if (count < needed) revert QuorumNotReached(count, needed);
    }

    /// An active, non-excluded hospital's account and cluster, from the member table.
    function _hospital(bytes calldata members, uint256 index)
        private
        pure
        returns (address account, uint16 cluster)
    {
        uint256 offset = index * MEMBER_BYTES;
        if (offset + MEMBER_BYTES > members.length) revert UnknownMember(index);
        // account (20) | cluster (2) | role (1) | active (1) | excluded (1)
        uint256 entry = _word(members, offset);
        account = address(uint160(entry >> 96));
        cluster = uint16(entry >> 80);
        if (uint8(entry >> 64) == 0 || uint8(entry >> 72) != ROLE_HOSPITAL) {
            revert NotMember(account);
        }
        if (uint8(entry >> 56) != 0) revert Excluded(index);
    }

    /// The 32 bytes of `data` from `offset` (zeros past the end of the calldata). Callers check
    /// that the field they take from the word lies inside `data`.
    function _word(bytes calldata data, uint256 offset) private pure returns (uint256 w) {
        assembly ("memory-safe") {
            w := calldataload(add(data.offset, offset))
        }
    }

    // ------------------------------------------------------------------ contribution, reputation

    function _applyRecords(uint64 round, bytes calldata records) private {
        uint256 n = records.length / RECORD_BYTES;
        uint16 limit = exclusionThreshold;
        bool excludedAny = false;
        for (uint256 i = 0; i < n; ++i) {
            uint256 offset = i * RECORD_BYTES;
            uint256 index = _word(records, offset) >> 240;
            uint256 tail = _word(records, offset + 34); // samples u64 | score u32 | flags u8
            bool rejected = uint8(tail >> 152) & FLAG_REJECTED != 0;
            if (!rejected) _addContribution(index, uint32(tail >> 160));
            uint256 penalty = _penaltyOf(index);
            if (penalty == 0 && !rejected) continue; // reputation stays 10_000
            penalty = rejected ? penalty + (REPUTATION_MAX - penalty) / 4 : penalty - penalty / 4;
            _setPenalty(index, penalty);
            uint16 reputation_ = uint16(REPUTATION_MAX - penalty);
            if (reputation_ < limit) {
                _members[index].excluded = true;
                votingHospitals -= 1;
                excludedAny = true;
                emit MemberExcluded(index, round, reputation_);
            }
        }
        if (excludedAny) _refreshMembersHash();
    }

    /// @notice Sum of the scores of a member's accepted records.
    function contribution(uint256 index) public view returns (uint64) {
        return uint64(_contributionWords[index / 4] >> ((index % 4) * 64));
    }

    /// @notice A member's reputation, 0..10_000.
    function reputation(uint256 index) public view returns (uint16) {
        return uint16(REPUTATION_MAX - _penaltyOf(index));
    }

    function _penaltyOf(uint256 index) private view returns (uint256) {
        return uint16(_penaltyWords[index / 16] >> ((index % 16) * 16));
    }

    function _addContribution(uint256 index, uint32 score) private {
        uint256 shift = (index % 4) * 64;
        uint256 word = _contributionWords[index / 4];
        uint64 total = uint64(word >> shift) + score; // checked: reverts past 2**64 - 1
        _contributionWords[index / 4] =
            (word & ~(uint256(type(uint64).max) << shift)) | (uint256(total) << shift);
    }

    function _setPenalty(uint256 index, uint256 penalty) private {
        uint256 shift = (index % 16) * 16;
        uint256 word = _penaltyWords[index / 16];
        _penaltyWords[index / 16] =
            (word & ~(uint256(type(uint16).max) << shift)) | (penalty << shift);
    }
}
