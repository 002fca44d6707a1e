"""The `edgeopt` command assembled top-down: the root app adds each command group's app, and
`main(argv) -> exit code` turns every failure into one line and a documented exit code.

Exit codes (docs/cli.md, edgeopt/errors.py): 0 ok; 1 other edgeopt error; 2 bad option or value;
3 bad input file; 4 accuracy budget not met; 5 compile failed; 6 bad bundle; 7 board failure;
8 host key refused; 9 some boards failed; 10 missing extra; 70 internal error (a bug: please
report it); 130 interrupted.
"""

from __future__ import annotations

import os
import sys

import typer

from edgeopt.errors import EdgeoptError

from . import board, report, stages, sweep

app = typer.Typer(
    name="edgeopt",
    help="Prune, quantize, compile with TVM and run a model on an edge board over SSH.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(stages.app)  # run, prune, quantize, compile, targets
app.add_typer(board.app)  # deploy, bench, doctor
app.add_typer(board.board_app, name="board")  # board setup|info|clean, board qemu ...
app.add_typer(report.app, name="report")  # report compare|history
app.add_typer(sweep.app)  # sweep


@app.callback()
def _root() -> None:
    """edgeopt: model in, a smaller faster model running on a board out, with a report."""


def _error(message: str) -> None:
    print(f"edgeopt: error: {message}", file=sys.stderr)


INTERRUPTED = "interrupted (Ctrl-C); on a board, the command stops with its session"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # typer turns a KeyboardInterrupt into a silent exit code 130; a flag set by our own SIGINT
    # handler tells that apart, so Ctrl-C always gets its line
    interrupted: list[bool] = []

    def on_sigint(signum, frame):
        interrupted.append(True)
        raise KeyboardInterrupt

    import signal
    import threading

    previous = (
        signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() else None
    )
    try:
        return _main(argv, interrupted)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _main(argv: list[str], interrupted: list[bool]) -> int:
    try:
        # without standalone mode, click returns a command's typer.Exit code instead of raising it
        code = app(args=argv, prog_name="edgeopt", standalone_mode=False)
        if interrupted:
            _error(INTERRUPTED)
            return 130
        return code if isinstance(code, int) else 0
    except typer.Exit as exc:
        if interrupted:
            _error(INTERRUPTED)
            return 130
        return exc.exit_code
    except typer.TyperException as exc:  # typer's (vendored) click: usage errors and the like
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message(), file=sys.stderr)
            return 2
        ctx = getattr(exc, "ctx", None)
        cmd = ctx.command_path if ctx is not None else "edgeopt"
        _error(f"{exc.format_message()} (see '{cmd} --help')")
        return getattr(exc, "exit_code", 2)
    except EdgeoptError as exc:
        _error(str(exc))
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        _error(INTERRUPTED)
        return 130
    except Exception as exc:  # a bug: one line by default, the traceback on request
        if os.environ.get("EDGEOPT_DEBUG"):
            raise
        _error(
            f"internal error: {type(exc).__name__}: {exc} (set EDGEOPT_DEBUG=1 for the traceback, and please report it)"
        )
        return 70


def entry_point() -> None:
    try:
        code = main()
    except KeyboardInterrupt:  # a second Ctrl-C while the first one's clean-up ran
        _error(INTERRUPTED)
        code = 130
    sys.exit(code)
