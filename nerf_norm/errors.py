"""Errors that are the user's to fix (bad paths, options, files): the CLI prints them without a traceback."""


class UserError(Exception):
    """A problem with the user's input, reported as one clear message."""
