// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {ILedger} from "./ILedger.sol";
import {IRegistry} from "./IRegistry.sol";

/// @title Pays members in proportion to their recorded contribution (pull payments).
/// @notice Anyone may fund the pool. Each `distribute()` (admin only) opens a new epoch and
/// splits the unallocated balance among members in proportion to the contribution they
/// accrued on the Ledger since the previous distribution:
///     share(m) = floor(pot * delta(m) / sum(delta)),  pot = balance - outstanding credits.
/// The rounding remainder ("dust", less than one wei per paid member) is not credited to
/// anyone: it stays in the pool and is part of the next epoch's pot. Members then `withdraw()`.
contract RewardPool {
    IRegistry public immutable registry;
    ILedger public immutable ledger;

    mapping(address => uint256) public credit;
    /// Ledger contribution already paid for by earlier epochs, per member.
    mapping(address => uint256) public accountedContribution;
    uint256 public totalFunded;
    uint256 public totalCredited;
    uint256 public totalWithdrawn;
    uint256 public epoch;

    bool private transient _locked;

    event Funded(address indexed from, uint256 amount);
    event RewardCredited(
        uint256 indexed epoch, address indexed member, uint256 amount, uint256 contribution
    );
    event RewardsDistributed(uint256 indexed epoch, uint256 amount, uint256 dust);
    event Withdrawn(address indexed member, uint256 amount);

    error NotAdmin(address caller);
    error ZeroAmount();
    error NothingToDistribute();
    error PoolEmpty();
    error NothingToWithdraw(address member);
    error TransferFailed(address member, uint256 amount);
    error ReentrantCall();

    constructor(IRegistry registry_, ILedger ledger_) {
        registry = registry_;
        ledger = ledger_;
    }

    modifier nonReentrant() {
        if (_locked) revert ReentrantCall();
        _locked = true;
        _;
        _locked = false;
    }

    receive() external payable {
        _fund();
    }

    function fund() external payable {
        _fund();
    }

    /// @notice Balance not yet credited to anyone: the next epoch's pot.
    function unallocated() public view returns (uint256) {
        return address(this).balance - (totalCredited - totalWithdrawn);
    }

    /// @notice Credit the pot to members by contribution accrued since the last epoch.
    function distribute() external returns (uint256 epochNumber) {
        if (msg.sender != registry.admin()) revert NotAdmin(msg.sender);
        address[] memory list = registry.members();
        uint256 n = list.length;
        uint256[] memory deltas = new uint256[](n);
        uint256 totalDelta = 0;
        for (uint256 i = 0; i < n; ++i) {
            uint256 delta = ledger.contribution(list[i]) - accountedContribution[list[i]];
            deltas[i] = delta;
            totalDelta += delta;
        }
        if (totalDelta == 0) revert NothingToDistribute();
        uint256 pot = unallocated();
        // slither-disable-next-line incorrect-equality (an empty pot is exactly zero)
        if (pot == 0) revert PoolEmpty();

        epochNumber = epoch + 1;
        epoch = epochNumber;
        uint256 paid = 0;
        for (uint256 i = 0; i < n; ++i) {
            uint256 delta = deltas[i];
            if (delta == 0) continue;
            address member = list[i];
            uint256 share = (pot * delta) / totalDelta;
            accountedContribution[member] += delta;
            credit[member] += share;
            paid += share;
            emit RewardCredited(epochNumber, member, share, delta);
        }
        totalCredited += paid;
        emit RewardsDistributed(epochNumber, paid, pot - paid);
    }

    /// @notice Send the caller its whole credit.
    function withdraw() external nonReentrant returns (uint256 amount) {
        amount = credit[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        credit[msg.sender] = 0;
        totalWithdrawn += amount;
        emit Withdrawn(msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert TransferFailed(msg.sender, amount);
    }

    function _fund() private {
        if (msg.value == 0) revert ZeroAmount();
        totalFunded += msg.value;
        emit Funded(msg.sender, msg.value);
    }
}
