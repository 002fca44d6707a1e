"""compile/steps.py: single steps of compile_onnx run alone on a CompileState."""

import numpy as np
import pytest
from edgeopt.compile import get_target
from edgeopt.compile.kernels import for_target
from edgeopt.compile.steps import CompileRequest, CompileState, check_parity, import_relax, lower_int8, run, validate
from onnx import TensorProto, helper, save

from edgeopt.errors import UnsupportedModelError, UsageError


def _state(path, tmp_path, **kw):
    return CompileState(
        CompileRequest(onnx_path=path, target=get_target(kw.pop("target", "host")), out_dir=tmp_path / "b", **kw)
    )


def test_validate_reads_shapes_and_rejects_bad_requests_before_tvm_runs(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), str(tmp_path / "m.onnx"))
    with pytest.raises(UnsupportedModelError, match="symbolic shape"):
        validate(_state(tmp_path / "m.onnx", tmp_path))
    s = _state(tmp_path / "m.onnx", tmp_path, input_shapes={"x": [2, 4]})
    validate(s)
    assert s.shapes == {"x": [2, 4]} and s.tolerance == 1e-4 and s.mod is None  # nothing imported yet
    with pytest.raises(UsageError, match="tune-threads"):
        validate(_state(tmp_path / "m.onnx", tmp_path, input_shapes={"x": [2, 4]}, tune_threads=0))


def test_lower_int8_alone_uses_the_targets_isa_or_none(quantized, tmp_path):
    s = _state(quantized.path, tmp_path)
    validate(s)
    import_relax(s)
    before = s.mod
    lower_int8(s)
    isa = for_target(get_target("host"))
    assert s.int8.kernels == (isa and isa.name) and s.int8.matmul == 2 and s.mod is not before
    off = _state(quantized.path, tmp_path, integer=False)
    validate(off)
    import_relax(off)
    lower_int8(off)
    assert off.int8 is None


def test_parity_step_checks_host_builds_only(quantized, digits, tmp_path):
    s = run(_state(quantized.path, tmp_path, parity_inputs=digits.x_test[:4]))
    assert s.parity.samples == 4 + 8 and s.bundle.manifest["parity"]["checked_on"] == "host"
    cross = CompileState(
        CompileRequest(onnx_path=quantized.path, target=get_target("aarch64"), out_dir=tmp_path / "x"),
        staging=s.bundle.path,
        shapes=s.shapes,
        tolerance=s.tolerance,
    )
    check_parity(cross)  # a cross build: not run on this host, left to the board
    assert cross.parity is None and np.isfinite(s.parity.max_abs_diff)
