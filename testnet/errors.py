"""Errors raised by the testnet launcher."""

from medswarm.errors import MedswarmError


class TestnetError(MedswarmError):
    """A testnet could not be launched or did not complete."""

    __test__ = False  # not a pytest test class
