"""cadiff's errors: what a user can fix (bad input, a model or file that cannot serve, an output in the way, a missing
optional package) is a `CadiffError`, which the command line reports in one line with exit code 2; anything else is
a bug and keeps its traceback.

Each error is also the built-in exception its case has always been (a `BadInput` is a ValueError, a `MissingFile` a
FileNotFoundError), so `except ValueError` in a user's code still catches it.

Example:
    >>> try:
    ...     raise BadInput("unknown concept 'cirle'; did you mean 'circle'?")
    ... except ValueError as exc:
    ...     print(type(exc).__name__, isinstance(exc, CadiffError))
    BadInput True
"""

from __future__ import annotations


class CadiffError(Exception):
    """A problem the user can fix; its message names the problem and the fix, in one line."""


class BadInput(CadiffError, ValueError):
    """An input that would make the result meaningless or cannot be used: refused before any model work."""


class MissingFile(CadiffError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class NotAFolder(CadiffError, NotADirectoryError):
    """A path the user named as a folder is missing or is not a folder."""


class MissingDependency(CadiffError, ImportError):
    """An optional package a chosen feature needs is not installed (the message says which extra installs it)."""
