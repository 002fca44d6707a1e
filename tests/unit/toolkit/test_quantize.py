import json

import numpy as np
import onnx
import pytest
from edgeopt.toolkit.onnx_run import predict
from edgeopt.toolkit.quantize import Calibrator, QuantConfig, QuantizedModel, Scheme, quantize
from edgeopt.toolkit.sparsity import global_sparsity_of_onnx
from edgeopt.toolkit.train import accuracy
from onnx import numpy_helper

from edgeopt.errors import UsageError


def test_ptq_writes_qdq_with_int8_weights(quantized):
    model = onnx.load(str(quantized.path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Gemm"} <= ops
    assert not ops & {"QLinearMatMul", "QGemm", "QLinearConv", "MatMulInteger"}  # TVM cannot import these
    weights = [numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("weight_quantized")]
    assert len(weights) == 2 and all(w.dtype == np.int8 for w in weights)
    # per-channel symmetric: one scale per output row, zero points all zero
    scales = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("weight_scale")}
    assert sorted(s.shape for s in scales.values()) == [(10,), (128,)]


def test_ptq_first_and_steps_recorded(quantized):
    assert quantized.quant_path == "ptq" and quantized.within_budget
    assert quantized.steps[0]["name"] == "ptq:minmax"
    assert quantized.accuracy_float - quantized.accuracy_quantized <= 0.02
    doc = quantized.to_json()
    assert doc["quantization"]["path"] == "ptq" and doc["accuracy"]["float"] == quantized.accuracy_float
    assert doc["validation"]["samples"] > 100  # decided on the held-out validation split


def test_sparsity_survives_quantization(pruned, quantized):
    assert global_sparsity_of_onnx(quantized.path, pruned.params_before) >= pruned.global_sparsity - 1e-9


def test_save_load_round_trip(quantized):
    back = QuantizedModel.load(quantized.path.parent)
    assert back.path == quantized.path and back.calibrator is Calibrator.minmax
    assert back.to_json() == quantized.to_json()


@pytest.mark.parametrize("bits, scheme, suffix", [(16, Scheme.uniform, "int16"), (4, Scheme.kmeans, "kmeans4")])
def test_other_schemes_end_to_end_on_mlp(bits, scheme, suffix, pruned, digits, tmp_path):
    q = quantize(
        pruned.model,
        digits,
        config=QuantConfig(bits=bits, scheme=scheme, calibration_samples=64, budget=0.05),
        out_dir=tmp_path,
    )
    assert q.path.name == f"model.{suffix}.onnx"
    assert q.accuracy_quantized == accuracy(predict(q.path, digits.x_test), digits.y_test)
    assert q.accuracy_quantized > 0.8
    if scheme is Scheme.kmeans:
        model = onnx.load(str(q.path))
        w = numpy_helper.to_array(next(i for i in model.graph.initializer if i.dims == [128, 784]))
        assert len(np.unique(w)) <= 16  # shared values, zero included
        assert (w == 0).mean() >= 0.69  # pruned zeros stay zeros
    else:
        types = {i.data_type for i in onnx.load(str(q.path)).graph.initializer if i.name.endswith("weight_quantized")}
        assert types == {onnx.TensorProto.INT16}


def test_onnx_input_is_ptq_only(quantized, digits, tmp_path):
    # an impossible budget: everything is tried, QAT is skipped with a reason, the best is kept
    q = quantize(
        quantized.path.parent / "model.onnx",
        digits,
        config=QuantConfig(budget=0.0, bits=4, per_channel=False, calibration_samples=32, fallback_max_fraction=0.0),
        out_dir=tmp_path,
    )
    names = [s["name"] for s in q.steps]
    assert names[:3] == ["ptq:minmax", "ptq:percentile", "ptq:entropy"] or q.within_budget
    if not q.within_budget:
        assert q.steps[-1]["name"] == "qat" and "torch model" in q.steps[-1]["skipped"]
        assert q.path.is_file()  # the best attempt is still written


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bits": 3}, "--bits"),
        ({"budget": 1.5}, "fraction"),
        ({"calibration_samples": 0}, "at least one"),
        ({"scheme": Scheme.kmeans, "bits": 16}, "k-means"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(UsageError, match=message):
        QuantConfig(**kwargs).validate()


@pytest.mark.slow
def test_blown_budget_goes_to_fallback_then_qat_and_qat_beats_ptq_and_its_control(digits, tmp_path):
    """A case that needs it for real: LeNet-5 pruned structurally to 90%, 4-bit per-tensor weights,
    a half-point budget. (4-bit per-channel weights lose nothing on this model: see the note.)"""
    from edgeopt.toolkit.inputs import train_builtin
    from edgeopt.toolkit.prune import Method, PruneConfig, prune

    dense = train_builtin("cnn", digits)
    pruned = prune(dense, digits, config=PruneConfig(target=0.9, method=Method.structured))
    base = dict(bits=4, per_channel=False, budget=0.005)

    q = quantize(pruned.model, digits, config=QuantConfig(**base), out_dir=tmp_path / "fallback")
    ptq_steps = [s for s in q.steps if s["name"].startswith("ptq:")]
    assert len(ptq_steps) == 3 and not any(s["within_budget"] for s in ptq_steps)
    assert q.quant_path in ("ptq+fallback", "qat") and q.within_budget
    if q.quant_path == "ptq+fallback":
        assert q.float_layers and q.steps[-1]["float_layers"] == q.float_layers
        assert "sensitivity" in next(s for s in q.steps if s["name"].startswith("ptq+fallback"))

    # no float layers allowed: QAT is the only way left
    q = quantize(pruned.model, digits, config=QuantConfig(**base, fallback_max_fraction=0.0), out_dir=tmp_path / "qat")
    assert q.quant_path == "qat"
    qat = q.steps[-1]
    best_ptq = max(s["val_accuracy"] for s in q.steps if s["name"].startswith("ptq:"))
    assert qat["val_accuracy"] > best_ptq  # QAT ends with a smaller drop than PTQ had
    assert qat["val_accuracy"] > qat["control"]["val_accuracy"]  # and the gain is not just extra training
    doc = json.loads((tmp_path / "qat" / "quant.json").read_text())
    assert doc["quantization"]["path"] == "qat" and doc["steps"][-1]["control"]["name"].startswith("float fine-tune")
