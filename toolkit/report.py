"""The run report: one JSON object (schema edgeopt.report/1) and its table rendering."""

from __future__ import annotations

import hashlib
import json

from rich.table import Table

from . import original

SCHEMA = "edgeopt.report/1"


def config_hash(config) -> str:
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]


def build_report(
    *, config, dense, pruned, quant, sparsity_onnx, bundle, host_parity, result, timings, splits: dict | None = None
) -> dict:
    evaluation, bench = result["eval"], result["bench"]
    prune_json = pruned.to_json()
    vs = original.verdict(
        p50_ms=bench["latency_ms"]["p50"], original=bench.get("original"), levers=original.levers_for(bundle.manifest)
    )
    return {
        "schema": SCHEMA,
        "config": json.loads(config.model_dump_json()),
        "config_hash": config_hash(config),
        "accuracy": {
            "dense": dense.accuracy,
            "pruned": pruned.accuracy_after,
            "final": quant.accuracy_quantized,  # the int8 ONNX model on the host (onnxruntime)
            "board": evaluation["accuracy"],  # the compiled bundle, measured by the board agent
            "test_samples": evaluation["samples"],
            # every accuracy above is on the test split; none of it was trained, fine-tuned or calibrated on
            "measured_on": (splits or {}).get("test"),
            "decisions_on": (splits or {}).get("val"),
            "trained_and_calibrated_on": (splits or {}).get("train"),
            # "top1": against the data's labels; "agreement_with_original": the data had none, the
            # original model's top-1 stood in (fidelity, not accuracy)
            "kind": "agreement_with_original" if (splits or {}).get("labels") else "top1",
        },
        "model_source": dense.source,
        "sparsity": {
            # recomputed from the weights stored in the final int8 ONNX model, over the original count
            "global": sparsity_onnx,
            "target": config.sparsity,
            "after_pruning": pruned.global_sparsity,
            "method": pruned.config.method.value,
            "definition": (
                "zero or removed weights of Linear/Conv layers over the original count (biases, norms excluded)"
            ),
            "layers": prune_json["layers"],
        },
        "params": prune_json["params"],
        "macs": prune_json["macs"],
        "quantization": {
            "path": quant.quant_path,
            "bits": quant.config.bits,
            "calibrator": quant.calibrator.value,
            "float_layers": quant.float_layers,
            "budget": quant.config.budget,
            "within_budget": quant.within_budget,
            "steps": quant.steps,
        },
        "bundle": {
            "bytes": bundle.bytes,
            "id": bundle.id,
            "library_sha256": bundle.library_sha256,
            "target": bundle.manifest["target"]["name"],
            "host_parity": host_parity.to_json() if host_parity else None,
            "tuning": bundle.manifest.get("tuning"),  # null: untuned (run --tune: measured on the board)
        },
        "board": {
            "kind": result["board_kind"],
            **bench["board"],
            "threads": bench["threads"],
            **_emulated(result),
            "loaded_library_sha256": evaluation["bundle"]["library_sha256"],
            "imports": evaluation["imports"],
        },
        "parity": evaluation.get("parity"),
        "latency_ms": {k: bench["latency_ms"][k] for k in ("p50", "p90", "p99", "mean", "std", "min", "max", "runs")},
        "load_ms": bench["load_ms"],
        "first_inference_ms": bench["first_ms"],
        "time_evaluator_median_ms": bench["time_evaluator_median_ms"],
        "peak_rss_mb": bench["agent"]["peak_rss_mb"],
        # the user's starting point: onnxruntime, original dense fp32 model, same board, same run
        "original": vs,
        "speedup_vs_original": vs["speedup_vs_original"],  # > 1: faster than where the user started
        "slower_than_original": vs["slower_than_original"],
        "timings_s": timings,
    }


def _emulated(result: dict) -> dict:
    if not result.get("emulated"):
        return {"emulated": False}
    from .boards.qemu.board import EMULATED_NOTE

    return {"emulated": True, "note": EMULATED_NOTE}


def render_table(report: dict) -> Table:
    acc, lat = report["accuracy"], report["latency_ms"]
    t = Table(title="edgeopt run", show_header=True, header_style="bold")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("", style="dim")
    if acc.get("kind") == "agreement_with_original":
        t.add_row("(no labels)", "", "each 'accuracy' is agreement with the original model's top-1, not accuracy")
    t.add_row(
        "accuracy dense", f"{acc['dense']:.4f}", f"torch; every accuracy on: {acc.get('measured_on') or 'test split'}"
    )
    t.add_row("accuracy pruned", f"{acc['pruned']:.4f}", "torch")
    t.add_row("accuracy int8", f"{acc['final']:.4f}", "onnxruntime on the host")
    t.add_row("accuracy on board", f"{acc['board']:.4f}", f"TVM bundle, {report['board']['kind']} board")
    t.add_row("sparsity", f"{report['sparsity']['global']:.4f}", "zero/removed prunable weights, from int8 ONNX")
    t.add_row(
        "params before -> after",
        f"{report['params']['before']:,} -> {report['params']['after']:,}",
        "non-zero prunable weights",
    )
    t.add_row(
        "MACs before -> after",
        f"{report['macs']['before']:,} -> {report['macs']['after']:,}",
        f"dense kernels; {report['macs']['after_nonzero']:,} on non-zeros",
    )
    t.add_row(
        "quantization",
        f"{report['quantization']['path']} int{report['quantization']['bits']}",
        report["quantization"]["calibrator"],
    )
    t.add_row("bundle bytes", f"{report['bundle']['bytes']:,}", report["bundle"]["target"])
    t.add_row(
        "latency p50 / p90 / p99",
        f"{lat['p50']:.4f} / {lat['p90']:.4f} / {lat['p99']:.4f} ms",
        f"{lat['runs']} runs, {report['board']['threads']} threads, {report['board']['arch']}",
    )
    vs = report.get("original")
    if vs is not None:
        if not vs.get("available"):
            t.add_row("vs original (onnxruntime fp32)", "unavailable", vs.get("reason"))
        else:
            t.add_row(
                "vs original (onnxruntime fp32)",
                f"[bold red]{vs['speedup_vs_original']:.2f}x SLOWER[/bold red]"
                if vs["slower_than_original"]
                else f"{vs['speedup_vs_original']:.2f}x faster",
                f"original p50 {vs['p50_ms']:.4f} ms"
                + (f"; lever: {vs['lever']}" if vs["slower_than_original"] else ""),
            )
    if report["board"].get("emulated"):
        t.add_row("latency is EMULATED", "not a hardware number", report["board"]["note"])
    if report.get("parity"):
        p = report["parity"]
        t.add_row(
            "board vs host int8", f"max|diff| {p['max_abs_diff']:.2g}", f"top-1 agreement {p['top1_agreement']:.4f}"
        )
    return t


def render_prune_table(doc: dict) -> Table:
    t = Table(title=f"edgeopt prune ({doc['config']['method']}, {doc['config']['schedule']})", header_style="bold")
    for col, just in (
        ("layer", "left"),
        ("kind", "left"),
        ("shape before -> after", "left"),
        ("params before -> after", "right"),
        ("sparsity", "right"),
        ("MACs before -> after", "right"),
    ):
        t.add_column(col, justify=just)
    for layer in doc["layers"]:
        t.add_row(
            layer["name"],
            layer["kind"],
            f"{tuple(layer['shape_before'])} -> {tuple(layer['shape_after'])}",
            f"{layer['params_before']:,} -> {layer['params_after']:,}",
            f"{layer['sparsity']:.3f}",
            f"{layer['macs_before']:,} -> {layer['macs_after']:,}",
        )
    t.add_row(
        "total",
        "",
        "",
        f"{doc['params']['before']:,} -> {doc['params']['after']:,}",
        f"{doc['sparsity']['global']:.3f}",
        f"{doc['macs']['before']:,} -> {doc['macs']['after']:,}",
        style="bold",
    )
    acc = doc["accuracy"]
    t.caption = (
        f"accuracy {acc['before']:.4f} -> {acc['after']:.4f} (drop {acc['drop']:+.4f}); "
        "sparsity = zero or removed Linear/Conv weights; MACs as dense kernels run them"
    )
    return t
