"""Progress on stderr: one line per finished stage, a spinner while one runs (on a terminal), and a
bar of tuning trials done against the budget, with the time spent."""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

from rich.console import Console


class Progress:
    def __init__(self, *, quiet: bool = False) -> None:
        self.console = Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str, description: str) -> Iterator[dict]:
        """Times a stage; the caller may put a short `note` into the yielded dict."""
        info: dict = {}
        start = time.perf_counter()
        status = self.console.status(f"{description}...") if not self.quiet else contextlib.nullcontext()
        with status:
            yield info
        elapsed = time.perf_counter() - start
        self.timings[name] = round(elapsed, 3)
        if not self.quiet:
            note = f"  [dim]{info['note']}[/dim]" if info.get("note") else ""
            self.console.print(f"[green]✓[/green] {description:<40} {elapsed:6.1f}s{note}")

    @contextlib.contextmanager
    def trials(self, total: int, *, label: str = "tuning") -> Iterator[Callable[[int], None] | None]:
        """A bar of MetaSchedule trials measured out of `total` (the budget) and the time spent.
        Yields the callback for compile_onnx(on_trials=...); None when quiet or nothing to tune."""
        if self.quiet or total <= 0:
            yield None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        bar = Bar(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("trials"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        task = bar.add_task(label, total=total)
        with bar:
            yield lambda done: bar.update(task, completed=min(done, total))
