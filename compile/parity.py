"""The host build checked against onnxruntime (edgeopt/reference.py) on the same inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeopt.errors import CompileError
from edgeopt.reference import predict


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    tolerance: float
    samples: int

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def vm_runner(lib_path: Path):
    import tvm
    from tvm import runtime
    from tvm.runtime import vm as tvm_vm

    lib = runtime.load_module(str(lib_path))
    vm = tvm_vm.VirtualMachine(lib, tvm.cpu())

    def run(x: np.ndarray) -> np.ndarray:
        out = vm["main"](runtime.tensor(x, tvm.cpu()))
        return (out[0] if isinstance(out, (list, tuple)) or not hasattr(out, "numpy") else out).numpy()

    return run


def check_parity(lib_path: Path, onnx_path: Path, inputs: np.ndarray, *, tolerance: float, batch: int = 1) -> Parity:
    """Run the built library and onnxruntime on the same inputs, `batch` at a time (the batch the
    library was built for); beyond tolerance is an error."""
    run = vm_runner(lib_path)
    ours = np.concatenate([run(inputs[i : i + batch]) for i in range(0, len(inputs), batch)])
    ref = predict(onnx_path, inputs, batch=batch)
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
            f"compiled model disagrees with onnxruntime: max abs diff {parity.max_abs_diff:.3g} "
            f"> tolerance {tolerance:.3g}",
            hint="report this with the model attached",
        )
    return parity
