"""Errors raised by the testnet launcher."""

from medswarm.errors import MedswarmError


class TestnetError(MedswarmError):
    """A testnet could not be launched or did not complete."""

    __test__ = False  # not a pytest test class


class AnvilError(TestnetError):
    """The local anvil chain could not be started, reached or stopped."""


class AnvilNotFound(AnvilError, FileNotFoundError):
    """No anvil binary where medswarm looks for one."""
