import onnx
import pytest
from edgeopt.compile import Bundle, compile_onnx, get_target
from edgeopt.compile.onnx_model import unsupported_ops
from onnx import TensorProto, helper

from edgeopt.errors import BundleError, InputError, UnsupportedModelError, UsageError


def test_bundle_has_library_manifest_and_hashes(host_bundle):
    b = Bundle.load(host_bundle.path)
    m = b.manifest
    assert m["schema"] == "edgeopt.bundle/1"
    assert set(m["files"]) == {"model.so"}
    assert m["inputs"] == [{"name": "input", "shape": [1, 1, 28, 28], "dtype": "float32"}]
    assert m["outputs"][0]["shape"] == [1, 10]
    assert m["target"]["name"] == "host" and m["target"]["arch"]
    assert m["target"]["triple"].startswith(m["target"]["arch"])
    assert m["target"]["cpu_features"] and set(m["target"]["required_cpu_flags"]) <= _cpuinfo_flags()
    assert m["toolchain"]["tvm"].startswith("0.27")
    assert m["toolchain"]["torch"].startswith("2.13") and m["toolchain"]["onnx"]
    assert m["preprocessing"]["layout"] == "NCHW" and m["build"]["config_hash"]
    assert m["arithmetic"]["int8_ops"]["matmul"] == 2 and m["arithmetic"]["weight_bytes"]["int8"] > 0
    assert m["parity"]["max_abs_diff"] <= m["parity"]["tolerance"]
    assert b.bytes > m["files"]["model.so"]["bytes"]


def _cpuinfo_flags():
    from edgeopt.board.agent.bundle import cpu_flags

    return cpu_flags()


def test_host_parity_against_onnxruntime(host_bundle, quantized, digits):
    from edgeopt.compile.onnx_model import default_tolerance, load_onnx, output_quant_step
    from edgeopt.compile.parity import check_parity

    model = load_onnx(quantized.path)
    step = output_quant_step(model)
    assert step is not None and 1e-4 < step < 1.0  # the logits' int8 scale
    tol = default_tolerance(model)
    p = check_parity(host_bundle.path / "model.so", quantized.path, digits.x_test, tolerance=tol)
    assert p.top1_agreement >= 0.99
    assert p.max_abs_diff <= tol
    assert p.mean_abs_diff < 1e-3


def test_tampered_bundle_is_refused(host_bundle, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(host_bundle.path, copy)
    with open(copy / "model.so", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\xff")
    with pytest.raises(BundleError, match="sha256"):
        Bundle.load(copy)
    (copy / "model.so").unlink()
    with pytest.raises(BundleError, match="missing"):
        Bundle.load(copy)


def _tiny(tmp_path, node, inputs, outputs, name="m.onnx", opset=18):
    g = helper.make_graph([node], "g", inputs, outputs)
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(g, opset_imports=opsets, ir_version=10)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def test_corrupt_onnx_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(InputError, match="not a valid ONNX model"):
        compile_onnx(bad, target=get_target("host"), out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unsupported_ops_are_listed_with_domains(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node("FusedGelu", ["x"], ["y"], domain="com.microsoft")
    path = _tiny(tmp_path, node, [x], [y])
    model = onnx.load(str(path))
    assert unsupported_ops(model) == ["com.microsoft::FusedGelu"]
    with pytest.raises(UnsupportedModelError, match="com.microsoft::FusedGelu"):
        compile_onnx(path, target=get_target("host"), out_dir=tmp_path / "out")


def test_symbolic_input_asks_for_input_shape(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    path = _tiny(tmp_path, helper.make_node("Relu", ["x"], ["y"]), [x], [y])
    with pytest.raises(UnsupportedModelError, match="--input-shape x="):
        compile_onnx(path, target=get_target("host"), out_dir=tmp_path / "out")


def test_failed_build_leaves_previous_bundle_untouched(host_bundle, tmp_path):
    import shutil

    out = tmp_path / "bundle"
    shutil.copytree(host_bundle.path, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nonsense")
    with pytest.raises(InputError):
        compile_onnx(bad, target=get_target("host"), out_dir=out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_unknown_target():
    with pytest.raises(UsageError, match="known targets: .*host"):
        get_target("pdp11")


def test_parity_failure_is_an_error_and_keeps_previous_bundle(host_bundle, quantized, tmp_path):
    import shutil

    from edgeopt.errors import CompileError

    out = tmp_path / "bundle"
    shutil.copytree(host_bundle.path, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # a negative tolerance cannot be met: the build gets as far as the parity check, then fails
    with pytest.raises(CompileError, match="disagrees with onnxruntime"):
        compile_onnx(quantized.path, target=get_target("host"), out_dir=out, tolerance=-1.0)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no staging left behind


@pytest.mark.slow
def test_int8_cnn_compiles_and_agrees_with_onnxruntime_on_the_test_split(digits, tmp_path):
    """Every built-in model's QDQ ONNX imports into TVM (the mlp's is checked above)."""
    from edgeopt.compile.onnx_model import default_tolerance, load_onnx
    from edgeopt.compile.parity import check_parity
    from edgeopt.toolkit.inputs import train_builtin
    from edgeopt.toolkit.prune import Method, PruneConfig, prune
    from edgeopt.toolkit.quantize import QuantConfig, quantize

    dense = train_builtin("cnn", digits, epochs=3)
    config = PruneConfig(method=Method.structured, steps=2, epochs_per_step=1, final_epochs=1)
    pruned = prune(dense, digits, config=config)
    q = quantize(pruned.model, digits, config=QuantConfig(calibration_samples=64, budget=0.05), out_dir=tmp_path / "q")
    ops = {n.op_type for n in load_onnx(q.path).graph.node}
    assert {"Conv", "QuantizeLinear", "DequantizeLinear"} <= ops
    bundle, _ = compile_onnx(q.path, target=get_target("host"), out_dir=tmp_path / "b")
    p = check_parity(bundle.path / "model.so", q.path, digits.x_test, tolerance=default_tolerance(load_onnx(q.path)))
    assert p.top1_agreement >= 0.99
