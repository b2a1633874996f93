"""The one exception type the CLI turns into a clean message and a non-zero exit."""

from collections.abc import Iterator
from contextlib import contextmanager


class BabyhubError(Exception):
    """An error the user can fix: the message names the file, row or field and what to do."""

    exit_code = 2


@contextmanager
def from_flag(flag: str) -> Iterator[None]:
    """Name the command-line flag a value came from in any `BabyhubError` raised inside the block.

    Library code names the value (the file, row, repo or field) and never a flag, because it does not know how
    it was called; the face that parsed the flag wraps the call, so the user reads `--data x.csv: ...`.
    """
    try:
        yield
    except BabyhubError as err:
        message = str(err)
        if not message.startswith(flag):
            err.args = (f"{flag} {message}", *err.args[1:])
        raise
