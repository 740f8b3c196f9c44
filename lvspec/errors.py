"""The one exception family a user can act on: the CLI prints it as one line, the app as a toast."""


class UserError(Exception):
    """Bad input or an unusable model pair, with a message that says what to change."""
