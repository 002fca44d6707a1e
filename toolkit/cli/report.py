"""`edgeopt report compare A B` and `edgeopt report history`: what changed between two bench runs."""

from __future__ import annotations

from typing import Annotated

import typer

from .options import History, Json, print_json, sub_app

app = sub_app("Look at benchmark runs: compare two, list the history.")
RUN_HELP = "a report.json, a report directory, @N (history entry; @-1 = the last run) or a run id"


@app.command("compare")
def compare_cmd(
    a: Annotated[str, typer.Argument(help="run A (before): " + RUN_HELP)],
    b: Annotated[str, typer.Argument(help="run B (after): " + RUN_HELP)],
    history: History = None,
    as_json: Json = False,
) -> None:
    """Per board and variant: latency p50/p90, onnxruntime p50, accuracy and bundle size in A and
    B, with the change (B - A) and the ratio (B / A)."""
    from ..bench import history as hist
    from ..bench.compare import diff, render

    path = history or hist.default_path()
    d = diff(hist.resolve(a, path), hist.resolve(b, path))
    if as_json:
        print_json(d)
        return
    from rich.console import Console

    Console(width=200).print(render(d))


@app.command("history")
def history_cmd(
    history: History = None,
    as_json: Json = False,
) -> None:
    """List the recorded bench runs (oldest first; @N in `report compare` counts in this list)."""
    from ..bench import history as hist

    path = history or hist.default_path()
    entries = hist.load(path)
    rows = [
        {
            "index": i,
            "id": e.get("id"),
            "created": e.get("created"),
            "report_dir": e.get("report_dir"),
            "variants": [v["name"] for v in e.get("variants", [])],
            "boards": {n: x.get("ok") for n, x in e.get("summary", {}).get("boards", {}).items()},
        }
        for i, e in enumerate(entries)
    ]
    if as_json:
        print_json({"history": str(path), "runs": rows})
        return
    if not rows:
        print(f"no runs recorded in {path}")
    for r in rows:
        boards = ", ".join(f"{n}{'' if ok else ' (failed)'}" for n, ok in r["boards"].items())
        print(
            f"@{r['index']:<3} {r['id']}  {r['created']}  {len(r['variants'])} variant(s) on {boards}  "
            f"{r['report_dir'] or ''}"
        )
