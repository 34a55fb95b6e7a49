// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title The membership view the Ledger and the RewardPool rely on.
interface IRegistry {
    function admin() external view returns (address);
    function isMember(address account) external view returns (bool);
    function memberIndex(address account) external view returns (bool active, uint256 index);
    /// @notice Whether `account` is a member, its admission index and its cluster, in one call.
    function membership(address account)
        external
        view
        returns (bool active, uint256 index, uint16 cluster);
    function memberCount() external view returns (uint256);
    function memberAt(uint256 index) external view returns (address);
    function members() external view returns (address[] memory);
    function clusterCount() external view returns (uint256);
    function clusterMembers(uint16 cluster) external view returns (address[] memory);
}
