"""The bench report on a terminal: one rich table per board."""

from __future__ import annotations

from rich.table import Table


def _f(x, fmt: str = ".4f") -> str:
    return "–" if x is None else format(x, fmt)


def summary_tables(doc: dict) -> list[Table]:
    s = doc["summary"]
    tables = []
    for b in doc["boards"]:
        if not b["ok"]:
            t = Table(title=f"board {b['name']}: FAILED (exit code {b['exit_code']})", show_header=False)
            t.add_column("error")
            t.add_row(b["error"])
            tables.append(t)
            continue
        t = Table(
            title=f"board {b['name']} ({b['address']}, {b['facts'].get('arch')}, {b['threads']} threads)",
            header_style="bold",
        )
        if b.get("shares_cpu_with"):
            t.caption = (
                f"shares its CPU with {', '.join(b['shares_cpu_with'])}: measured at the same time, "
                "their latencies disturb each other"
            )
        for col in (
            "variant",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            f"vs {s['reference_variant']}",
            "ORT p50 ms",
            "TVM vs ORT",
            "accuracy",
            "bytes",
            "top operator",
        ):
            t.add_column(col, justify="left" if col in ("variant", "top operator") else "right")
        for name, r in s["boards"][b["name"]]["variants"].items():
            top = r["top_ops"][0] if r.get("top_ops") else None
            t.add_row(
                name,
                _f(r["p50_ms"]),
                _f(r["p90_ms"]),
                _f(r["p99_ms"]),
                _f(r["speedup_vs_reference"], ".2f") + "x",
                _f(r["ort_p50_ms"]),
                _f(r["speedup_vs_ort"], ".2f") + "x",
                _f(r["accuracy"]),
                f"{r['bytes']:,}" if r["bytes"] else "–",
                f"{top['name']} {top['percent']:.0f}%" if top else "unavailable",
            )
        tables.append(t)
    return tables
