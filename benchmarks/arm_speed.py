"""An Arm speed figure without Arm hardware: guest instructions executed per inference on
emulated Arm cores (QEMU user mode + our TCG plugin, toolkit/qemu/count.py), per model x target
x engine: onnxruntime's aarch64 build fp32 and int8 (QDQ), TVM fp32 untuned, TVM int8 fused.

    python benchmarks/arm_speed.py [--models mlp cnn resnet mobilenetv2] [--targets cortex-a76 ...]

Writes benchmarks/results/arm_speed.json and prints the markdown table for docs/benchmarks.md.
Instruction counts are measured on an emulator: NOT hardware numbers, and not times (see
docs/benchmarks.md, "Arm: instructions per inference"). A benchmark, not a test: asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeopt.compile import compile_onnx, get_target  # noqa: E402
from edgeopt.toolkit.qemu.build import require_image  # noqa: E402
from edgeopt.toolkit.qemu.count import Engine, count  # noqa: E402
from edgeopt.toolkit.qemu.user import TARGET_CPU  # noqa: E402
from tests.e2e.arm_models import make  # noqa: E402

ENGINES = ("onnxruntime fp32", "onnxruntime int8", "tvm fp32", "tvm int8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mlp", "cnn", "resnet", "mobilenetv2"])
    ap.add_argument("--targets", nargs="+", default=["cortex-a55", "cortex-a72", "cortex-a76"])
    ap.add_argument("--pruned", action="store_true", help="also the 70%% structurally pruned + int8 cnn")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "arm_speed.json")
    args = ap.parse_args()
    rootfs = require_image().rootfs
    tmp = Path(tempfile.mkdtemp(prefix="edgeopt-arm-speed-"))
    rows = []
    models = {name: make(name, tmp / name) for name in args.models}
    if args.pruned:
        models["cnn-pruned70"] = _pruned_cnn(tmp / "cnn-pruned70")
    for name, m in models.items():
        for target in args.targets:
            cpu = TARGET_CPU[target]
            bundles = {k: compile_onnx(m[k], target=get_target(target), out_dir=tmp / name / f"tvm-{k}-{target}")[0]
                       for k in ("fp32", "int8")}
            runs = {"onnxruntime fp32": (Engine.ort, m["fp32"]), "onnxruntime int8": (Engine.ort, m["int8"]),
                    "tvm fp32": (Engine.tvm, bundles["fp32"].path / "model.so"),
                    "tvm int8": (Engine.tvm, bundles["int8"].path / "model.so")}
            counts = {e: count(rootfs=rootfs, cpu=cpu, engine=eng, model=p, x=m["x"][:1]).per_inference
                      for e, (eng, p) in runs.items()}
            kernels = json.loads((bundles["int8"].path / "manifest.json").read_text())["arithmetic"]["int8_ops"]["kernels"]
            row = {"model": name, "target": target, "emulated_core": cpu, "tvm_int8_kernels": kernels,
                   "instructions_per_inference": counts,
                   "ratio_to_onnxruntime_fp32": {e: counts[e] / counts["onnxruntime fp32"] for e in ENGINES}}
            rows.append(row)
            print(json.dumps(row), flush=True)
            _write(args.out, rows, models)
    doc = _write(args.out, rows, models)
    print(table(doc))


def _write(out: Path, rows: list, models: dict) -> dict:
    """The results so far (written after every row, so a long run leaves what it measured)."""
    doc = {"what": "guest instructions per inference on QEMU-emulated Arm cores (user mode, TCG plugin); "
                   "NOT hardware numbers and not times",
           "qemu": "7.2 (Debian qemu-user)", "host": platform.platform(), "threads": 1, "rows": rows}
    if any(r["model"] == "cnn-pruned70" for r in rows) and "cnn" in models:
        doc["pruned_cnn_int8_vs_dense_ort_fp32"] = {
            r["target"]: r["instructions_per_inference"]["tvm int8"] / next(
                d["instructions_per_inference"]["onnxruntime fp32"] for d in rows if d["model"] == "cnn" and d["target"] == r["target"])
            for r in rows if r["model"] == "cnn-pruned70"}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def _pruned_cnn(out: Path) -> dict:
    """The built-in cnn trained on the digits, 70% structurally pruned, then PTQ'd like the rest."""
    from edgeopt.toolkit.data import load_digits
    from edgeopt.toolkit.inputs import train_builtin
    from edgeopt.toolkit.prune import Method, PruneConfig, prune

    data = load_digits()
    dense = train_builtin("cnn", data, seed=0)
    pruned = prune(dense, data, config=PruneConfig(target=0.70, method=Method.structured))
    return make("cnn", out, module=pruned.model.module if hasattr(pruned.model, "module") else pruned.model)


def table(doc: dict) -> str:
    head = "| model | target (emulated core) | TVM int8 kernels | " + " | ".join(ENGINES) + " |"
    lines = [head, "|" + " --- |" * (3 + len(ENGINES))]
    for r in doc["rows"]:
        c, q = r["instructions_per_inference"], r["ratio_to_onnxruntime_fp32"]
        lines.append(f"| {r['model']} | {r['target']} ({r['emulated_core']}) | {r['tvm_int8_kernels']} | "
                     + " | ".join(f"{c[e] / 1e3:,.0f}k ({q[e]:.2f}x)" for e in ENGINES) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
