"""`edgeopt bench` with several bundles and/or boards, as a Python API:

doc, code = run(paths, boards=["local"], options=BenchOptions(), out=Path("bench-report"))
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

from edgeopt.errors import InputError

from . import fleet, history, plots, report
from .runner import BenchOptions, host_inputs
from .variants import default_eval_data, expand


class _BoardProgress:
    """One line per board on stderr (rich, thread-safe): its current step and elapsed time."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._bar = None
        self._tasks: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def run(self, boards: list[str]) -> Iterator["_BoardProgress"]:
        if self.quiet:
            yield self
            return
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[board]}[/bold]: {task.description}"),
            TimeElapsedColumn(),
            console=Console(stderr=True, highlight=False),
        )
        for b in boards:
            self._tasks[b] = self._bar.add_task("waiting", board=b, total=None)
        with self._bar:
            yield self

    def step(self, board: str, text: str) -> None:
        if self._bar is None:
            return
        with self._lock:
            done = text in ("done", "FAILED")
            self._bar.update(self._tasks[board], description=text, **({"total": 1, "completed": 1} if done else {}))


def run(
    paths: list[Path],
    *,
    boards: list[str],
    options: BenchOptions,
    out: Path,
    data: Path | None = None,
    history_file: Path | None = None,
    record_history: bool = True,
    progress=None,
    quiet: bool = False,
) -> tuple[dict, int]:
    """Benchmark every variant on every board; write report.json, report.md, the plots; append
    the run to the history. Returns (report, exit code: 0, or 9 if some boards failed, or the
    failure's own code if every board failed)."""
    from ..progress import Progress

    progress = progress or Progress(quiet=quiet)
    options.validate()
    if data is not None and not data.is_file():
        raise InputError(f"data file not found: {data}", hint="pass an .npz with an array x (and y for accuracy)")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    board_names = fleet.expand_boards(boards)
    with progress.stage("variants", f"load {len(paths)} bundle argument(s)") as st:
        variants = expand(paths)
        described = [v.describe() for v in variants]
        st["note"] = ", ".join(v.name for v in variants)
    data = data or default_eval_data(paths)
    with tempfile.TemporaryDirectory(prefix="edgeopt-bench-") as tmp:
        with progress.stage("references", "host reference outputs (onnxruntime)") as st:
            inputs = host_inputs(variants, data, Path(tmp))
            st["note"] = f"accuracy on {data.name}" if inputs.labelled else "no labelled data: no accuracy"
        # not inside progress.stage: its spinner and the per-board lines would be two live displays
        bp = _BoardProgress(quiet=progress.quiet)
        t0 = time.perf_counter()
        with bp.run(board_names):
            boards_doc = fleet.run_fleet(board_names, variants, inputs, options, step=bp.step)
        progress.timings["boards"] = round(time.perf_counter() - t0, 3)
        if not progress.quiet:
            for b in boards_doc:
                mark = "[green]✓[/green]" if b["ok"] else "[red]✗[/red]"
                progress.console.print(
                    f"{mark} board {b['name']:<34} "
                    + (f"{len(b['results'])} variant(s) measured" if b["ok"] else f"FAILED: {b['error']}"),
                    markup=True,
                )
    opts = {
        "runs": options.runs,
        "warmup": options.warmup,
        "rounds": options.rounds_used,
        "calls_per_round": options.calls_per_round,
        "threads": options.threads,
        "baseline": options.baseline,
        "profile_runs": options.profile_runs,
    }
    doc = report.build(variants=described, boards=boards_doc, options=opts, data=str(data) if data else None)
    with progress.stage("report", f"write report.json, report.md and plots to {out}"):
        files = plots.write(doc, out)
        report.write(doc, out, files)
    if record_history:
        path = history_file or history.default_path()
        history.append(doc, path, out)
        doc["history"] = str(path)
    return doc, fleet.exit_code(boards_doc)
