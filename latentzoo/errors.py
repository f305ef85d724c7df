"""The exception types the CLI turns into a single clear line (exit code 1), and the one helper that
words "unknown name" errors with the closest valid names."""

from __future__ import annotations

import difflib
from typing import Iterable


class UserError(RuntimeError):
    """Bad input from the user (unknown id, missing data, corrupt file, bad option): say what and how to fix it."""


class UnknownNameError(UserError, ValueError):
    """An id, objective, library, backend or benchmark name that does not exist (also a ValueError)."""


def unknown(kind: str, name: str, choices: Iterable[str], hint: str = "") -> UnknownNameError:
    """``unknown <kind> 'name'; did you mean a, b?`` with the closest of ``choices`` (difflib), listing
    every choice when there are at most 12; ``hint`` (e.g. "`latentzoo models` lists them") ends the
    line otherwise. Returns the error for the caller to raise."""
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(name), choices, n=3, cutoff=0.6)
    message = f"unknown {kind} {name!r}"
    if close:
        message += f"; did you mean {', '.join(close)}?"
    if len(choices) <= 12:
        message += f" (choose one of: {', '.join(choices)})" if close else f"; choose one of: {', '.join(choices)}"
    elif hint:
        message += f"; {hint}"
    return UnknownNameError(message)
