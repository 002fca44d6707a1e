"""Latency of the same models under torch eager, onnxruntime (fp32, int8) and our TVM bundles
(fp32, int8; untuned and tuned), one run, 1 thread everywhere, interleaved rounds, medians.

    python benchmarks/compile_speed.py [--trials 64] [--rounds 5] [--models mlp cnn resnet] [--out results.json]

Random weights for `resnet` on 3x32x32 (latency only); `mlp` and `cnn` are trained on digits.
A benchmark, not a test: it prints ratios to onnxruntime fp32 and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ["TVM_NUM_THREADS"] = "1"  # before the TVM runtime starts its pool
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from edgeopt.compile import compile_onnx, get_target  # noqa: E402
from edgeopt.compile.timing import HostTimer  # noqa: E402
from edgeopt.toolkit.data import load_digits  # noqa: E402
from edgeopt.toolkit.export import export_onnx  # noqa: E402
from edgeopt.toolkit.inputs import train_builtin  # noqa: E402
from edgeopt.toolkit.models import InputSpec, Model, build_model  # noqa: E402
from edgeopt.toolkit.quantize import ort_ptq  # noqa: E402
from edgeopt.toolkit.quantize.config import Calibrator  # noqa: E402


def _time(fn, min_ms: float = 200.0) -> float:
    """Median per-call ms over batches lasting at least `min_ms`."""
    for _ in range(10):
        fn()
    n, per = 1, []
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        if (time.perf_counter() - t) * 1e3 >= min_ms / 5:
            break
        n *= 2
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        per.append((time.perf_counter() - t) * 1e3 / n)
    return statistics.median(per)


def runners(model: Model, calib: np.ndarray, work: Path, trials: int, *, only_tvm_int8_tuned: bool = False) -> dict:
    import onnxruntime as ort

    x = np.random.default_rng(0).random(model.spec.shape, dtype=np.float32)
    fp32 = export_onnx(model, work / "fp32.onnx")
    pre = ort_ptq.preprocess(fp32, work / "pre.onnx")
    int8 = ort_ptq.quantize(
        pre, work / "int8.onnx", input_name="input", calib=calib, calibrator=Calibrator.minmax, bits=8
    )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    out = {}
    if only_tvm_int8_tuned:
        bundle, _ = compile_onnx(int8, target=get_target("host"), out_dir=work / "tvm_int8_tuned", tune_trials=trials)
        timer = HostTimer(bundle.path / "model.so", model.spec.shape)
        return {
            "tvm int8 tuned": timer.run,
            "tvm int8 tuned (bytes)": bundle.bytes,
            "tvm int8 tuned (weights)": sum(bundle.manifest["arithmetic"]["weight_bytes"].values()),
        }
    torch.set_num_threads(1)
    module = model.module.eval()
    xt = torch.from_numpy(x)

    def eager():
        with torch.no_grad():
            module(xt)

    out["torch eager"] = eager
    for name, path in (("ort fp32", fp32), ("ort int8", int8)):
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        # its fastest Python path: input and output bound once (IOBinding), like TVM's preallocated input
        binding = sess.io_binding()
        binding.bind_cpu_input("input", x)
        y = np.empty([d if isinstance(d, int) else 1 for d in sess.get_outputs()[0].shape], np.float32)
        binding.bind_output(sess.get_outputs()[0].name, "cpu", 0, np.float32, list(y.shape), y.ctypes.data)
        out[name] = lambda s=sess, b=binding, keep=y: s.run_with_iobinding(b)
    for precision, path in (("fp32", fp32), ("int8", int8)):
        for tuned in (False, True):
            label = f"tvm {precision}" + (" tuned" if tuned else "")
            bundle, _ = compile_onnx(
                path,
                target=get_target("host"),
                out_dir=work / label.replace(" ", "_"),
                tune_trials=trials if tuned else 0,
            )
            timer = HostTimer(bundle.path / "model.so", model.spec.shape)
            out[label] = timer.run
            out[label + " (bytes)"] = bundle.bytes
            out[label + " (weights)"] = sum(bundle.manifest["arithmetic"]["weight_bytes"].values())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=["mlp", "cnn", "resnet"])
    ap.add_argument("--no-pruned", action="store_true", help="skip the structurally pruned cnn (70%%, int8, tuned)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--markdown", type=Path, help="also write the tables as markdown (docs/benchmarks.md)")
    args = ap.parse_args()
    data = load_digits()
    results = {}
    for name in args.models:
        work = Path(tempfile.mkdtemp(prefix=f"edgeopt-speed-{name}-"))
        if name == "resnet":
            torch.manual_seed(0)
            model = Model(
                build_model("resnet", num_classes=10, input_shape=(1, 3, 32, 32)).eval(),
                InputSpec("input", (1, 3, 32, 32)),
            )
            calib = np.random.default_rng(1).random((64, 3, 32, 32), dtype=np.float32)
        else:
            model = train_builtin(name, data, epochs=10)
            calib = data.calibration(64)
        fns = runners(model, calib, work, args.trials)
        if name == "cnn" and not args.no_pruned:
            # the product's recipe: structured 70%, gradual + distillation, then int8 + tuned
            from edgeopt.toolkit.prune import Method, PruneConfig, Schedule, prune

            pruned = prune(
                model,
                data,
                config=PruneConfig(target=0.70, method=Method.structured, schedule=Schedule.gradual, distill=True),
            )
            extra = runners(pruned.model, calib, work / "pruned", args.trials, only_tvm_int8_tuned=True)
            fns.update({k.replace("tvm", "pruned-70% tvm", 1): v for k, v in extra.items()})
        sizes = {k[:-8]: v for k, v in fns.items() if k.endswith(" (bytes)")}
        weights = {k[:-10]: v for k, v in fns.items() if k.endswith(" (weights)")}
        fns = {k: v for k, v in fns.items() if not k.endswith(")")}
        samples = {k: [] for k in fns}
        for _ in range(args.rounds):  # interleaved: every variant once per round
            for k, fn in fns.items():
                samples[k].append(_time(fn))
        med = {k: statistics.median(v) for k, v in samples.items()}
        ref = med["ort fp32"]
        results[name] = {
            "median_ms": med,
            "ratio_to_ort_fp32": {k: v / ref for k, v in med.items()},
            "bundle_bytes": sizes,
            "weight_bytes": weights,
        }
        print(f"\n{name}  (ms, 1 thread; ratio to onnxruntime fp32; bundle bytes; weight bytes)")
        for k, v in med.items():
            print(
                f"  {k:<24} {v:9.4f}  {v / ref:6.2f}x" + (f"  {sizes[k]:>9,}  {weights[k]:>9,}" if k in sizes else "")
            )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        # keep the Arm section benchmarks/arm_speed.py writes below its marker
        old = args.markdown.read_text() if args.markdown.is_file() else ""
        arm = old[old.index(ARM_MARK) :] if ARM_MARK in old else ""
        args.markdown.write_text(markdown(results, args) + ("\n" + arm if arm else ""))


def _machine() -> str:
    import platform

    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.machine(),
    )
    flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    vnni = "avx512_vnni" in flags
    from edgeopt.compile.kernels import for_target

    isa = for_target(get_target("host"))
    return (
        f"{cpu}, {os.cpu_count()} cores, {'AVX512-VNNI' if vnni else 'no AVX512-VNNI'}, "
        f"int8 kernels `{isa and isa.name}`, Python {platform.python_version()}"
    )


ARM_MARK = "<!-- arm_speed -->"


def markdown(results: dict, args) -> str:
    from importlib.metadata import version

    lines = [
        "# Compile speed: TVM bundles vs onnxruntime and torch",
        "",
        "Written by `python benchmarks/compile_speed.py --trials {t} --rounds {r} --markdown "
        "docs/benchmarks.md`".format(t=args.trials, r=args.rounds),
        f"on {_machine()}; TVM {version('apache-tvm')}, onnxruntime {version('onnxruntime')}, torch "
        f"{version('torch')}.",
        "One run, 1 thread everywhere, every variant once per round (interleaved), medians of the rounds.",
        "Every engine is called from Python the fastest way it offers: onnxruntime with full graph",
        "optimization, 1 intra-op thread, input and output bound once (IOBinding); TVM's VM function looked",
        "up once, input preallocated. `tvm int8` runs fused integer layers (compile/int8.py: conv/matmul +",
        "bias + requantize in one kernel, activations uint8 channels-last between layers) on the CPU's",
        "dot-product kernels (`vnni`: vpdpbusd, `avx2`: vpmaddwd; docs/targets.md). Tuned = MetaSchedule",
        f"with {args.trials} trials shared by each model's tasks; int8 and fp32 get the same budget.",
        "`resnet` has random weights and inputs (latency only). Ratios < 1 are faster than onnxruntime fp32.",
        "",
    ]
    for name, r in results.items():
        lines += [
            f"## {name}",
            "",
            "| variant | median ms | x onnxruntime fp32 | bundle bytes | weight bytes |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for k, v in r["median_ms"].items():
            b, w = r["bundle_bytes"].get(k), r["weight_bytes"].get(k)
            lines.append(
                f"| {k} | {v:.4f} | {r['ratio_to_ort_fp32'][k]:.2f} | {'' if b is None else f'{b:,}'} | "
                f"{'' if w is None else f'{w:,}'} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
