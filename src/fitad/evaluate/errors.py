"""The evaluation stage's one error type."""

from __future__ import annotations


class EvalError(ValueError):
    """The evaluation cannot run as asked; the message names the path, the adapter or the config key."""
