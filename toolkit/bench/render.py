"""Bench results on a terminal: one bundle on one board as plain lines, a report as one rich
table per board."""

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


def one_bundle_text(doc: dict) -> str:
    """`edgeopt bench BUNDLE` (edgeopt.bench/1): the board, a row per engine and thread count,
    the comparison with the original model, emulation and parity."""
    b = doc["board"]
    lines = [
        f"board {b['address']} ({b['arch']}, {b['cpu']}, {b['cores']} cores) - load {doc['load_ms']:.1f} ms, "
        f"first inference {doc['first_ms']:.3f} ms, peak RSS {doc['rss_mb']:.0f} MB",
        f"{'engine':<12} {'threads':>7} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'mean':>9} {'std':>8} "
        f"{'runs':>6}  time_evaluator",
    ]

    def row(engine: str, threads, lat: dict) -> str:
        return (
            f"{engine:<12} {threads:>7} {lat['p50']:>9.4f} {lat['p90']:>9.4f} {lat['p99']:>9.4f} "
            f"{lat['mean']:>9.4f} {lat['std']:>8.4f} {lat['runs']:>6}"
        )

    for r in doc.get("sweep") or [doc]:
        lines.append(row("tvm", r["threads"], r["latency_ms"]) + f"  {r['time_evaluator_median_ms']:.4f}")
        if r.get("baseline"):
            lines.append(row("onnxruntime", r["threads"], r["baseline"]["latency_ms"]))
    if doc.get("vs_original"):
        from ..original import describe

        lines.append(f"vs the original model ({doc['threads']} threads): {describe(doc['vs_original'])}")
    if b.get("emulated"):
        from ..boards.qemu.board import EMULATED_NOTE

        lines.append(f"note: {EMULATED_NOTE}")
        ins = doc.get("instructions_per_inference") or {}
        if ins.get("available"):
            lines.append(
                f"instructions per inference on the emulated {ins['cpu']} ({ins['note']}): tvm {ins['tvm']:,}"
                + (f", onnxruntime {ins['onnxruntime']:,}" if "onnxruntime" in ins else "")
            )
        elif ins:
            lines.append(f"instructions per inference: not counted ({ins['reason']})")
    p = doc["parity"]
    lines.append(
        "parity with onnxruntime on the host: "
        + (
            f"top-1 agreement {p['top1_agreement']:.4f}, max abs diff {p['max_abs_diff']:.3g} over "
            f"{p['samples']} inputs"
            if p.get("top1_agreement") is not None
            else p.get("reason", "not computed")
        )
    )
    return "\n".join(lines)
