// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IRegistry} from "./IRegistry.sol";

/// @title Consortium membership: who may train, and where to find their nodes.
/// @notice The deployer is the admin and admits hospitals. Each admitted member binds its libp2p
/// peer id and listen addresses to its own account. The registry also names the Ledger and the
/// RewardPool, so an auditor given only this address can find the whole federation.
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
    }

    address public immutable admin;
    /// Block in which this registry was deployed: where an auditor starts reading events.
    uint256 public immutable deployedAt;
    address public ledger;
    address public rewards;

    mapping(address => Member) private _members;
    address[] private _memberList;

    event MemberAdmitted(address indexed member, string name);
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

    /// @notice Admit a hospital's account under a human-readable name.
    function admit(address member, string calldata name) external onlyAdmin {
        if (member == address(0)) revert ZeroAddress();
        if (bytes(name).length == 0) revert EmptyName();
        Member storage m = _members[member];
        if (m.admittedAt != 0) revert AlreadyMember(member);
        m.name = name;
        m.admittedAt = uint64(block.number);
        m.active = true;
        m.index = uint32(_memberList.length);
        _memberList.push(member);
        emit MemberAdmitted(member, name);
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
            uint64 admittedAt
        )
    {
        Member storage m = _members[member];
        return (m.name, m.peerId, m.multiaddrs, m.active, m.admittedAt);
    }
}
