"""`edgeopt report compare A B` and `edgeopt report history`: what changed between two bench runs.

Registered on the main `app` by importing this module from toolkit.cli."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .cli import app

report_app = typer.Typer(help="Look at benchmark runs: compare two, list the history.", no_args_is_help=True,
                         pretty_exceptions_enable=False, rich_markup_mode=None)
app.add_typer(report_app, name="report")

RUN_HELP = "a report.json, a report directory, @N (history entry; @-1 = the last run) or a run id"


@report_app.command("compare")
def compare_cmd(
    a: str = typer.Argument(..., help="run A (before): " + RUN_HELP),
    b: str = typer.Argument(..., help="run B (after): " + RUN_HELP),
    history: Optional[Path] = typer.Option(None, help="the history file for @N and run ids [default: the user data dir's history.jsonl]"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON document on stdout, nothing else"),
) -> None:
    """Per board and variant: latency p50/p90, onnxruntime p50, accuracy and bundle size in A and
    B, with the change (B - A) and the ratio (B / A)."""
    from .bench import history as hist
    from .bench.compare import diff, render

    path = history or hist.default_path()
    d = diff(hist.resolve(a, path), hist.resolve(b, path))
    if as_json:
        sys.stdout.write(json.dumps(d) + "\n")
        return
    from rich.console import Console

    Console(width=200).print(render(d))


@report_app.command("history")
def history_cmd(
    history: Optional[Path] = typer.Option(None, help="the history file [default: the user data dir's history.jsonl]"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON document on stdout, nothing else"),
) -> None:
    """List the recorded bench runs (oldest first; @N in `report compare` counts in this list)."""
    from .bench import history as hist

    path = history or hist.default_path()
    entries = hist.load(path)
    rows = [{"index": i, "id": e.get("id"), "created": e.get("created"), "report_dir": e.get("report_dir"),
             "variants": [v["name"] for v in e.get("variants", [])],
             "boards": {n: x.get("ok") for n, x in e.get("summary", {}).get("boards", {}).items()}} for i, e in enumerate(entries)]
    if as_json:
        sys.stdout.write(json.dumps({"history": str(path), "runs": rows}) + "\n")
        return
    if not rows:
        print(f"no runs recorded in {path}")
    for r in rows:
        boards = ", ".join(f"{n}{'' if ok else ' (failed)'}" for n, ok in r["boards"].items())
        print(f"@{r['index']:<3} {r['id']}  {r['created']}  {len(r['variants'])} variant(s) on {boards}  {r['report_dir'] or ''}")
