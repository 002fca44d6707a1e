"""What every command shares, declared once: the option types (typing.Annotated aliases), the
sub-app factory, and the output helpers (stdout kept for the one JSON document)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer

from edgeopt.errors import UsageError

BOARD_HELP = "'local' (the embedded SSH board, started for this command), a name from boards.toml, or user@host[:port]"
TIMEOUT_HELP = (
    "seconds each command on the board may take (also `timeout` in boards.toml, $EDGEOPT_BOARD_TIMEOUT) "
    "[default: 120 version, 300 info, 600 bench; x10 on an emulated board]"
)
DATA_HELP = "'digits' or an .npz: x, y, optional x_val/y_val, x_test/y_test"
HISTORY_HELP = "the history file [default: the user data dir's history.jsonl]"


def json_flag(doc: str = "one JSON document") -> Any:
    """--json, saying which document it prints."""
    return Annotated[bool, typer.Option("--json", help=f"print {doc} on stdout, nothing else")]


Json = json_flag()
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress on stderr")]
TrustNewHost = Annotated[bool, typer.Option("--trust-new-host", help="record an unknown board's host key")]
Board = Annotated[str, typer.Option(help=BOARD_HELP)]
BoardArg = Annotated[str, typer.Argument(help="a name from boards.toml, or user@host[:port]")]
LocalPort = Annotated[int, typer.Option(help="port for the local board (0: a free one)")]
Timeout = Annotated[Optional[float], typer.Option(help=TIMEOUT_HELP)]
Factory = Annotated[Optional[str], typer.Option(help="package.module:function building the model a state dict is for")]
ValData = Annotated[
    Optional[Path], typer.Option(help="an .npz (x, y): the validation split (decisions), instead of carving one")
]
TestData = Annotated[
    Optional[Path], typer.Option(help="an .npz (x, y): the held-out test split every accuracy is measured on")
]
History = Annotated[Optional[Path], typer.Option(help=HISTORY_HELP)]


def default(model: type, name: str) -> Any:
    """The default of `name` in a stage's config model (a pydantic model or a dataclass), an
    enum as its value: the one source of every CLI default (tests/unit/toolkit/test_cli_defaults.py)."""
    fields = getattr(model, "model_fields", None)
    if fields is not None:
        value = fields[name].get_default(call_default_factory=True)
    else:
        field = {f.name: f for f in dataclasses.fields(model)}[name]
        value = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    return value.value if isinstance(value, Enum) else value


def given(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave (on the command line), not those left at their default: a
    config file's value wins over a default, a flag wins over the file."""
    return {k: v for k, v in values.items() if ctx.get_parameter_source(k).name != "DEFAULT"}


def sub_app(help: str) -> typer.Typer:
    """A command group with the root's settings (no rich markup, plain exceptions)."""
    return typer.Typer(help=help, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Everything written to stdout (by us, torch, TVM's C++ logs) goes to stderr meanwhile,
    so that --json leaves exactly one JSON document on stdout."""
    sys.stdout.flush()
    saved_fd = os.dup(1)
    saved_obj = sys.stdout
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved_fd, 1)
        os.close(saved_fd)
        sys.stdout = saved_obj


def quiet_stdout(as_json: bool) -> contextlib.AbstractContextManager:
    """With --json, stdout is kept for the document; without it, library output may show."""
    return stdout_to_stderr() if as_json else contextlib.nullcontext()


def print_json(doc: dict) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def emit(doc: dict, as_json: bool, text: str) -> None:
    """The command's result: the JSON document with --json, else the text."""
    if as_json:
        print_json(doc)
    else:
        print(text)


def choice(enum, value: str, flag: str):
    """A closed choice given as a string (the error names every allowed value)."""
    try:
        return enum(value)
    except ValueError:
        raise UsageError(f"{flag} must be one of {', '.join(e.value for e in enum)}, got {value!r}") from None
