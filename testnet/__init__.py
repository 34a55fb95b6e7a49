"""medswarm testnet package."""
