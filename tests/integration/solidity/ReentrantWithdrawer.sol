// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

interface IWithdrawable {
    function withdraw() external returns (uint256);
}

/// @title Test double: a member contract that tries to drain the RewardPool.
/// @notice In mode Reenter its receive() calls withdraw() again (up to 5 times, catching
/// failures so the outer withdrawal can still complete); in mode Reject it refuses payment.
contract ReentrantWithdrawer {
    enum Mode {
        Reenter,
        Reject
    }

    IWithdrawable public immutable pool;
    Mode public mode;
    uint256 public reentryAttempts;
    uint256 public reentrySuccesses;
    bytes public lastReentryError;

    constructor(IWithdrawable pool_) {
        pool = pool_;
    }

    function setMode(Mode mode_) external {
        mode = mode_;
    }

    function attack() external {
        pool.withdraw();
    }

    receive() external payable {
        if (mode == Mode.Reject) revert("no thanks");
        if (reentryAttempts >= 5) return;
        reentryAttempts += 1;
        try pool.withdraw() {
            reentrySuccesses += 1;
        } catch (bytes memory reason) {
            lastReentryError = reason;
        }
    }
}
