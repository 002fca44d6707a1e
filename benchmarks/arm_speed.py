"""An Arm speed figure without Arm hardware: guest instructions executed per inference on
emulated Arm cores (QEMU user mode + our TCG plugin, toolkit/boards/qemu/count.py), per model x target
x engine: onnxruntime's aarch64 build fp32 and int8 (QDQ), TVM fp32 untuned, TVM int8 fused.

    python benchmarks/arm_speed.py [--models mlp cnn resnet mobilenetv2] [--targets cortex-a76 ...] [--no-pruned]

Writes benchmarks/results/arm_speed.json and prints the markdown table for docs/benchmarks.md.
Instruction counts are measured on an emulator: NOT hardware numbers, and not times (see
docs/benchmarks.md, "Arm: instructions per inference"). A benchmark, not a test: asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeopt.compile import compile_onnx, get_target  # noqa: E402
from edgeopt.toolkit.boards.qemu.build import require_image  # noqa: E402
from edgeopt.toolkit.boards.qemu.count import Engine, count  # noqa: E402
from edgeopt.toolkit.boards.qemu.user import TARGET_CPU  # noqa: E402

from tests.e2e.arm_models import make  # noqa: E402

ENGINES = ("onnxruntime fp32", "onnxruntime int8", "tvm fp32", "tvm int8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mlp", "cnn", "resnet", "mobilenetv2"])
    ap.add_argument("--targets", nargs="+", default=["cortex-a55", "cortex-a72", "cortex-a76"])
    ap.add_argument(
        "--no-pruned",
        dest="pruned",
        action="store_false",
        help="leave out the 70%% structurally pruned + int8 cnn (measured by default)",
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "arm_speed.json")
    ap.add_argument(
        "--markdown",
        type=Path,
        default=Path(__file__).parents[1] / "docs" / "benchmarks.md",
        help="the file whose Arm section (from its marker on) is rewritten",
    )
    ap.add_argument("--docs-only", action="store_true", help="rewrite the docs section from --out, measure nothing")
    args = ap.parse_args()
    if args.docs_only:
        doc = json.loads(args.out.read_text())
        _docs(args.markdown, markdown(doc, doc.get("argv", [])))
        return
    rootfs = require_image().rootfs
    tmp = Path(tempfile.mkdtemp(prefix="edgeopt-arm-speed-"))
    rows = []
    models = {name: make(name, tmp / name) for name in args.models}
    if args.pruned:
        models["cnn-pruned70"] = _pruned_cnn(tmp / "cnn-pruned70")
    for name, m in models.items():
        for target in args.targets:
            cpu = TARGET_CPU[target]
            bundles = {
                k: compile_onnx(m[k], target=get_target(target), out_dir=tmp / name / f"tvm-{k}-{target}")[0]
                for k in ("fp32", "int8")
            }
            runs = {
                "onnxruntime fp32": (Engine.ort, m["fp32"]),
                "onnxruntime int8": (Engine.ort, m["int8"]),
                "tvm fp32": (Engine.tvm, bundles["fp32"].path / "model.so"),
                "tvm int8": (Engine.tvm, bundles["int8"].path / "model.so"),
            }
            counts = {
                e: count(rootfs=rootfs, cpu=cpu, engine=eng, model=p, x=m["x"][:1]).per_inference
                for e, (eng, p) in runs.items()
            }
            kernels = json.loads((bundles["int8"].path / "manifest.json").read_text())["arithmetic"]["int8_ops"][
                "kernels"
            ]
            row = {
                "model": name,
                "target": target,
                "emulated_core": cpu,
                "tvm_int8_kernels": kernels,
                "instructions_per_inference": counts,
                "ratio_to_onnxruntime_fp32": {e: counts[e] / counts["onnxruntime fp32"] for e in ENGINES},
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            _write(args.out, rows, models)
    doc = _write(args.out, rows, models)
    section = markdown(doc, sys.argv[1:])
    _docs(args.markdown, section)
    print(section)


def _docs(path: Path, section: str) -> None:
    old = path.read_text() if path.is_file() else ""
    path.write_text((old[: old.index(MARK)] if MARK in old else old.rstrip() + "\n\n") + section)


def _write(out: Path, rows: list, models: dict) -> dict:
    """The results so far (written after every row, so a long run leaves what it measured)."""
    doc = {
        "what": "guest instructions per inference on QEMU-emulated Arm cores (user mode, TCG plugin); "
        "NOT hardware numbers and not times",
        "qemu": "7.2 (Debian qemu-user)",
        "host": platform.platform(),
        "host_cpu": _host_cpu(),
        "host_cores": os.cpu_count(),
        "threads": 1,
        "argv": sys.argv[1:],
        "rows": rows,
    }
    if any(r["model"] == "cnn-pruned70" for r in rows) and "cnn" in models:
        doc["pruned_cnn_int8_vs_dense_ort_fp32"] = {
            r["target"]: r["instructions_per_inference"]["tvm int8"]
            / next(
                d["instructions_per_inference"]["onnxruntime fp32"]
                for d in rows
                if d["model"] == "cnn" and d["target"] == r["target"]
            )
            for r in rows
            if r["model"] == "cnn-pruned70"
        }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def _host_cpu() -> str:
    try:
        return next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        return platform.processor() or "?"


def _pruned_cnn(out: Path) -> dict:
    """The built-in cnn trained on the digits, 70% structurally pruned, then PTQ'd like the rest."""
    from edgeopt.toolkit.data import load_digits
    from edgeopt.toolkit.inputs import train_builtin
    from edgeopt.toolkit.prune import Method, PruneConfig, prune

    data = load_digits()
    dense = train_builtin("cnn", data, seed=0)
    pruned = prune(dense, data, config=PruneConfig(target=0.70, method=Method.structured))
    return make("cnn", out, module=pruned.model.module if hasattr(pruned.model, "module") else pruned.model)


MARK = "<!-- arm_speed -->"  # the section runs from here to the end of docs/benchmarks.md


def markdown(doc: dict, argv: list[str]) -> str:
    pruned = doc.get("pruned_cnn_int8_vs_dense_ort_fp32") or {}
    return (
        "\n".join(
            [
                MARK,
                "# Arm: instructions per inference on emulated cores",
                "",
                f"Written by `{' '.join(['python benchmarks/arm_speed.py', *argv])}` (results: "
                "benchmarks/results/arm_speed.json),",
                f"on {doc.get('host_cpu', '?')} ({doc.get('host_cores', '?')} cores, shared with other jobs; "
                "an x86 host:",
                "no Arm hardware was used). The host's load changes how long a run takes, never its counts.",
                "",
                "**These are not hardware numbers, and not times.** Each figure is the number of Arm instructions the",
                "program executed per inference on a QEMU-emulated core (QEMU 7.2 user mode, TCG plugin",
                "toolkit/boards/qemu/insn_count.c: every executed translated block adds its instruction "
                "count; the guest",
                "marks the start and end of the timed runs), for the same model, the same input, the same core, one",
                "thread. `cortex-a55` runs on the emulated A76 (QEMU 7.2 has no A55; the A76 has the same dot-product",
                "instructions, so the count is the A55 build's but on a different micro-architecture). Engines:",
                "onnxruntime's aarch64 build (1.32, full graph optimization; its MLAS has its own `sdot`/NEON int8",
                "kernels) on the fp32 and QDQ int8 ONNX, TVM fp32 untuned, TVM int8 with the fused layers",
                "(docs/targets.md). The counted call is each engine's leanest from Python: TVM's `main(tensor)` with",
                "the input placed once and the output left in TVM's host memory (the call the board agent times),",
                "onnxruntime's `run_with_iobinding` with the input bound once and the output preallocated; copying",
                "outputs to numpy is outside the count. Each engine's fixed per-call work stays in: a trivial one-op",
                "model counts ~11k instructions per call with TVM and ~27k with onnxruntime on cortex-a72. Nothing is",
                "subtracted. Ratios are to onnxruntime fp32 on the same row.",
                "",
                "What a count does not say: an instruction's cost (an `sdot` doing 16 multiply-adds counts one, like",
                "an add), cache misses, memory bandwidth, out-of-order overlap, SIMD width effects. It is a fair",
                "measure of work between builds of the same model on the same core, and deterministic (the same",
                "binary, input and core give the same count), which an emulated wall time is not. The models have",
                "random weights and inputs (neither engine's work depends on the values), except the pruned `cnn`,",
                "trained on the digits and pruned by `edgeopt prune`.",
                "",
                table(doc),
                "",
                "TVM int8 against the other engines on the same row (the issue's acceptance: <= 1.0x onnxruntime int8,",
                "<= 0.5x TVM fp32 on the dot-product cores; <= 1.0x onnxruntime int8 on cortex-a72):",
                "",
                ratios(doc),
                "",
                *(
                    [
                        "70% structurally pruned + int8 `cnn` (TVM) vs onnxruntime fp32 on the dense `cnn`: "
                        + ", ".join(f"{t} {v:.2f}x" for t, v in pruned.items()),
                        "",
                    ]
                    if pruned
                    else []
                ),
                "Where a small model's instructions go (measured with a per-translated-block profile of the same",
                "counted window on cortex-a72): in the pruned `cnn` (134k), the first convolution 58k (1 input",
                "channel: the folded 5-tap rows are padded to 8), the second 29k, the dense layers 9k, TVM's VM and",
                "allocator ~16k, Python ~8k. An earlier harness also counted TVM's `.numpy()` copy of the output",
                "(~50k instructions per call through tvm_ffi), which the board agent does not time: it is now",
                "outside the window, for both engines alike (onnxruntime is counted through IOBinding).",
                "",
                "Limits: QEMU's instruction count is exact for what the emulated core executes, but it is one",
                "core model per row, one thread, one input; the A55 row runs the A55 build on the emulated A76;",
                "a number here says which build does less work on that core, not how many milliseconds it takes.",
            ]
        )
        + "\n"
    )


def ratios(doc: dict) -> str:
    lines = ["| model | target | TVM int8 / onnxruntime int8 | TVM int8 / TVM fp32 |", "| --- | --- | --- | --- |"]
    for r in doc["rows"]:
        c = r["instructions_per_inference"]
        lines.append(
            f"| {r['model']} | {r['target']} | {c['tvm int8'] / c['onnxruntime int8']:.2f}x | "
            f"{c['tvm int8'] / c['tvm fp32']:.2f}x |"
        )
    return "\n".join(lines)


def table(doc: dict) -> str:
    head = "| model | target (emulated core) | TVM int8 kernels | " + " | ".join(ENGINES) + " |"
    lines = [head, "|" + " --- |" * (3 + len(ENGINES))]
    for r in doc["rows"]:
        c, q = r["instructions_per_inference"], r["ratio_to_onnxruntime_fp32"]
        lines.append(
            f"| {r['model']} | {r['target']} ({r['emulated_core']}) | {r['tvm_int8_kernels']} | "
            + " | ".join(f"{c[e] / 1e3:,.0f}k ({q[e]:.2f}x)" for e in ENGINES)
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
