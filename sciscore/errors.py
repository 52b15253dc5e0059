"""Errors a user can fix.

`UserError` is raised for bad input (missing variable, NaN, wrong dims, corrupt file, mismatched
checkpoint, unwritable path, nonsense option). The command line prints its message as one line
and exits with status 2, without a traceback. Messages name the problem and the fix.
"""


class UserError(Exception):
    """Bad input that the user can fix; the message says what is wrong and what to do."""


EXIT_USAGE = 2
