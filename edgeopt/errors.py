"""One exception family for the whole tool.

Library code raises these; only the CLI entry point turns them into one line on stderr and an
exit code (the codes are documented in docs/cli.md).
"""

from __future__ import annotations


class EdgeoptError(Exception):
    """Base class. `hint` says how to fix it; `exit_code` is what the CLI returns."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(EdgeoptError):
    """A bad option or option value."""

    exit_code = 2


class InputError(EdgeoptError):
    """A missing, unreadable or malformed input file (model, data, config)."""

    exit_code = 3


class UnsupportedModelError(InputError):
    """The model uses something a stage cannot handle (an operator, a dynamic shape...)."""


class AccuracyBudgetError(EdgeoptError):
    """A stage could not keep accuracy within the budget it was given."""

    exit_code = 4


class CompileError(EdgeoptError):
    """TVM could not build the model, or the build disagrees with onnxruntime."""

    exit_code = 5


class BundleError(EdgeoptError):
    """A bundle is damaged, incomplete, or built for a different target."""

    exit_code = 6


class BoardError(EdgeoptError):
    """A board could not be started, reached or used."""

    exit_code = 7


class BoardUnreachableError(BoardError):
    """Connecting to the board failed (refused, timed out, DNS, auth)."""


class HostKeyError(BoardError):
    """The board's SSH host key is unknown or has changed."""

    exit_code = 8


class AgentError(BoardError):
    """The board agent ran but reported a failure or printed something that is not its JSON."""


class BoardTimeoutError(BoardError):
    """A command on the board did not finish within its timeout (it was stopped there)."""


class BoardOutputError(AgentError):
    """A command on the board printed more than the host reads (it was stopped there)."""


class BoardConnectionLostError(BoardUnreachableError):
    """The SSH connection dropped while a command or an upload was running."""


class MissingExtraError(EdgeoptError):
    """An optional extra (e.g. `edgeopt[sweep]`: Ray Tune and Optuna) is not installed."""

    exit_code = 10


class SweepInterrupted(EdgeoptError):
    """Ctrl-C during `edgeopt sweep`: its state is saved; the same command resumes it."""

    exit_code = 130
