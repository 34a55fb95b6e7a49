"""medswarm incentive package."""
