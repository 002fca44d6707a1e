"""The board part of a trial: the setting's bundle and the original model's bundle measured side
by side on one board (one plan of the agent's `bench` verb: the TVM builds interleaved in one
agent process, onnxruntime in the next). Run as a Ray task that holds the board's custom
resource, so one measurement at a time uses a board; a trial measures on all its boards at once
(each task holds its own board)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .spec import SweepSpec


def measure(board: str, *, bundle: Path, original: Path, eval_npz: Path, spec: SweepSpec) -> dict:
    """p50/p90 of the setting (TVM) and of the original model (onnxruntime: the user's starting
    point; TVM too), accuracy on the board, and the speedup."""
    from edgeopt.compile import Bundle

    from ..bench.runner import BenchOptions, bench_board, host_inputs
    from ..bench.variants import Variant

    opts = BenchOptions(runs=spec.runs, warmup=spec.warmup, rounds=spec.rounds, profile_runs=0, baseline="ort")
    opts.validate()
    variants = [Variant("setting", Bundle.load(bundle)), Variant("original", Bundle.load(original))]
    with tempfile.TemporaryDirectory(prefix="edgeopt-sweep-") as tmp:
        inputs = host_inputs(variants, eval_npz, Path(tmp))
        doc = bench_board(board, variants, inputs, opts)
    s, o = doc["results"]["setting"], doc["results"]["original"]
    p50 = s["tvm"]["latency_ms"]["p50"]
    original_ort = (o.get("ort") or {}).get("latency_ms", {}).get("p50")
    original_tvm = o["tvm"]["latency_ms"]["p50"]
    return {
        "board": board,
        "kind": doc["kind"],
        "emulated": doc["emulated"],
        "p50_ms": p50,
        "p90_ms": s["tvm"]["latency_ms"]["p90"],
        "accuracy": s["tvm"].get("accuracy"),
        "original_ort_p50_ms": original_ort,
        "original_tvm_p50_ms": original_tvm,
        # over the original model as the user runs it today: onnxruntime, fp32, same board, same run
        "speedup": (original_ort / p50) if original_ort and p50 else None,
        "speedup_over_original_tvm": original_tvm / p50 if p50 else None,
    }
