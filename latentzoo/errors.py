"""The one exception type the CLI turns into a single clear line (exit code 1)."""


class UserError(RuntimeError):
    """Bad input from the user (unknown id, missing data, corrupt file, bad option): say what and how to fix it."""
