"""ONNX -> Relax -> the "zero" pipeline -> a shared library, checked against onnxruntime: the
compile stage's entry point. The work is done by the steps in compile/steps.py."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .bundle import Bundle
from .parity import Parity
from .steps import CompileRequest, CompileState, run
from .targets import Target


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
    tune_boards: object = None,
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
    (compile/int8/); False keeps TVM's default, fp32 arithmetic between dequantize/quantize.
    `tune_boards`: a started compile.remote.BoardPool (edgeopt.toolkit.boards.tuning makes one):
    tuning measures on those boards, which any target may use (a cross target needs one)."""
    request = CompileRequest(
        onnx_path=onnx_path,
        target=target,
        out_dir=out_dir,
        parity_inputs=parity_inputs,
        tolerance=tolerance,
        input_shapes=input_shapes,
        extra_manifest=extra_manifest,
        onnx_copy=onnx_copy,
        preprocessing=preprocessing,
        tune_trials=tune_trials,
        tune_threads=tune_threads,
        on_trials=on_trials,
        integer=integer,
        tune_boards=tune_boards,
    )
    state = run(CompileState(request))
    return state.bundle, state.parity
