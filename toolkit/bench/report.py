"""The combined benchmark report: report.json (schema edgeopt.bench-report/1) and report.md."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path

from ..original import describe as describe_original
from ..original import verdict

SCHEMA = "edgeopt.bench-report/1"
TOP_OPS = 5


def build(*, variants: list[dict], boards: list[dict], options: dict, data: str | None) -> dict:
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    doc = {
        "schema": SCHEMA,
        "created": created,
        "options": options,
        "data": data,
        "variants": variants,
        "boards": boards,
    }
    doc["id"] = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:12]
    doc["summary"] = summary(doc)
    return doc


def reference_variant(doc: dict) -> str | None:
    """What ratios are against: dense-fp32 if present, else the first variant."""
    names = [v["name"] for v in doc["variants"]]
    return "dense-fp32" if "dense-fp32" in names else (names[0] if names else None)


def summary(doc: dict) -> dict:
    """Per board and variant: the numbers people compare (no samples)."""
    ref = reference_variant(doc)
    sizes = {v["name"]: v["bytes"] for v in doc["variants"]}
    variants = {v["name"]: v for v in doc["variants"]}
    options = doc.get("options") or {}
    out: dict = {"reference_variant": ref, "boards": {}}
    for b in doc["boards"]:
        if not b["ok"]:
            out["boards"][b["name"]] = {"ok": False, "error": b["error"]}
            continue
        rows = {}
        ref_p50 = b["results"].get(ref, {}).get("tvm", {}).get("latency_ms", {}).get("p50")
        # a bundle's own original.onnx; else a dense-fp32 variant's model.onnx is the same original model
        dense_ort = (b["results"].get("dense-fp32") or {}).get("ort")
        for name, r in b["results"].items():
            lat = r["tvm"]["latency_ms"]
            ort = r.get("ort") or {}
            ort_p50 = ort.get("latency_ms", {}).get("p50") if ort.get("available") else None
            prof = r.get("profile") or {}
            rows[name] = {
                "p50_ms": lat["p50"],
                "p90_ms": lat["p90"],
                "p99_ms": lat["p99"],
                "mean_ms": lat["mean"],
                "std_ms": lat["std"],
                "runs": lat["runs"],
                "ort_p50_ms": ort_p50,
                "speedup_vs_ort": (ort_p50 / lat["p50"]) if ort_p50 else None,
                "speedup_vs_reference": (ref_p50 / lat["p50"]) if ref_p50 else None,
                "accuracy": r["tvm"].get("accuracy"),
                "ort_accuracy": ort.get("accuracy"),
                "top1_agreement": (r.get("parity") or {}).get("top1_agreement"),
                "bytes": sizes.get(name),
                "size_vs_reference": (sizes[name] / sizes[ref]) if ref in sizes and sizes.get(name) else None,
                "load_ms": r["tvm"]["load_ms"],
                "first_ms": r["tvm"]["first_ms"],
                "vs_original": _vs_original(r, variants.get(name, {}), dense_ort, options),
                "top_ops": [
                    {"name": o["name"], "percent": o["percent"], "ms": o["ms_per_inference"]}
                    for o in prof.get("ops", [])
                    if o["kind"] == "kernel"
                ][:TOP_OPS]
                if prof.get("available")
                else None,
            }
        out["boards"][b["name"]] = {
            "ok": True,
            "address": b["address"],
            "shares_cpu_with": b.get("shares_cpu_with", []),
            "variants": rows,
        }
    return out


def _vs_cell(v: dict) -> str:
    if not v.get("available"):
        return "–"
    return f"{v['speedup_vs_original']:.2f}x" + (" **SLOWER**" if v["slower_than_original"] else "")


def _vs_original(r: dict, variant: dict, dense_ort: dict | None, options: dict) -> dict:
    p50 = r["tvm"]["latency_ms"]["p50"]
    original = r.get("original")
    if original is None and dense_ort is not None:
        original = dense_ort
    if original is None and options.get("baseline") != "ort":
        original = {"available": False, "reason": "--baseline none: onnxruntime not run"}
    if original is None and not variant.get("original"):
        return verdict(p50_ms=p50, original=None, levers=variant.get("levers") or [])
    return verdict(
        p50_ms=p50,
        original=original or {"available": False, "reason": "not measured"},
        levers=variant.get("levers") or [],
    )


def strip_samples(doc: dict) -> dict:
    """The report without per-call samples (what the history keeps)."""
    d = json.loads(json.dumps(doc))
    for b in d.get("boards", []):
        for r in (b.get("results") or {}).values():
            for eng in ("tvm", "ort"):
                if isinstance(r.get(eng), dict):
                    r[eng].pop("samples_ms", None)
    return d


def _f(x, fmt: str = ".4f", none: str = "–") -> str:
    return none if x is None else format(x, fmt)


def markdown(doc: dict, plots: dict[str, str]) -> str:
    s = doc["summary"]
    ref = s["reference_variant"]
    o = doc["options"]
    lines = [
        f"# edgeopt bench — {len(doc['variants'])} variant(s) on {len(doc['boards'])} board(s)",
        "",
        f"Run `{doc['id']}`, {doc['created']}. Protocol: {o['warmup']} warm-up calls discarded per engine, then "
        f"{o['rounds']} interleaved rounds of {o['calls_per_round']} calls per engine (order rotated every round), "
        f"{o['threads'] or 'all'} thread(s); each call timed alone on the board. "
        f"Ratios are against `{ref}`. See docs/benchmark-protocol.md for what each number means.",
        "",
    ]
    shared = [b for b in doc["boards"] if b.get("shares_cpu_with")]
    if shared:
        lines += [
            "> **Boards sharing one CPU:** "
            + "; ".join(f"`{b['name']}` with {', '.join(f'`{n}`' for n in b['shares_cpu_with'])}" for b in shared)
            + ". They were measured at the same time, so their latencies disturb each other: compare variants "
            "within a board, not these boards with each other.",
            "",
        ]
    lines += [
        "## Variants",
        "",
        "| variant | precision | tuned | size (bytes) | size vs ref | sparsity | bundle |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for v in doc["variants"]:
        sz = (v["bytes"] / next(x["bytes"] for x in doc["variants"] if x["name"] == ref)) if ref else None
        tuned = f"yes ({v['tuning_trials']} trials)" if v["tuned"] else "no"
        lines.append(
            f"| {v['name']} | {v['precision'] or '?'} | {tuned} | {v['bytes']:,} | {_f(sz, '.2f')}x | "
            f"{_f(v['sparsity']['global'], '.3f')} | `{v['bundle_id'][:12]}` |"
        )
    lines.append("")
    for b in doc["boards"]:
        lines += [f"## Board `{b['name']}`", ""]
        if not b["ok"]:
            lines += [f"**FAILED** (exit code {b['exit_code']}): `{b['error']}`", ""]
            continue
        f = b["facts"]
        lines += [
            f"{b['address']} — {f.get('arch')}, {f.get('cpu')}, {f.get('cores')} cores, Python {f.get('python')}, "
            f"TVM runtime {f.get('tvm')}; {b['threads']} thread(s); agent peak RSS {b['peak_rss_mb']:.0f} MB"
            + (f"; **shares its CPU with {', '.join(b['shares_cpu_with'])}**" if b.get("shares_cpu_with") else ""),
            "",
            *(
                [
                    "> **Emulated board (QEMU):** its latencies prove that the bundles run and the measurement path "
                    "works; they are not hardware numbers (emulated arithmetic is ~500-900x slower).",
                    "",
                ]
                if b.get("emulated")
                else []
            ),
            "| variant | p50 ms | p90 ms | p99 ms | std | speed-up vs ref | onnxruntime p50 ms | TVM vs ORT | "
            "vs original | accuracy | ORT accuracy | top-1 vs host |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        rows = s["boards"][b["name"]]["variants"]
        for name, r in rows.items():
            lines.append(
                f"| {name} | {_f(r['p50_ms'])} | {_f(r['p90_ms'])} | {_f(r['p99_ms'])} | {_f(r['std_ms'])} | "
                f"{_f(r['speedup_vs_reference'], '.2f')}x | {_f(r['ort_p50_ms'])} | "
                f"{_f(r['speedup_vs_ort'], '.2f')}x | "
                f"{_vs_cell(r['vs_original'])} | {_f(r['accuracy'])} | {_f(r['ort_accuracy'])} | "
                f"{_f(r['top1_agreement'])} |"
            )
        lines += [
            "",
            "Against the starting point (onnxruntime running the original dense fp32 model on this board, "
            "same run; > 1 is faster):",
            "",
        ]
        for name, r in rows.items():
            lines.append(f"- {name}: " + describe_original(r["vs_original"]))
        missing_ort = {
            r.get("ort", {}).get("reason")
            for r in b["results"].values()
            if r.get("ort") and not r["ort"].get("available")
        }
        if missing_ort:
            lines += ["", "onnxruntime baseline unavailable: " + "; ".join(sorted(str(m) for m in missing_ort))]
        lines += ["", "### Where the time goes (per-operator profile)", ""]
        profiles = {n: r.get("profile") or {} for n, r in b["results"].items()}
        if not any(p.get("available") for p in profiles.values()):
            reasons = sorted({p.get("reason", "not measured") for p in profiles.values()})
            lines += ["Per-operator profile **unavailable** on this board: " + "; ".join(reasons), ""]
        else:
            lines += [
                "Kernel time per inference from the Relax VM's instrument hook (timed between the hook's "
                "before and after calls, so each number includes a few µs of hook overhead); "
                "`vm.builtin.*` (allocation, shape checks) left out of the top list.",
                "",
                "| variant | top operators (share of instrumented time) |",
                "| --- | --- |",
            ]
            for n, p in profiles.items():
                if not p.get("available"):
                    lines.append(f"| {n} | unavailable: {p.get('reason')} |")
                    continue
                kernels = [o for o in p["ops"] if o["kind"] == "kernel"][:TOP_OPS]
                builtin = sum(o["percent"] for o in p["ops"] if o["kind"] == "builtin")
                lines.append(
                    f"| {n} | "
                    + ", ".join(
                        f"`{o['name']}` {o['percent']:.0f}% ({o['ms_per_inference'] * 1e3:.1f} µs)" for o in kernels
                    )
                    + f"; builtins {builtin:.0f}% |"
                )
            lines.append("")
    if plots:
        lines += ["## Plots", ""]
        for name, file in plots.items():
            lines += [f"![{name}]({file})", ""]
    return "\n".join(lines) + "\n"


def write(doc: dict, out: Path, plots: dict[str, str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "report.md").write_text(markdown(doc, plots))
