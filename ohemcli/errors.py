"""The one exception type for mistakes a user can cause (bad paths, options, files)."""


class UserError(Exception):
    """A problem with the user's input. The CLI prints its message as one line and exits 2.

    The message must name the file or option at fault.
    """
