"""The sweep's own errors (members of the one family: they subclass edgeopt.errors.EdgeoptError)."""
from __future__ import annotations

from edgeopt.errors import EdgeoptError


class MissingExtraError(EdgeoptError):
    """An optional extra (here: `edgeopt[sweep]`, Ray Tune and Optuna) is not installed."""

    exit_code = 10


class SweepInterrupted(EdgeoptError):
    """Ctrl-C: the sweep's state is saved; the same command resumes it."""

    exit_code = 130
