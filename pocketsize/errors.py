"""The one exception type users see: a one-line message that names the problem and the fix."""


class PocketsizeError(Exception):
    """A bad input or an unmet precondition. The CLI prints it as one line and exits with 2."""
