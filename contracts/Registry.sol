// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IRegistry} from "./IRegistry.sol";

/// @title Consortium membership: who may train, and where to find their nodes.
/// @notice The deployer is the admin and admits hospitals, each into one aggregation cluster.
/// Clusters are numbered 0..clusterCount()-1 with no gaps: a member may only be admitted into an
/// existing cluster or the next new one (cluster id <= clusterCount()), so every cluster below
/// clusterCount() has at least one member. Each admitted member binds its libp2p peer id and
/// listen addresses to its own account. The registry also names the Ledger and the RewardPool,
/// so an auditor given only this address can find the whole federation.
contract Registry is IRegistry {
    struct Member {
        string name;
        string peerId;
        /// Comma-separated multiaddrs, as given by the member.
        string multiaddrs;
        /// Block number of admission (0 = never admitted).
        uint64 admittedAt;
        bool active;
        /// Position in admission order.
        uint32 index;
        /// Aggregation cluster (fog tier) the member belongs to.
        uint16 cluster;
    }

    address public immutable admin;
    /// Block in which this registry was deployed: where an auditor starts reading events.
    uint256 public immutable deployedAt;
    address public ledger;
    address public rewards;

    mapping(address => Member) private _members;
    address[] private _memberList;
    /// Members of each cluster, in admission order.
    mapping(uint16 => address[]) private _clusterMembers;
    /// 1 + the highest cluster id admitted so far (0 before the first admission).
    uint32 private _clusterCount;

    event MemberAdmitted(address indexed member, string name, uint16 cluster);
    event MemberRegistered(address indexed member, string peerId, string multiaddrs);
    event ContractsSet(address ledger, address rewards);

    error NotAdmin(address caller);
    error NotMember(address caller);
    error AlreadyMember(address member);
    error ZeroAddress();
    error EmptyName();
    error EmptyPeerId();
    error ContractsAlreadySet();
    error IndexOutOfRange(uint256 index, uint256 count);
    error ClusterOutOfRange(uint16 cluster, uint256 clusterCount);

    constructor() {
        admin = msg.sender;
        deployedAt = block.number;
    }

    modifier onlyAdmin() {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        _;
    }

    /// @notice Name the Ledger and RewardPool of this federation; possible once.
    function setContracts(address ledger_, address rewards_) external onlyAdmin {
        if (ledger != address(0)) revert ContractsAlreadySet();
        if (ledger_ == address(0) || rewards_ == address(0)) revert ZeroAddress();
        ledger = ledger_;
        rewards = rewards_;
        emit ContractsSet(ledger_, rewards_);
    }

    /// @notice Admit a hospital's account under a human-readable name into `cluster`, which
    /// must exist already or be the next new one (`cluster <= clusterCount()`).
    function admit(address member, string calldata name, uint16 cluster) external onlyAdmin {
        if (member == address(0)) revert ZeroAddress();
        if (bytes(name).length == 0) revert EmptyName();
        uint32 count = _clusterCount;
        if (cluster > count) revert ClusterOutOfRange(cluster, count);
        Member storage m = _members[member];
        if (m.admittedAt != 0) revert AlreadyMember(member);
        m.name = name;
        m.admittedAt = uint64(block.number);
        m.active = true;
        m.index = uint32(_memberList.length);
        m.cluster = cluster;
        _memberList.push(member);
        _clusterMembers[cluster].push(member);
        if (cluster == count) _clusterCount = count + 1;
        emit MemberAdmitted(member, name, cluster);
    }

    /// @notice Bind the caller's libp2p peer id and addresses to its account (again to update).
    function register(string calldata peerId, string calldata multiaddrs) external {
        Member storage m = _members[msg.sender];
        if (!m.active) revert NotMember(msg.sender);
        if (bytes(peerId).length == 0) revert EmptyPeerId();
        m.peerId = peerId;
        m.multiaddrs = multiaddrs;
        emit MemberRegistered(msg.sender, peerId, multiaddrs);
    }

    function isMember(address account) external view returns (bool) {
        return _members[account].active;
    }

    /// @notice Whether `account` is a member, and its position in admission order.
    function memberIndex(address account) external view returns (bool active, uint256 index) {
        Member storage m = _members[account];
        return (m.active, m.index);
    }

    /// @notice Whether `account` is a member, its admission index and its cluster.
    function membership(address account)
        external
        view
        returns (bool active, uint256 index, uint16 cluster)
    {
        Member storage m = _members[account];
        return (m.active, m.index, m.cluster);
    }

    /// @notice The cluster of member `account`; reverts NotMember for anyone else.
    function clusterOf(address account) external view returns (uint16) {
        Member storage m = _members[account];
        if (!m.active) revert NotMember(account);
        return m.cluster;
    }

    /// @notice 1 + the highest cluster id admitted; clusters are 0..clusterCount()-1.
    function clusterCount() external view returns (uint256) {
        return _clusterCount;
    }

    /// @notice The members of `cluster` in admission order (empty for an unknown cluster).
    function clusterMembers(uint16 cluster) external view returns (address[] memory) {
        return _clusterMembers[cluster];
    }

    function memberCount() external view returns (uint256) {
        return _memberList.length;
    }

    /// @notice The member admitted `index`-th (0-based), in admission order.
    function memberAt(uint256 index) external view returns (address) {
        if (index >= _memberList.length) revert IndexOutOfRange(index, _memberList.length);
        return _memberList[index];
    }

    /// @notice All members in admission order.
    function members() external view returns (address[] memory) {
        return _memberList;
    }

    function memberInfo(address member)
        external
        view
        returns (
            string memory name,
            string memory peerId,
            string memory multiaddrs,
            bool active,
            uint64 admittedAt,
            uint16 cluster
        )
    {
        Member storage m = _members[member];
        return (m.name, m.peerId, m.multiaddrs, m.active, m.admittedAt, m.cluster);
    }
}
