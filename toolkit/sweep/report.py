"""The sweep's output under --out: sweep.json, report.md, pareto.png, front/<setting>/ (the
front's bundles) and best/ (the best setting within the budget: a bundle for `edgeopt deploy`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .pareto import best, front

SCHEMA = "edgeopt.sweep/1"


def build(
    *, spec, records: list[dict], boards: list[str], cluster: dict, stage_events: list[dict], seconds: float
) -> dict:
    fr = front(records, boards)
    b = best(records, boards)
    built = [e for e in stage_events if e["event"] == "built"]
    return {
        "schema": SCHEMA,
        "spec": spec.model_dump(mode="json"),
        "boards": boards,
        "cluster": cluster,
        "objectives": {
            "accuracy": "validation split (host, onnxruntime), maximized",
            "latency": "p50 on each board (TVM), minimized",
            "bytes": "deployable bundle bytes, minimized",
        },
        "budget": {"val_drop_max": spec.budget, "of": "the dense model's validation accuracy"},
        "trials": {
            "finished": len(records),
            "ok": sum(1 for r in records if r.get("ok")),
            "failed": sum(1 for r in records if not r.get("ok")),
            "within_budget": sum(1 for r in records if r.get("within_budget")),
        },
        "stages": {
            "built": len(built),
            "reused": sum(1 for e in stage_events if e["event"] == "reused"),
            "by_stage": {k: sum(1 for e in built if e["stage"] == k) for k in sorted({e["stage"] for e in built})},
        },
        "front": [r["setting_id"] for r in fr],
        "best": b["setting_id"] if b else None,
        "seconds": round(seconds, 3),
        "results": sorted(records, key=lambda r: r["setting_id"]),
    }


def _fmt(x, spec: str = ".4f") -> str:
    return "—" if x is None else format(x, spec)


def markdown(doc: dict) -> str:
    boards = doc["boards"]
    by_id = {r["setting_id"]: r for r in doc["results"]}
    t = doc["trials"]
    lines = [
        "# edgeopt sweep",
        "",
        f"{t['finished']} settings finished ({t['ok']} measured, {t['failed']} failed), {t['within_budget']} "
        "within the "
        f"accuracy budget (validation drop <= {doc['budget']['val_drop_max']} below the dense model); "
        f"stages built {doc['stages']['built']}, reused {doc['stages']['reused']}; {doc['seconds']:.0f} s on "
        f"{len(doc['cluster']['nodes'])} Ray node(s).",
        "",
    ]
    if doc["best"]:
        r = by_id[doc["best"]]
        lines += [
            f"**Best within the budget:** `{r['setting_id']}` — {r['label']}: p50 "
            f"{r['boards'][boards[0]]['p50_ms']:.4f} ms "
            f"on {boards[0]}, test accuracy {r['test_accuracy']:.4f}, {r['bytes']:,} bytes. Bundle: `best/` "
            f"(`edgeopt deploy best/ --board {boards[0]}`).",
            "",
        ]
    else:
        lines += ["**No setting met the accuracy budget.**", ""]
    head = ["setting", "id", "val acc", "test acc", "bytes"]
    for b in boards:
        head += [f"{b} p50 ms", f"{b} p90 ms", f"{b} speedup"]
    lines += ["## Pareto front", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for sid in doc["front"]:
        r = by_id[sid]
        row = [
            r["label"] + ("" if r["within_budget"] else " (over budget)"),
            f"`{sid}`",
            _fmt(r["val_accuracy"]),
            _fmt(r["test_accuracy"]),
            f"{r['bytes']:,}",
        ]
        for b in boards:
            m = r["boards"][b]
            row += [_fmt(m["p50_ms"]), _fmt(m["p90_ms"]), _fmt(m["speedup"], ".2f") + ("x" if m["speedup"] else "")]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "Speedup: over the original (dense fp32) model run by onnxruntime on the same board in the same "
        "measurement. Accuracy: host onnxruntime on the quantized model (validation decides, test is reported).",
        "",
    ]
    failed = [r for r in doc["results"] if not r.get("ok")]
    if failed:
        lines += ["## Failed settings", "", "| setting | id | error |", "| --- | --- | --- |"]
        lines += [f"| {r['label']} | `{r['setting_id']}` | {r['error']} |" for r in failed]
        lines.append("")
    lines += ["![accuracy vs latency](pareto.png)", ""]
    return "\n".join(lines)


def picture(doc: dict, path: Path) -> None:
    """Accuracy vs p50 on the first board; marker area ~ bundle bytes; the front drawn as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    board = doc["boards"][0]
    ok = [r for r in doc["results"] if r.get("ok")]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if ok:
        top = max(r["bytes"] for r in ok)
        area = [30 + 400 * r["bytes"] / top for r in ok]
        colors = ["tab:blue" if r["within_budget"] else "tab:gray" for r in ok]
        ax.scatter(
            [r["boards"][board]["p50_ms"] for r in ok],
            [r["test_accuracy"] for r in ok],
            s=area,
            c=colors,
            alpha=0.6,
            edgecolors="k",
            linewidths=0.5,
        )
        fr = [r for r in ok if r["setting_id"] in doc["front"]]
        fr.sort(key=lambda r: r["boards"][board]["p50_ms"])
        ax.step(
            [r["boards"][board]["p50_ms"] for r in fr],
            [r["test_accuracy"] for r in fr],
            where="post",
            color="tab:red",
            label="Pareto front",
        )
        if doc["best"]:
            r = next(r for r in ok if r["setting_id"] == doc["best"])
            ax.annotate(
                "best", (r["boards"][board]["p50_ms"], r["test_accuracy"]), xytext=(8, 8), textcoords="offset points"
            )
        ax.legend(loc="lower right")
    ax.set_xlabel(f"p50 latency on {board} (ms)")
    ax.set_ylabel("test accuracy")
    ax.set_title("edgeopt sweep: accuracy vs latency (marker area: bundle bytes; gray: over budget)")
    ax.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(doc: dict, out: Path) -> None:
    """Files first into place; the front's bundles copied out of the stage cache (a later sweep
    may evict the cache; these stay)."""
    out.mkdir(parents=True, exist_ok=True)
    by_id = {r["setting_id"]: r for r in doc["results"]}
    front_dir = out / "front"
    shutil.rmtree(front_dir, ignore_errors=True)
    for sid in doc["front"]:
        shutil.copytree(by_id[sid]["bundle"], front_dir / sid)
        by_id[sid]["front_bundle"] = str(front_dir / sid)
    best_dir = out / "best"
    shutil.rmtree(best_dir, ignore_errors=True)
    if doc["best"]:
        shutil.copytree(by_id[doc["best"]]["bundle"], best_dir)
        doc["best_bundle"] = str(best_dir)
    picture(doc, out / "pareto.png")
    (out / "report.md").write_text(markdown(doc))
    (out / "sweep.json").write_text(json.dumps(doc, indent=2) + "\n")
