"""ONNX -> Relax -> the "zero" pipeline -> a shared library, checked against onnxruntime."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt.errors import CompileError, EdgeoptError, InputError, UnsupportedModelError, UsageError

from .bundle import LIBRARY, Bundle
from .int8 import constant_bytes, lower_qdq_to_int8
from .targets import Target

# Domains whose operators TVM's ONNX importer knows (it has no contrib ops, no QLinear* ops).
_ONNX_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    tolerance: float
    samples: int

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def load_onnx(path: Path):
    import onnx

    if not path.is_file():
        raise InputError(f"ONNX model not found: {path}")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, ValidationError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path} is not a valid ONNX model: {first}", hint="re-export it") from exc
    return model


def graph_input_shapes(model, *, overrides: dict[str, list[int]] | None = None) -> dict[str, list[int]]:
    """Static input shapes (`overrides` win); a symbolic dimension is an error naming the input."""
    inits = {i.name for i in model.graph.initializer}
    overrides = dict(overrides or {})
    shapes = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        if inp.name in overrides:
            shapes[inp.name] = list(overrides.pop(inp.name))
            continue
        dims = inp.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims):
            shown = ",".join(d.dim_param or "?" if not d.HasField("dim_value") else str(d.dim_value) for d in dims)
            raise UnsupportedModelError(
                f"input {inp.name!r} has a symbolic shape ({shown})",
                hint=f"fix it with --input-shape {inp.name}=1,...",
            )
        shapes[inp.name] = [d.dim_value for d in dims]
    if overrides:
        raise UnsupportedModelError(f"--input-shape names no model input: {', '.join(overrides)}",
                                    hint=f"inputs: {', '.join(shapes)}")
    return shapes


def unsupported_ops(model) -> list[str]:
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    known = _get_convert_map()
    missing = sorted(
        {
            f"{n.domain or 'ai.onnx'}::{n.op_type}"
            for n in model.graph.node
            if n.domain not in _ONNX_DOMAINS or n.op_type not in known
        }
    )
    return missing


FLOAT_TOLERANCE = 1e-4


def output_quant_step(model) -> float | None:
    """The quantization step of the first output if it leaves through DequantizeLinear: an int8
    model's outputs are multiples of it, so two correct int8 engines may differ by one step where
    a value sits on a rounding boundary."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    node = producers.get(model.graph.output[0].name)
    if node is None or node.op_type != "DequantizeLinear" or node.input[1] not in inits:
        return None
    scale = numpy_helper.to_array(inits[node.input[1]])
    return float(scale.max())


def default_tolerance(model) -> float:
    step = output_quant_step(model)
    return FLOAT_TOLERANCE if step is None else max(FLOAT_TOLERANCE, 1.001 * step)


def _vm_runner(lib_path: Path):
    import tvm
    from tvm import runtime
    from tvm.runtime import vm as tvm_vm

    lib = runtime.load_module(str(lib_path))
    vm = tvm_vm.VirtualMachine(lib, tvm.cpu())

    def run(x: np.ndarray) -> np.ndarray:
        out = vm["main"](runtime.tensor(x, tvm.cpu()))
        return (out[0] if isinstance(out, (list, tuple)) or not hasattr(out, "numpy") else out).numpy()

    return run


# "compiled": the VM's instruction stream becomes native code; the bytecode interpreter costs
# ~0.1 us per call, a tenth of a small int8 model's time.
EXEC_MODE = "compiled"


def _whole_model_us(executables: list, shapes: dict) -> list[float]:
    """Median microseconds per inference of each executable on this machine, measured in
    interleaved rounds on the same random input."""
    import statistics

    import tvm
    from tvm import relax

    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    args = [tvm.runtime.tensor(rng.random(shape, dtype=np.float32), dev) for shape in shapes.values()]
    timers = []
    for ex in executables:
        vm = relax.VirtualMachine(ex, dev)
        vm["main"](*args)
        timers.append(vm.time_evaluator("main", dev, number=20, repeat=1, min_repeat_ms=20))
    samples: list[list[float]] = [[] for _ in executables]
    for _ in range(5):
        for i, timer in enumerate(timers):
            samples[i].append(timer(*args).mean * 1e6)
    return [statistics.median(v) for v in samples]


def _output_shapes(mod) -> list[list[int]] | None:
    """Static output shapes of `main` as imported (None where a dimension is symbolic)."""
    info = mod["main"].ret_ty
    infos = list(info.fields) if hasattr(info, "fields") else [info]
    try:
        return [[int(d) for d in i.shape] for i in infos]
    except (TypeError, AttributeError):
        return None


def call_plan(mod) -> list[dict] | None:
    """The kernels `main` calls, in order, with the shapes and dtypes of their arguments
    (inputs, then outputs); None if any shape is not static."""
    from tvm import relax

    plan = []
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            call = binding.value
            if not isinstance(call, relax.Call) or getattr(call.op, "name", None) != "relax.call_tir":
                continue
            outs = call.ty_args[0]
            outs = list(outs.fields) if hasattr(outs, "fields") else [outs]
            args = []
            for info in [a.ty for a in call.args[1].fields] + outs:
                try:
                    args.append({"shape": [int(d) for d in info.shape], "dtype": str(info.dtype)})
                except (TypeError, AttributeError):
                    return None
            plan.append({"name": call.args[0].name_hint, "args": args})
    return plan


def check_parity(lib_path: Path, onnx_path: Path, inputs: np.ndarray, *, tolerance: float) -> Parity:
    """Run the built library and onnxruntime on the same inputs; beyond tolerance is an error."""
    from edgeopt.toolkit.onnx_run import predict

    run = _vm_runner(lib_path)
    ours = np.concatenate([run(inputs[i : i + 1]) for i in range(len(inputs))])
    ref = predict(onnx_path, inputs)
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    parity = Parity(
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        top1_agreement=float((ours.argmax(-1) == ref.argmax(-1)).mean()),
        tolerance=tolerance,
        samples=len(inputs),
    )
    if parity.max_abs_diff > tolerance:
        raise CompileError(
            f"compiled model disagrees with onnxruntime: max abs diff {parity.max_abs_diff:.3g} > tolerance {tolerance:.3g}",
            hint="report this with the model attached",
        )
    return parity


def toolchain_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("apache-tvm", "apache-tvm-ffi", "onnx", "onnxruntime", "torch"):
        try:
            out[dist.replace("apache-", "")] = version(dist)
        except PackageNotFoundError:
            out[dist.replace("apache-", "")] = None
    return out


def _replace_dir(new: Path, dest: Path) -> None:
    """Move a finished build into place; the previous bundle survives until the new one is complete."""
    old = None
    if dest.exists():
        old = dest.with_name(dest.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
    os.replace(new, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def compile_onnx(
    onnx_path: Path,
    *,
    target: Target,
    out_dir: Path,
    parity_inputs: np.ndarray | None = None,
    tolerance: float | None = None,
    input_shapes: dict[str, list[int]] | None = None,
    extra_manifest: dict | None = None,
    onnx_copy: bool = True,
    preprocessing: dict | None = None,
    tune_trials: int = 0,
    tune_threads: int = 1,
    on_trials: Callable[[int], None] | None = None,
    integer: bool = True,
) -> tuple[Bundle, Parity | None]:
    """Build `onnx_path` for `target` into `out_dir` (a bundle). For the host target the build is
    checked against onnxruntime on `parity_inputs` plus 8 random inputs, within `tolerance`
    (default: one output quantization step for an int8 model, 1e-4 for a float one).
    `onnx_copy`: also put the source ONNX in the bundle as model.onnx (hashed like every file),
    so the board can run it with onnxruntime as a baseline and the host can compute references.
    `preprocessing`: what the model expects of its input (layout, scale, mean, std), recorded in
    the manifest; by default "none": inputs go in as given.
    `tune_trials`: tune with MetaSchedule first (host targets; the database is cached).
    `tune_threads`: the thread count the schedules are tuned for (MetaSchedule makes parallel
    schedules for as many cores as the target names; a parallel launch costs more than most of a
    small model's kernels take, so the default is 1, which is also how the benchmarks run).
    `integer`: run a QDQ model's conv2d/matmul as int8 x int8 -> int32 with int8 weights
    (compile/int8.py); False keeps TVM's default, fp32 arithmetic between dequantize/quantize."""
    import onnx
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    model = load_onnx(onnx_path)
    shapes = graph_input_shapes(model, overrides=input_shapes)
    if tolerance is None:
        tolerance = default_tolerance(model)
    missing = unsupported_ops(model)
    if missing:
        raise UnsupportedModelError(
            f"TVM cannot import {len(missing)} operator(s): {', '.join(missing)}",
            hint="export with QDQ quantization (not QOperator) and standard ONNX ops",
        )
    if target.cc and shutil.which(target.cc) is None:
        raise CompileError(f"cross compiler {target.cc} not found for target {target.name!r}",
                           hint="install it: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross")
    if tune_threads < 1:
        raise UsageError(f"--tune-threads must be >= 1, got {tune_threads}")
    # the tuned schedules and the build must see the same target (the database is keyed by it)
    tvm_target = tvm.target.Target({**target.tvm_target(), **({"num-cores": tune_threads} if tune_trials else {})})
    try:
        mod = from_onnx(model, shape_dict=shapes, keep_params_in_input=False)
        out_shapes = _output_shapes(mod)  # after --input-shape: what the build really returns
        int8 = None
        if integer and any(n.op_type == "DequantizeLinear" for n in model.graph.node):
            from . import vnni

            mod, int8 = lower_qdq_to_int8(mod, kernels=vnni.kernels_for(target))
        if target.partition is not None:
            mod = target.partition(mod)
        with tvm_target:
            mod = relax.get_pipeline("zero")(mod)
        tuning = None
        untuned = mod
        if tune_trials:
            from .tune import tune

            mod, tuning = tune(mod, tvm_target, target=target, onnx_bytes=onnx_path.read_bytes(),
                               trials=tune_trials, on_trials=on_trials, threads=tune_threads,
                               variant=f"int8-{int8.kernels or 'ops'}" if int8 else "")
        ex = relax.build(mod, tvm_target, exec_mode=EXEC_MODE)
        if tuning is not None:
            # tuning only ever helps: MetaSchedule times each kernel alone, and a tuned set can
            # still lose to the defaults as a whole (measured: int8 glue on the ResNet-style model)
            plain = relax.build(untuned, tvm_target, exec_mode=EXEC_MODE)
            t_tuned, t_plain = _whole_model_us([ex, plain], shapes)
            kept = "tuned" if t_tuned <= t_plain else "untuned"
            tuning = {**tuning, "kept": kept, "latency_us": {"tuned": round(t_tuned, 3), "untuned": round(t_plain, 3)}}
            if kept == "untuned":
                ex, mod = plain, untuned
        weight_bytes = constant_bytes(mod)
        kernels = call_plan(mod)
    except EdgeoptError:
        raise
    except Exception as exc:
        raise CompileError(f"TVM failed to build {onnx_path.name}: {str(exc).strip().splitlines()[-1]}") from exc

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    try:
        fcompile = tvm.support.cc.cross_compiler(target.cc) if target.cc else None
        try:
            ex.export_library(str(staging / LIBRARY), **({"fcompile": fcompile} if fcompile else {}))
        except RuntimeError as exc:
            lines = [l for l in str(exc).splitlines() if "error" in l.lower() or "cannot find" in l]
            hint = ("install the target's C library: apt-get install libc6-dev-arm64-cross"
                    if "crt" in str(exc) else None)
            raise CompileError(f"linking {LIBRARY} for {target.name!r} failed: {(lines or [str(exc)])[0].strip()}",
                               hint=hint) from exc
        parity = None
        if target.name == "host":
            shape = next(iter(shapes.values()))
            rng = np.random.default_rng(0)
            random = rng.random((8, *shape[1:]), dtype=np.float32)
            inputs = random if parity_inputs is None else np.concatenate([parity_inputs, random])
            parity = check_parity(staging / LIBRARY, onnx_path, inputs, tolerance=tolerance)
        outputs = [
            {"name": o.name, "dtype": "float32",
             "shape": out_shapes[i] if out_shapes and i < len(out_shapes) else [d.dim_value for d in o.type.tensor_type.shape.dim]}
            for i, o in enumerate(model.graph.output)
        ]
        if parity is None:
            # cross-compiled: checked on the board against these host references
            parity_note = {"checked_on": "board"}
        else:
            parity_note = {"checked_on": "host"}
        build = {"onnx_sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(), "target": target.tvm_target(),
                 "input_shapes": shapes, "tune_trials": tune_trials,
                 **({"tune_threads": tune_threads} if tune_trials else {}), "integer": integer, "tolerance": tolerance}
        manifest = {
            "preprocessing": {"layout": "NCHW" if len(next(iter(shapes.values()))) == 4 else "NC",
                              "scale": 1.0, "mean": 0.0, "std": 1.0, "declared": False, **(preprocessing or {})},
            "build": {"config_hash": hashlib.sha256(json.dumps(build, sort_keys=True).encode()).hexdigest()[:16],
                      **build},
            "inputs": [{"name": k, "shape": v, "dtype": "float32"} for k, v in shapes.items()],
            "outputs": outputs,
            "target": target.describe(),
            "toolchain": toolchain_versions(),
            "tuning": tuning,
            "arithmetic": {
                "int8_ops": None if int8 is None else int8.to_json(),
                "weight_bytes": weight_bytes,
            },
            "parity": {"tolerance": tolerance, **parity_note, **({} if parity is None else parity.to_json())},
            # compiled VM code has no per-call hook: the board agent profiles kernel by kernel from this
            "vm": {"exec_mode": EXEC_MODE, "kernels": kernels},
            **(extra_manifest or {}),
        }
        if onnx_copy:
            shutil.copyfile(onnx_path, staging / "model.onnx")
        bundle = Bundle.write(staging, manifest)
        _replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Bundle(out_dir, bundle.manifest), parity
