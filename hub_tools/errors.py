"""The one exception type the CLI turns into a clean message and a non-zero exit."""


class BabyhubError(Exception):
    """An error the user can fix: the message names the file, row or field and what to do."""

    exit_code = 2
