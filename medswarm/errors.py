"""The root of every error medswarm raises on purpose.

Each package has its own ``errors.py`` whose classes derive from :class:`MedswarmError`
(and, where it fits, from the matching built-in), so callers can catch one type.
Messages say what is wrong and what to do about it.
"""


class MedswarmError(Exception):
    """Base class for all medswarm errors."""


class MedswarmWarning(UserWarning):
    """Base class for medswarm's own warnings (tests turn them into errors)."""


def leaf_errors(error: BaseException) -> list[BaseException]:
    """The individual errors inside (possibly nested) exception groups, or ``[error]``."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaf_errors(inner)]
    return [error]
