"""The `edgeopt` command: a thin shell over the Python API. `main(argv) -> exit code`.

Exit codes (docs/cli.md): 0 ok; 1 other edgeopt error; 2 bad option or value; 3 bad input file;
4 accuracy budget not met; 5 compile failed; 6 bad bundle; 7 board failure; 8 host key refused;
70 internal error (a bug: please report it); 130 interrupted.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Iterator, Optional

import typer

from .errors import EdgeoptError

app = typer.Typer(
    name="edgeopt",
    help="Prune, quantize, compile with TVM and run a model on an edge board over SSH.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """edgeopt: model in, a smaller faster model running on a board out, with a report."""


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
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


@app.command()
def run(
    model: Optional[str] = typer.Option(None, help="built-in model name [default: mlp]"),
    data: Optional[str] = typer.Option(None, help="'digits' or an .npz with arrays x, y [default: digits]"),
    target: Optional[str] = typer.Option(None, help="compile target name [default: host]"),
    board: Optional[str] = typer.Option(None, help="'local' (embedded SSH board) or user@host[:port] [default: local]"),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with these options (flags win)"),
    out: Optional[Path] = typer.Option(None, help="keep every stage's artifact in this directory"),
    local_port: Optional[int] = typer.Option(None, help="port for the local board [default: a free one]"),
    sparsity: Optional[float] = typer.Option(None, help="pruning target, a fraction [default: 0.70]"),
    allow_below_70: Optional[bool] = typer.Option(None, "--allow-below-70", help="allow a sparsity target under 0.70"),
    method: Optional[str] = typer.Option(None, help="pruning: magnitude (unstructured) | structured [default: magnitude]"),
    schedule: Optional[str] = typer.Option(None, help="pruning schedule: oneshot | gradual [default: gradual]"),
    distill: Optional[bool] = typer.Option(None, "--distill", help="distill from the dense model while fine-tuning"),
    calibrator: Optional[str] = typer.Option(None, help="minmax | percentile | entropy [default: minmax]"),
    budget: Optional[float] = typer.Option(None, help="allowed accuracy drop, a fraction (0.01 = 1 point)"),
    epochs: Optional[int] = typer.Option(None, help="training epochs [default: 20]"),
    seed: Optional[int] = typer.Option(None, help="random seed [default: 0]"),
    threads: Optional[int] = typer.Option(None, help="threads on the board [default: all its cores]"),
    trust_new_host: Optional[bool] = typer.Option(None, "--trust-new-host", help="record an unknown board's host key"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON report on stdout, nothing else"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress on stderr"),
) -> None:
    """Train -> prune -> int8 PTQ -> TVM compile -> run on a board -> report."""
    from .config import resolve
    from .pipeline import run as run_pipeline
    from .progress import Progress

    flags = {
        "model": model, "data": data, "target": target, "board": board, "out": out,
        "local_port": local_port, "sparsity": sparsity, "allow_below_70": allow_below_70,
        "method": method, "schedule": schedule, "distill": distill,
        "calibrator": calibrator, "budget": budget, "epochs": epochs, "seed": seed,
        "threads": threads, "trust_new_host": trust_new_host,
    }
    cfg = resolve(flags, config)
    progress = Progress(quiet=quiet)
    if as_json:
        with _stdout_to_stderr():
            report = run_pipeline(cfg, progress=progress)
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()
    else:
        report = run_pipeline(cfg, progress=progress)
        from rich.console import Console

        from .report import render_table

        Console().print(render_table(report))
        if cfg.out:
            Console(stderr=True).print(f"artifacts in {cfg.out}")


def _error(message: str) -> None:
    print(f"edgeopt: error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        app(args=argv, prog_name="edgeopt", standalone_mode=False)
        return 0
    except typer.Exit as exc:
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
        _error("interrupted")
        return 130
    except Exception as exc:  # a bug: one line by default, the traceback on request
        if os.environ.get("EDGEOPT_DEBUG"):
            raise
        _error(f"internal error: {type(exc).__name__}: {exc} (set EDGEOPT_DEBUG=1 for the traceback, and please report it)")
        return 70


def entry_point() -> None:
    sys.exit(main())
