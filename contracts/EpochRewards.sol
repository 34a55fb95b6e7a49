// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// What EpochRewards reads from the Consortium.
interface IConsortiumBook {
    struct Member {
        address account;
        uint16 cluster;
        uint8 role;
        bool active;
        bool excluded;
    }

    function memberCount() external view returns (uint256);
    function member(uint256 index) external view returns (Member memory);
    function contribution(uint256 index) external view returns (uint64);
    function reputation(uint256 index) external view returns (uint16);
}

/// The part of ERC-20 the pool uses.
interface IERC20Transfer {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
    function balanceOf(address account) external view returns (uint256);
}

/// @title Pays the consortium's income to its hospitals by contribution times reputation.
/// @notice The pool holds ETH, or one ERC-20 token when deployed with a token address. Anyone
/// funds it (`fund`, or plain ETH transfers). Anyone may close an epoch with `distribute()`:
///     pot       = balance - credited but not yet withdrawn
///     delta(i)  = consortium.contribution(i) - contribution already accounted for member i
///     weight(i) = delta(i) * reputation(i)       for active, non-excluded hospitals, else 0
///     share(i)  = floor(pot * weight(i) / sum of weights)
/// Every delta is marked accounted, paid or not: excluded and removed members forfeit what
/// they accrued in the epoch. The rounding remainder (dust, less than one unit per paid
/// member) is credited to nobody and stays in the pot of the next epoch: at every moment the
/// balance is exactly the outstanding credit (totalCredited - totalWithdrawn) plus
/// `unallocated()`, and with no transfers outside `fund`, totalFunded == totalWithdrawn +
/// outstanding credit + unallocated().
/// Members take their credit with `withdraw()` (pull payment, checks-effects-interactions
/// and a reentrancy lock).
contract EpochRewards {
    uint8 private constant ROLE_HOSPITAL = 1;

    IConsortiumBook public immutable consortium;
    /// The reward token; address(0) means ETH.
    IERC20Transfer public immutable token;

    mapping(uint256 => uint64) public accounted;
    mapping(address => uint256) public credit;
    uint256 public totalFunded;
    uint256 public totalCredited;
    uint256 public totalWithdrawn;
    uint256 public epoch;

    bool private transient _locked;

    event Funded(address indexed from, uint256 amount);
    event RewardCredited(
        uint256 indexed epoch,
        uint256 indexed member,
        address account,
        uint256 amount,
        uint256 contribution,
        uint16 reputation
    );
    event EpochClosed(uint256 indexed epoch, uint256 pot, uint256 paid, uint256 dust);
    event Withdrawn(address indexed account, uint256 amount);
    event ModelUsed(address indexed payer, bytes32 indexed modelHash, uint256 amount);

    error ZeroAmount();
    error WrongAsset();
    error NothingToDistribute();
    error PoolEmpty();
    error NothingToWithdraw(address account);
    error TransferFailed(address account, uint256 amount);
    error ReentrantCall();

    constructor(IConsortiumBook consortium_, IERC20Transfer token_) {
        consortium = consortium_;
        token = token_;
    }

    modifier nonReentrant() {
        if (_locked) revert ReentrantCall();
        _locked = true;
        _;
        _locked = false;
    }

    receive() external payable {
        if (address(token) != address(0)) revert WrongAsset();
        _funded(msg.sender, msg.value);
    }

    /// @notice Add `amount` of the token (approved beforehand), or the ETH sent, to the pool.
    function fund(uint256 amount) external payable nonReentrant {
        _collect(amount);
    }

    /// @notice Pay `amount` (the ETH sent, or token units approved beforehand) for using the
    /// federation's model `modelHash`. The fee joins the pot, and if hospitals accrued
    /// contribution since the last epoch the pot is paid out at once: an epoch closes in this
    /// transaction, so income reaches the hospitals without anyone calling `distribute`.
    function payForModel(bytes32 modelHash, uint256 amount)
        external
        payable
        nonReentrant
        returns (uint256 epochNumber)
    {
        emit ModelUsed(msg.sender, modelHash, _collect(amount));
        return _distribute(false);
    }

    function _collect(uint256 amount) private returns (uint256 received) {
        if (address(token) == address(0)) {
            if (amount != msg.value) revert WrongAsset();
            received = msg.value;
        } else {
            if (msg.value != 0) revert WrongAsset();
            uint256 before = token.balanceOf(address(this));
            if (!token.transferFrom(msg.sender, address(this), amount)) {
                revert TransferFailed(msg.sender, amount);
            }
            received = token.balanceOf(address(this)) - before;
        }
        _funded(msg.sender, received);
    }

    /// @notice The pot of the next epoch: what the pool holds beyond outstanding credit.
    function unallocated() public view returns (uint256) {
        return _balance() - (totalCredited - totalWithdrawn);
    }

    /// @notice Close an epoch: credit the pot by contribution times reputation (see above).
    function distribute() external nonReentrant returns (uint256 epochNumber) {
        return _distribute(true);
    }

    /// Closes an epoch; with `strict` false, returns 0 instead of reverting when there is
    /// nothing to pay or nobody to pay.
    function _distribute(bool strict) private returns (uint256 epochNumber) {
        uint256 n = consortium.memberCount();
        uint256[] memory weights = new uint256[](n);
        uint64[] memory totals = new uint64[](n);
        address[] memory accounts = new address[](n);
        uint16[] memory reputations = new uint16[](n);
        uint256 sum = 0;
        for (uint256 i = 0; i < n; ++i) {
            totals[i] = consortium.contribution(i);
            if (totals[i] == accounted[i]) continue;
            IConsortiumBook.Member memory m = consortium.member(i);
            if (m.active && !m.excluded && m.role == ROLE_HOSPITAL) {
                accounts[i] = m.account;
                reputations[i] = consortium.reputation(i);
                weights[i] = (totals[i] - accounted[i]) * uint256(reputations[i]);
                sum += weights[i];
            }
        }
        uint256 pot = unallocated();
        // slither-disable-next-line incorrect-equality (no weight and an empty pot are exactly 0)
        if (sum == 0 || pot == 0) {
            if (!strict) return 0;
            if (sum == 0) revert NothingToDistribute();
            revert PoolEmpty();
        }
        epochNumber = epoch + 1;
        epoch = epochNumber;
        uint256 paid = 0;
        for (uint256 i = 0; i < n; ++i) {
            uint256 delta = totals[i] - accounted[i];
            if (delta == 0) continue;
            accounted[i] = totals[i];
            if (weights[i] == 0) continue; // excluded or removed: forfeited
            uint256 share = pot * weights[i] / sum;
            credit[accounts[i]] += share;
            paid += share;
            emit RewardCredited(epochNumber, i, accounts[i], share, delta, reputations[i]);
        }
        totalCredited += paid;
        emit EpochClosed(epochNumber, pot, paid, pot - paid);
    }

    /// @notice Pay the caller its whole credit.
    function withdraw() external nonReentrant returns (uint256 amount) {
        amount = credit[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        credit[msg.sender] = 0;
        totalWithdrawn += amount;
        emit Withdrawn(msg.sender, amount);
        bool ok;
        if (address(token) == address(0)) {
            (ok,) = msg.sender.call{value: amount}("");
        } else {
            ok = token.transfer(msg.sender, amount);
        }
        if (!ok) revert TransferFailed(msg.sender, amount);
    }

    function _funded(address from, uint256 amount) private {
        // slither-disable-next-line incorrect-equality (a zero amount is exactly zero)
        if (amount == 0) revert ZeroAmount();
        totalFunded += amount;
        emit Funded(from, amount);
    }

    function _balance() private view returns (uint256) {
        return address(token) == address(0)
            ? address(this).balance
            : token.balanceOf(address(this));
    }
}
