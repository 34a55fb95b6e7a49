"""medswarm node package."""
