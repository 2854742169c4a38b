"""The exceptions cwm raises for user errors.

Every user-facing problem (a bad path, a corrupt file, a wrong argument) raises a subclass of
:class:`CWMError` with a one-line message that names the file or argument and the problem. The CLI
prints that line and exits with status 2; anything else is a bug and keeps its traceback.
"""


class CWMError(Exception):
    """Base class of all user-facing cwm errors."""


class InputError(CWMError, ValueError):
    """Bad input data: a missing, unreadable or malformed image/video, or bad array values."""


class OutputExistsError(InputError):
    """A file to be written exists already, and replacing it was not asked for (``overwrite``).

    The message names the Python argument (``overwrite=True``); the CLI words it as its flag.

    Attributes:
        path: the existing file.
    """

    def __init__(self, message: str, path: object = None):
        super().__init__(message)
        self.path = path


class WeightsError(CWMError):
    """A checkpoint that cannot be loaded: missing, truncated, wrong keys or shapes, unsafe."""


class ConfigError(CWMError, ValueError):
    """A bad configuration or argument: unknown names, out-of-range values, bad config files."""


def shown(value: object, limit: int = 40) -> str:
    """``value`` for an error message: its repr, on one line, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def closest(name: str, choices, cutoff: float = 0.6) -> str | None:
    """The one name of ``choices`` closest to ``name`` (:func:`difflib.get_close_matches`), or None."""
    import difflib

    found = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=cutoff)
    return found[0] if found else None


def did_you_mean(name: str, choices, cutoff: float = 0.6) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` to ``name``, or ``""``: the one hint
    every "unknown name" message of cwm, probes and pretrain appends."""
    close = closest(name, choices, cutoff)
    return f"; did you mean '{close}'?" if close else ""


def unknown_options(parser, extras) -> str:
    """One-line message for command-line arguments ``extras`` that ``parser`` (argparse) does not
    know, with the closest option names: shared by ``cwm`` and ``python -m pretrain``."""
    options = [s for a in parser._actions for s in a.option_strings]
    hints = []
    for arg in extras:
        name = arg.split("=", 1)[0]
        close = closest(name, options) if name.startswith("-") else None
        hints += [close] if close else []
    hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
    return f"unrecognized argument{'s' if len(extras) > 1 else ''}: {' '.join(extras)}{hint}"
