"""The one exception type for user mistakes (bad config, bad paths, bad grids).

The command line turns it into a single `sigjax: error: ...` line on stderr and exit code 2;
anything else that escapes is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in what the user asked for, with a message fit to show as it is."""
