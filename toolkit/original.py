"""The user's starting point: onnxruntime running the ORIGINAL dense fp32 model on the same board,
in the same run, as the bundle. Every report with a latency carries it, the speed-up over it
(`speedup_vs_original`, > 1 is faster) and, when the bundle is slower, the lever that would fix it.

The original model's ONNX travels inside the bundle as `original.onnx` (listed and hashed in the
manifest like every other file, described by its `original` block), so `edgeopt bench BUNDLE`
measures it later as well as `edgeopt run` does now."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgeopt.compile import Bundle

FILE = "original.onnx"  # the board agent's board/agent/baseline.py ORIGINAL names the same file


def attach(bundle: Bundle, onnx_path: Path, *, source: str) -> Bundle:
    """Copy the original dense fp32 ONNX into the bundle and re-hash the manifest."""
    import hashlib

    shutil.copyfile(onnx_path, bundle.path / FILE)
    manifest = {k: v for k, v in bundle.manifest.items() if k not in ("schema", "files")}
    manifest["original"] = {
        "file": FILE,
        "precision": "fp32",
        "dense": True,
        "engine": "onnxruntime",
        "source": source,
        "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
    }
    return Bundle.write(bundle.path, manifest)


@dataclass(frozen=True)
class Lever:
    """One thing that would make the bundle faster, and when it applies (from the manifest)."""

    name: str
    text: str
    applies: Callable[[dict], bool]


def _untuned(m: dict) -> bool:
    return not m.get("tuning")


def _unstructured(m: dict) -> bool:
    s = m.get("sparsity") or {}
    return s.get("method") == "magnitude" and (s.get("global") or 0) > 0


def _int8_without_kernels(m: dict) -> bool:
    ops = (m.get("arithmetic") or {}).get("int8_ops")
    quantized = (m.get("source") or {}).get("quantization") is not None or (m.get("variant") or {}).get(
        "precision"
    ) == "int8"
    return quantized and (ops is None or not ops.get("kernels"))


def _fp32(m: dict) -> bool:
    ops = (m.get("arithmetic") or {}).get("int8_ops")
    quantized = (m.get("source") or {}).get("quantization") is not None or (m.get("variant") or {}).get(
        "precision"
    ) == "int8"
    return not quantized and ops is None


# in the order a user should try them: cheapest first
LEVERS = (
    Lever("tune", "tune the bundle: --tune-trials N (MetaSchedule; TVM's default schedules are untuned)", _untuned),
    Lever(
        "structured_pruning",
        "prune structured (--fast, or --method structured): unstructured zeros buy no speed on a "
        "target with dense kernels, removed filters do",
        _unstructured,
    ),
    Lever(
        "int8_kernels",
        "int8 kernels for the target: this int8 bundle runs its convolutions/matmuls without "
        "the fused integer kernels (compile/kernels has none for this ISA)",
        _int8_without_kernels,
    ),
    Lever("int8", "quantize to int8 (the run's default path): fp32 TVM kernels rarely beat onnxruntime's", _fp32),
)


def levers_for(manifest: dict) -> list[dict]:
    return [{"name": lv.name, "text": lv.text} for lv in LEVERS if lv.applies(manifest)]


def verdict(*, p50_ms: float | None, original: dict | None, levers: list[dict]) -> dict:
    """The report's `vs_original` block. `original` is the agent's measurement of original.onnx
    ({"available": True, "latency_ms": {"p50": ...}, ...} or {"available": False, "reason": ...}),
    or None when nothing was measured; no number is invented when it is missing. `levers`: from
    levers_for(the bundle's manifest)."""
    if original is None:
        return {
            "available": False,
            "reason": f"the bundle carries no {FILE} (built by `edgeopt compile`, or before "
            "edgeopt shipped it): nothing to compare against",
            "speedup_vs_original": None,
            "slower_than_original": None,
        }
    if not original.get("available"):
        return {
            "available": False,
            "reason": original.get("reason") or "not measured",
            "speedup_vs_original": None,
            "slower_than_original": None,
        }
    orig_p50 = original["latency_ms"]["p50"]
    speedup = orig_p50 / p50_ms if p50_ms else None
    slower = speedup is not None and speedup < 1.0
    levers = levers if slower else []
    return {
        "available": True,
        "engine": original.get("engine", "onnxruntime"),
        "version": original.get("version"),
        "model": FILE,
        "p50_ms": orig_p50,
        "speedup_vs_original": speedup,
        "slower_than_original": slower,
        "lever": (
            levers[0]["text"] if levers else "none of edgeopt's levers applies: report it with the model attached"
        )
        if slower
        else None,
        "levers": levers,
    }


def describe(v: dict) -> str:
    """One line for a table."""
    if not v.get("available"):
        return f"unavailable: {v.get('reason')}"
    s = f"{v['speedup_vs_original']:.2f}x vs onnxruntime fp32 dense ({v['p50_ms']:.4f} ms)"
    return f"SLOWER THAN THE ORIGINAL, {s}; lever: {v['lever']}" if v["slower_than_original"] else s
