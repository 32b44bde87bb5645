"""The one exception type for mistakes a user can cause (bad paths, options, files)."""


class UserError(Exception):
    """A problem with the user's input. The CLI prints its message as one line and exits 2.

    The message must name the file or option at fault.
    """


QUOTE_LIMIT = 200  # most characters of the user's input an error message repeats


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` cut to ``limit`` characters, so that a huge input cannot flood a terminal."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
