"""compile_onnx as a chain of small steps over one state object. Each step reads what the steps
before it left in the CompileState and adds its own part; each can be run alone on a state
holding what it needs (tests/unit/compile/test_steps.py does).

    validate -> import_relax -> lower_int8 -> partition -> optimize -> tune -> build
             -> keep_faster -> describe -> link -> check_parity -> write_bundle

The steps from import_relax to describe run TVM: any error there that is not already one of
ours becomes a CompileError naming the model (`TVM_STEPS`, wrapped by `run`).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt.errors import CompileError, EdgeoptError, UnsupportedModelError, UsageError

from .analysis import call_plan, constant_bytes
from .bundle import LIBRARY, Bundle, replace_dir
from .onnx_model import default_tolerance, graph_input_shapes, load_onnx, unsupported_ops
from .sizes import round_up
from .targets import Target

# "compiled": the VM's instruction stream becomes native code; the bytecode interpreter costs
# ~0.1 us per call, a tenth of a small int8 model's time.
EXEC_MODE = "compiled"


@dataclass(frozen=True)
class CompileRequest:
    """What compile_onnx was asked for (its arguments; see its docstring)."""

    onnx_path: Path
    target: Target
    out_dir: Path
    parity_inputs: np.ndarray | None = None
    tolerance: float | None = None
    input_shapes: dict[str, list[int]] | None = None
    extra_manifest: dict | None = None
    onnx_copy: bool = True
    preprocessing: dict | None = None
    tune_trials: int = 0
    tune_threads: int = 1
    on_trials: Callable[[int], None] | None = None
    integer: bool = True
    tune_boards: object = None  # compile.remote.BoardPool: candidates timed on those boards


@dataclass
class CompileState:
    request: CompileRequest
    model: object = None  # onnx.ModelProto
    shapes: dict[str, list[int]] = field(default_factory=dict)
    tolerance: float | None = None
    tvm_target: object = None
    mod: object = None  # the Relax IRModule as the steps leave it
    int8: object = None  # compile.int8.Int8Stats, or None: not lowered
    untuned: object = None  # the module before tuning
    tuning: dict | None = None
    executable: object = None
    weight_bytes: dict | None = None
    kernels: list | None = None  # the call plan
    out_shapes: list | None = None  # static output shapes as imported (after --input-shape)
    staging: Path | None = None
    parity: object = None  # compile.parity.Parity, or None: checked on the board
    bundle: Bundle | None = None


def validate(s: CompileState) -> None:
    """Load the model and check everything that can be checked before TVM runs."""
    import tvm

    r = s.request
    s.model = load_onnx(r.onnx_path)
    s.shapes = graph_input_shapes(s.model, overrides=r.input_shapes)
    s.tolerance = default_tolerance(s.model) if r.tolerance is None else r.tolerance
    missing = unsupported_ops(s.model)
    if missing:
        raise UnsupportedModelError(
            f"TVM cannot import {len(missing)} operator(s): {', '.join(missing)}",
            hint="export with QDQ quantization (not QOperator) and standard ONNX ops",
        )
    if r.target.cc and shutil.which(r.target.cc) is None:
        raise CompileError(
            f"cross compiler {r.target.cc} not found for target {r.target.name!r}",
            hint="install it: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
        )
    if r.tune_threads < 1:
        raise UsageError(f"--tune-threads must be >= 1, got {r.tune_threads}")
    # the tuned schedules and the build must see the same target (the database is keyed by it)
    threads = {"num-cores": r.tune_threads} if r.tune_trials else {}
    s.tvm_target = tvm.target.Target({**r.target.tvm_target(), **threads})


def import_relax(s: CompileState) -> None:
    from tvm.relax.frontend.onnx import from_onnx

    s.mod = from_onnx(s.model, shape_dict=s.shapes, keep_params_in_input=False)
    s.out_shapes = _output_shapes(s.mod)  # after --input-shape: what the build really returns


def _output_shapes(mod) -> list[list[int]] | None:
    """Static output shapes of `main` as imported (None where a dimension is symbolic)."""
    info = mod["main"].ret_ty
    infos = list(info.fields) if hasattr(info, "fields") else [info]
    try:
        return [[int(d) for d in i.shape] for i in infos]
    except (TypeError, AttributeError):
        return None


def lower_int8(s: CompileState) -> None:
    """A QDQ model's conv2d/matmul as integer arithmetic (compile/int8), on the target's ISA."""
    if not s.request.integer or not any(n.op_type == "DequantizeLinear" for n in s.model.graph.node):
        return
    from .int8 import lower_qdq_to_int8
    from .kernels import for_target

    isa = for_target(s.request.target)
    s.mod, s.int8 = lower_qdq_to_int8(s.mod, kernels=None if isa is None else isa.name)


def partition(s: CompileState) -> None:
    if s.request.target.partition is not None:
        s.mod = s.request.target.partition(s.mod)


def optimize(s: CompileState) -> None:
    from tvm import relax

    with s.tvm_target:
        s.mod = relax.get_pipeline("zero")(s.mod)
    s.untuned = s.mod


def tune(s: CompileState) -> None:
    r = s.request
    if not r.tune_trials:
        return
    from .tune import tune as run_tuning

    variant = f"int8-{s.int8.kernels or 'ops'}" if s.int8 else ""
    s.mod, s.tuning = run_tuning(
        s.mod,
        s.tvm_target,
        target=r.target,
        onnx_bytes=r.onnx_path.read_bytes(),
        trials=r.tune_trials,
        on_trials=r.on_trials,
        threads=r.tune_threads,
        variant=variant,
        boards=r.tune_boards,
    )


def build(s: CompileState) -> None:
    from tvm import relax

    s.executable = relax.build(s.mod, s.tvm_target, exec_mode=EXEC_MODE)


def keep_faster(s: CompileState) -> None:
    """Tuning only ever helps: MetaSchedule times each kernel alone, and a tuned set can still
    lose to the defaults as a whole (measured: int8 glue on the ResNet-style model). Both builds
    are timed here, interleaved, and the faster one kept."""
    if s.tuning is None:
        return
    if s.request.tune_boards is not None:
        # this machine cannot time the board's code: the records, measured there, are applied
        s.tuning = {
            **s.tuning,
            "kept": "tuned",
            "latency_us": None,
            "compared": "not compared: the kernels were timed on the board, one by one",
        }
        return
    from tvm import relax

    from .timing import whole_model_us

    plain = relax.build(s.untuned, s.tvm_target, exec_mode=EXEC_MODE)
    t_tuned, t_plain = whole_model_us([s.executable, plain], s.shapes)
    kept = "tuned" if t_tuned <= t_plain else "untuned"
    s.tuning = {**s.tuning, "kept": kept, "latency_us": {"tuned": round(t_tuned, 3), "untuned": round(t_plain, 3)}}
    if kept == "untuned":
        s.executable, s.mod = plain, s.untuned


def describe(s: CompileState) -> None:
    s.weight_bytes = constant_bytes(s.mod)
    s.kernels = call_plan(s.mod)


def link(s: CompileState) -> None:
    """export_library into a fresh staging folder beside out_dir (the previous bundle stays
    untouched until write_bundle swaps the finished one in)."""
    import tvm

    r = s.request
    r.out_dir.parent.mkdir(parents=True, exist_ok=True)
    s.staging = Path(tempfile.mkdtemp(prefix=r.out_dir.name + ".", dir=r.out_dir.parent))
    fcompile = tvm.support.cc.cross_compiler(r.target.cc) if r.target.cc else None
    try:
        s.executable.export_library(str(s.staging / LIBRARY), **({"fcompile": fcompile} if fcompile else {}))
    except RuntimeError as exc:
        lines = [line for line in str(exc).splitlines() if "error" in line.lower() or "cannot find" in line]
        hint = "install the target's C library: apt-get install libc6-dev-arm64-cross" if "crt" in str(exc) else None
        raise CompileError(
            f"linking {LIBRARY} for {r.target.name!r} failed: {(lines or [str(exc)])[0].strip()}", hint=hint
        ) from exc


def check_parity(s: CompileState) -> None:
    """Host builds: against onnxruntime on parity_inputs plus 8 random inputs. Cross builds are
    checked on the board against the host's references."""
    from .parity import check_parity as compare

    r = s.request
    if r.target.name != "host":
        return
    shape = next(iter(s.shapes.values()))
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else 1  # built for a fixed batch (--input-shape)
    given = 0 if r.parity_inputs is None else len(r.parity_inputs)
    random = np.random.default_rng(0).random((round_up(given + 8, batch) - given, *shape[1:]), dtype=np.float32)
    inputs = random if r.parity_inputs is None else np.concatenate([r.parity_inputs, random])
    s.parity = compare(s.staging / LIBRARY, r.onnx_path, inputs, tolerance=s.tolerance, batch=batch)


def write_bundle(s: CompileState) -> None:
    from .manifest import manifest

    r = s.request
    if r.onnx_copy:
        shutil.copyfile(r.onnx_path, s.staging / "model.onnx")
    written = Bundle.write(s.staging, manifest(s))
    replace_dir(s.staging, r.out_dir)
    s.bundle = Bundle(r.out_dir, written.manifest)


TVM_STEPS = (import_relax, lower_int8, partition, optimize, tune, build, keep_faster, describe)
BUNDLE_STEPS = (link, check_parity, write_bundle)


def run(s: CompileState) -> CompileState:
    validate(s)
    try:
        for step in TVM_STEPS:
            step(s)
    except EdgeoptError:
        raise
    except Exception as exc:
        raise CompileError(
            f"TVM failed to build {s.request.onnx_path.name}: {str(exc).strip().splitlines()[-1]}"
        ) from exc
    try:
        for step in BUNDLE_STEPS:
            step(s)
    except BaseException:
        if s.staging is not None:
            shutil.rmtree(s.staging, ignore_errors=True)
        raise
    return s
