// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title The contribution view the RewardPool relies on.
interface ILedger {
    function contribution(address member) external view returns (uint256);
    function totalContribution() external view returns (uint256);
}
