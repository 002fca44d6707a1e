"""What changed between two benchmark runs: per board and variant, latency, accuracy and size,
with deltas (B - A) and ratios (B / A)."""

from __future__ import annotations


def _pair(a: float | None, b: float | None) -> dict:
    return {
        "a": a,
        "b": b,
        "delta": (b - a) if a is not None and b is not None else None,
        "ratio": (b / a) if a not in (None, 0) and b is not None else None,
    }


def diff(a: dict, b: dict) -> dict:
    sa, sb = a["summary"]["boards"], b["summary"]["boards"]
    ok_a = [n for n, x in sa.items() if x.get("ok")]
    ok_b = [n for n, x in sb.items() if x.get("ok")]
    pairs = [(n, n) for n in ok_a if n in ok_b]
    note = None
    if not pairs and len(ok_a) == 1 and len(ok_b) == 1:  # one board each, named differently
        pairs = [(ok_a[0], ok_b[0])]
        note = f"different boards: {ok_a[0]} (A) vs {ok_b[0]} (B)"
    size_a = {v["name"]: v["bytes"] for v in a["variants"]}
    size_b = {v["name"]: v["bytes"] for v in b["variants"]}
    rows = []
    for ba, bb in pairs:
        va, vb = sa[ba]["variants"], sb[bb]["variants"]
        for name in [n for n in va if n in vb]:
            x, y = va[name], vb[name]
            rows.append(
                {
                    "board": ba if ba == bb else f"{ba} -> {bb}",
                    "variant": name,
                    "p50_ms": _pair(x["p50_ms"], y["p50_ms"]),
                    "p90_ms": _pair(x["p90_ms"], y["p90_ms"]),
                    "ort_p50_ms": _pair(x.get("ort_p50_ms"), y.get("ort_p50_ms")),
                    "accuracy": _pair(x.get("accuracy"), y.get("accuracy")),
                    "bytes": _pair(size_a.get(name), size_b.get(name)),
                }
            )
    only_a = sorted(set(size_a) - set(size_b))
    only_b = sorted(set(size_b) - set(size_a))
    return {
        "a": {"id": a.get("id"), "created": a.get("created")},
        "b": {"id": b.get("id"), "created": b.get("created")},
        "rows": rows,
        "only_in_a": only_a,
        "only_in_b": only_b,
        "boards_only_in_a": sorted(set(sa) - {p[0] for p in pairs}),
        "boards_only_in_b": sorted(set(sb) - {p[1] for p in pairs}),
        "note": note,
    }


def _fmt(p: dict, digits: str, pct: bool = True) -> str:
    if p["a"] is None and p["b"] is None:
        return "–"
    if p["a"] is None or p["b"] is None:
        return f"{p['a'] if p['a'] is not None else '–'} -> {p['b'] if p['b'] is not None else '–'}"
    s = f"{p['a']:{digits}} -> {p['b']:{digits}} ({p['delta']:+{digits}}"
    if pct and p["ratio"] is not None:
        s += f", x{p['ratio']:.2f}"
    return s + ")"


def render(d: dict):
    from rich.table import Table

    t = Table(
        title=f"edgeopt report compare: A {d['a']['id']} ({d['a']['created']}) -> B {d['b']['id']} "
        f"({d['b']['created']})",
        header_style="bold",
    )
    for col in ("board", "variant", "latency p50 ms", "latency p90 ms", "onnxruntime p50 ms", "accuracy", "bytes"):
        t.add_column(col, justify="left" if col in ("board", "variant") else "right")
    for r in d["rows"]:
        t.add_row(
            r["board"],
            r["variant"],
            _fmt(r["p50_ms"], ".4f"),
            _fmt(r["p90_ms"], ".4f"),
            _fmt(r["ort_p50_ms"], ".4f"),
            _fmt(r["accuracy"], ".4f", pct=False),
            _fmt(r["bytes"], ",d"),
        )
    notes = []
    if d["note"]:
        notes.append(d["note"])
    if d["only_in_a"] or d["only_in_b"]:
        notes.append(
            f"variants only in A: {', '.join(d['only_in_a']) or '-'}; only in B: {', '.join(d['only_in_b']) or '-'}"
        )
    if d["boards_only_in_a"] or d["boards_only_in_b"]:
        notes.append(
            f"boards not compared (failed or absent): A {', '.join(d['boards_only_in_a']) or '-'}; "
            f"B {', '.join(d['boards_only_in_b']) or '-'}"
        )
    t.caption = "value A -> value B (B - A, xB/A). " + " ".join(notes)
    return t
