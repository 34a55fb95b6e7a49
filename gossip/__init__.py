"""medswarm gossip package."""
