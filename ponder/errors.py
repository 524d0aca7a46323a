"""The one exception type ponder raises for bad user input: the message says what and how to fix it."""


class PonderError(ValueError):
    """Bad input from the user (a name, a path, a config value). The message names the fix."""
