"""The one exception type for mistakes a user can cause (bad paths, options, files)."""

import reprlib


class UserError(Exception):
    """A problem with the user's input. The CLI prints its message as one line and exits 2.

    The message must name the file or option at fault.
    """


QUOTE_LIMIT = 200  # most characters of the user's input an error message repeats


def _short_repr(limit: int) -> reprlib.Repr:
    # A few items per level and a few levels: a nested or self-similar input (a YAML alias bomb)
    # costs a bounded repr, never one of its full expansion.
    short = reprlib.Repr()
    short.maxlevel = 3
    short.maxlist = short.maxtuple = short.maxset = short.maxfrozenset = short.maxdeque = 8
    short.maxdict = 8
    short.maxstring = short.maxother = short.maxlong = limit
    return short


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` cut to ``limit`` characters, so that a huge input cannot flood a terminal.

    The repr is never built in full: a string is cut before it is quoted, and containers show
    their first few items (:mod:`reprlib`).
    """
    if isinstance(value, (str, bytes)):
        text = repr(value[: limit + 1])
    else:
        text = _short_repr(limit).repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
