"""The exceptions cwm raises for user errors.

Every user-facing problem (a bad path, a corrupt file, a wrong argument) raises a subclass of
:class:`CWMError` with a one-line message that names the file or argument and the problem. The CLI
prints that line and exits with status 2; anything else is a bug and keeps its traceback.
"""


class CWMError(Exception):
    """Base class of all user-facing cwm errors."""


class InputError(CWMError, ValueError):
    """Bad input data: a missing, unreadable or malformed image/video, or bad array values."""


class WeightsError(CWMError):
    """A checkpoint that cannot be loaded: missing, truncated, wrong keys or shapes, unsafe."""


class ConfigError(CWMError, ValueError):
    """A bad configuration or argument: unknown names, out-of-range values, bad config files."""
