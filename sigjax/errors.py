"""The exception types the command line turns into one line.

`UserError`: a mistake in what the user asked for (bad config, bad paths, bad grids): one
`sigjax: error: ...` line on stderr and exit code 2. `Fault`: the run could not go on for a
reason outside the request (a full disk, a read-only directory, a failing report): one line
saying what happened and what was kept, exit code 1. Anything else that escapes is a bug and
keeps its traceback.
"""


class UserError(Exception):
    """A mistake in what the user asked for, with a message fit to show as it is."""


class Fault(Exception):
    """The run stopped for a reason outside the request; the message says what was kept."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def one_line(e: BaseException) -> str:
    """An exception as one line: `Type: first line of its message`."""
    return f"{type(e).__name__}: {first_line(e)}"
