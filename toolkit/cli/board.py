"""The commands that talk to boards: deploy, bench, doctor, and the `board` group (setup, info,
clean; `board qemu ...` from qemu.py)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from ..bench.options import MIN_REPEAT_MS, BenchOptions
from . import qemu
from .options import (
    BOARD_HELP,
    Board,
    BoardArg,
    Json,
    LocalPort,
    Quiet,
    Timeout,
    TrustNewHost,
    default,
    emit,
    quiet_stdout,
    sub_app,
)

app = typer.Typer()
board_app = sub_app("Provision, inspect and clean a board.")
board_app.add_typer(qemu.app, name="qemu")


def _check_timeout(timeout: float | None) -> None:
    from edgeopt.errors import UsageError

    if timeout is not None and not 0 < timeout <= 86400:
        raise UsageError(f"--timeout must be between 0 and 86400 seconds, got {timeout}")


@contextlib.contextmanager
def _connected(board: str, *, trust_new_host: bool, local_port: int | None, timeout: float | None = None) -> Iterator:
    from ..boards.deploy import Connection
    from ..boards.names import check_board, open_board, with_options

    _check_timeout(timeout)
    check_board(board, local_port=local_port or 0)
    with open_board(board, local_port=local_port or 0, trust_new_host=trust_new_host) as spec:
        with Connection(with_options(spec, command_timeout_s=timeout)) as conn:
            if conn.recorded_host_key:
                print(f"recorded new host key {conn.recorded_host_key}", file=sys.stderr)
            yield conn


def _load_bundle(path: Path):
    from edgeopt.compile import Bundle

    return Bundle.load(path)


@app.command("deploy")
def deploy_cmd(
    bundle: Path = typer.Argument(..., help="a bundle directory (edgeopt compile --out)"),
    board: Board = "local",
    trust_new_host: TrustNewHost = False,
    local_port: LocalPort = default(BenchOptions, "local_port"),
    timeout: Timeout = None,
    as_json: Json = False,
) -> None:
    """Upload the agent and a bundle to a board's content-addressed store (only what is missing
    or damaged there), after checking the bundle's architecture against the board's."""
    from ..boards.ops import deploy

    b = _load_bundle(bundle)
    with quiet_stdout(as_json):
        with _connected(board, trust_new_host=trust_new_host, local_port=local_port, timeout=timeout) as conn:
            doc = deploy(conn, b)
            doc.pop("deployment")
    emit(
        doc,
        as_json,
        f"deployed {doc['bundle']['id'][:12]} to {doc['board']['address']} ({doc['board']['arch']}): "
        f"{len(doc['uploaded'])} file(s) uploaded ({doc['uploaded_bytes']:,} bytes), "
        f"{len(doc['skipped'])} already there; agent {doc['agent']['version']} runs with {doc['agent']['python']}"
        + (
            f"; removed {len(doc['removed_stale'])} half-written file(s) an interrupted deploy left"
            if doc["removed_stale"]
            else ""
        ),
    )


@app.command("bench")
def bench_cmd(
    bundle: list[Path] = typer.Argument(
        ...,
        help="bundle directories, or directories of bundles (each subdirectory "
        "with a manifest.json; edgeopt run --variants --out DIR)",
    ),
    board: Optional[list[str]] = typer.Option(
        None, help=BOARD_HELP + ", or a [groups] name; repeat for a fleet (boards run in parallel) [default: local]"
    ),
    runs: int = typer.Option(
        default(BenchOptions, "runs"),
        help="timed inferences per engine (one bundle: in 5 repeats; several: over --rounds)",
    ),
    warmup: int = typer.Option(default(BenchOptions, "warmup"), help="inferences run first and discarded"),
    threads: Optional[str] = typer.Option(
        None, help="thread count(s) on the board, e.g. 1,2,4 to sweep (one bundle on one board) [default: all cores]"
    ),
    baseline: Optional[str] = typer.Option(
        None,
        help="'ort': also run the bundle's model.onnx with onnxruntime on the board; "
        "'none': do not [default: none for one bundle, ort for a report]",
    ),
    min_repeat_ms: float = typer.Option(
        MIN_REPEAT_MS, help="one bundle: each repeat lasts at least this long (more runs if needed)"
    ),
    onnx: Optional[Path] = typer.Option(
        None, help="one bundle: ONNX model for the host reference outputs [default: the bundle's model.onnx]"
    ),
    data: Optional[Path] = typer.Option(
        None,
        help=".npz whose x holds the inputs for parity (and y the labels: accuracy on the board) "
        "[default: 32 seeded random inputs; DIR/eval.npz of a variants dir]",
    ),
    keep_samples: bool = typer.Option(
        False, "--keep-samples", help="one bundle: include every timed sample in the JSON"
    ),
    out: Optional[Path] = typer.Option(
        None,
        help="write report.json, report.md and the PNG plots here "
        "[default with several bundles or boards: ./bench-report]",
    ),
    rounds: int = typer.Option(
        default(BenchOptions, "rounds"),
        help="report: interleaved rounds; each round runs every variant and baseline in turn",
    ),
    profile_runs: int = typer.Option(
        default(BenchOptions, "profile_runs"),
        help="report: inferences per variant for the per-operator profile (0: none)",
    ),
    history: Optional[Path] = typer.Option(
        None, help="report: append the run to this JSON-lines file [default: the user data dir's history.jsonl]"
    ),
    no_history: bool = typer.Option(False, "--no-history", help="report: do not record the run in the history"),
    trust_new_host: TrustNewHost = False,
    local_port: LocalPort = default(BenchOptions, "local_port"),
    timeout: Timeout = None,
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Deploy, then measure latency on the board. One bundle on one board: warm-up, repeats,
    percentiles, load and first inference apart, TVM's time_evaluator alongside, parity with the
    host's onnxruntime. Several bundles (variants) and/or boards: interleaved rounds, each variant
    against onnxruntime on the same board, boards in parallel, one report (report.json, report.md,
    plots) in --out, appended to the history. Exit code 9: some boards failed (the report has the others)."""
    from edgeopt.errors import InputError, UsageError

    from ..boards.ops import bench, parse_threads

    thread_list = parse_threads(threads)
    _check_timeout(timeout)
    boards = list(board or ["local"])
    from ..boards.config import load_groups

    dir_of_bundles = bundle[0].is_dir() and not (bundle[0] / "manifest.json").is_file()
    single = (
        len(bundle) == 1 and len(boards) == 1 and out is None and boards[0] not in load_groups() and not dir_of_bundles
    )
    if not single:
        from ..bench.api import run as run_report
        from ..progress import Progress

        if len(thread_list) > 1:
            raise UsageError("--threads with a list sweeps one bundle on one board; a report takes one thread count")
        for flag, given in (
            ("--min-repeat-ms", min_repeat_ms != MIN_REPEAT_MS),
            ("--onnx", onnx is not None),
            ("--keep-samples", keep_samples),
        ):
            if given:
                raise UsageError(
                    f"{flag} applies to one bundle on one board only",
                    hint="a report always keeps every sample in report.json",
                )
        opts = BenchOptions(
            runs=runs,
            warmup=warmup,
            rounds=rounds,
            threads=thread_list[0],
            baseline=None if baseline == "none" else (baseline or "ort"),
            profile_runs=profile_runs,
            local_port=local_port or 0,
            trust_new_host=trust_new_host,
            timeout_s=timeout,
        )
        with quiet_stdout(as_json):
            doc, code = run_report(
                bundle,
                boards=boards,
                options=opts,
                out=out or Path("bench-report"),
                data=data,
                history_file=history,
                record_history=not no_history,
                progress=Progress(quiet=quiet),
            )
        _print_report(doc, out or Path("bench-report"), code, as_json=as_json)
        if code:
            raise typer.Exit(code)
        return
    bundle_path = bundle[0]
    b = _load_bundle(bundle_path)
    if onnx is not None and not onnx.is_file():
        raise InputError(f"ONNX model not found: {onnx}")
    if data is not None and not data.is_file():
        raise InputError(f"data file not found: {data}")
    with quiet_stdout(as_json):
        with _connected(boards[0], trust_new_host=trust_new_host, local_port=local_port, timeout=timeout) as conn:
            doc = bench(
                conn,
                b,
                runs=runs,
                warmup=warmup,
                threads=thread_list,
                baseline=None if baseline == "none" else baseline,
                min_repeat_ms=min_repeat_ms,
                onnx=onnx,
                data=data,
                keep_samples=keep_samples,
            )
    if as_json:
        emit(doc, True, "")
        return
    from ..bench.render import one_bundle_text

    print(one_bundle_text(doc))


def _print_report(doc: dict, out_dir: Path, code: int, *, as_json: bool) -> None:
    if as_json:
        from ..bench.report import strip_samples

        emit(dict(strip_samples(doc), out=str(out_dir), exit_code=code), True, "")
        return
    from rich.console import Console

    from ..bench.render import summary_tables

    console = Console() if sys.stdout.isatty() else Console(width=180)
    for t in summary_tables(doc):
        console.print(t)
    Console(stderr=True).print(
        f"report: {out_dir / 'report.md'} (+ report.json, PNG plots)"
        + (f"; history: {doc['history']}" if doc.get("history") else "")
    )


@board_app.command("setup")
def setup_cmd(
    board: BoardArg,
    with_ort: bool = typer.Option(False, "--with-ort", help="also install onnxruntime (for bench --baseline ort)"),
    wheels: Optional[Path] = typer.Option(None, help="use the wheels in this directory instead of downloading them"),
    index_url: Optional[str] = typer.Option(None, help="package index the host downloads from [default: pip's]"),
    trust_new_host: TrustNewHost = False,
    as_json: Json = False,
) -> None:
    """Install the agent's runtime (TVM runtime, numpy) into ~/.edgeopt/venv on the board; the
    host downloads the wheels, so the board needs no internet."""
    from edgeopt.errors import InputError

    from ..boards.provision import setup

    if wheels is not None and not wheels.is_dir():
        raise InputError(f"wheel directory not found: {wheels}")
    with quiet_stdout(as_json):
        with _connected(board, trust_new_host=trust_new_host, local_port=None) as conn:
            doc = setup(
                conn,
                with_ort=with_ort,
                wheels=wheels,
                index_url=index_url,
                progress=lambda m: print(m, file=sys.stderr),
            )
    emit(
        doc,
        as_json,
        f"{doc['board']['address']}: TVM {doc['tvm']}, numpy {doc['numpy']} in {doc['venv']} "
        f"({len(doc['wheels_uploaded'])} of {doc['wheels_total']} wheels uploaded)",
    )


@board_app.command("info")
def info_cmd(
    board: Annotated[str, typer.Argument(help=BOARD_HELP)],
    trust_new_host: TrustNewHost = False,
    timeout: Timeout = None,
    as_json: Json = False,
) -> None:
    """Board facts (arch, CPU, cores, memory, kernel, Python, TVM runtime) and its bundle store."""
    from ..boards.ops import info

    with quiet_stdout(as_json):
        with _connected(board, trust_new_host=trust_new_host, local_port=None, timeout=timeout) as conn:
            doc = info(conn)
    b = doc["board"]
    emit(
        doc,
        as_json,
        "\n".join(
            [
                f"board    {b['address']}",
                f"arch     {b['arch']}, {b['cores']} cores, {b['cpu']}, {b['memory_mb']} MB, kernel {b['kernel']}",
                f"python   {doc['python']} ({b['python']})"
                + ("" if doc["provisioned"] else "  [not provisioned: edgeopt board setup]"),
                f"runtime  tvm {b.get('tvm') or 'MISSING'}, numpy {b.get('numpy') or 'MISSING'}",
                f"store    {doc['store']['root']}: {len(doc['store']['bundles'])} bundle(s)",
            ]
        ),
    )


@board_app.command("clean")
def clean_cmd(
    board: BoardArg,
    keep: int = typer.Option(..., help="keep this many most recently deployed bundles"),
    trust_new_host: TrustNewHost = False,
    as_json: Json = False,
) -> None:
    """Prune the board's bundle store to the N most recently deployed bundles (and remove stale
    agents and leftover temporary files)."""
    from edgeopt.errors import UsageError

    from ..boards.ops import clean

    if keep < 0:
        raise UsageError("--keep must be >= 0")
    with quiet_stdout(as_json):
        with _connected(board, trust_new_host=trust_new_host, local_port=None) as conn:
            doc = clean(conn, keep=keep)
    emit(doc, as_json, f"kept {len(doc['kept'])} bundle(s), removed {len(doc['removed'])} item(s)")


@app.command("doctor")
def doctor_cmd(
    board: Optional[str] = typer.Option(None, help="also check this board's SSH access and runtime"),
    trust_new_host: TrustNewHost = False,
    as_json: Json = False,
) -> None:
    """Check the host toolchain (TVM and tvm-ffi versions, cross compiler, QEMU) and, with
    --board, the board's SSH access and runtime; say what to fix. Exit 1 if anything fails."""
    from edgeopt.errors import EdgeoptError

    from ..boards.ops import board_checks, host_checks

    with quiet_stdout(as_json):
        checks = [dict(c, scope="host") for c in host_checks()]
        if board:
            try:
                with _connected(board, trust_new_host=trust_new_host, local_port=None) as conn:
                    checks += [dict(c, scope="board") for c in board_checks(conn)]
            except EdgeoptError as exc:
                checks.append({"scope": "board", "name": "ssh", "ok": False, "detail": exc.message, "fix": exc.hint})
    ok = all(c["ok"] for c in checks)
    if as_json:
        emit({"ok": ok, "checks": checks}, True, "")
    else:
        for c in checks:
            print(
                f"{'ok  ' if c['ok'] else 'FAIL'} {c['scope']:<5} {c['name']:<48} {c['detail']}"
                + (f"\n      fix: {c['fix']}" if not c["ok"] and c.get("fix") else "")
            )
    if not ok:
        raise typer.Exit(1)
