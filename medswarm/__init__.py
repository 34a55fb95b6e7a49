"""medswarm: serverless federated learning for hospital consortia."""

__version__ = "0.1.0"
