import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from toolkit.errors import UsageError
from toolkit.quantize import Calibrator, QuantConfig, QuantizedModel


def test_ptq_writes_qdq_with_int8_weights(quantized):
    model = onnx.load(str(quantized.path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Gemm"} <= ops
    # QOperator ops would not import into TVM
    assert not ops & {"QLinearMatMul", "QGemm", "QLinearConv", "MatMulInteger"}
    weights = [numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("weight_quantized")]
    assert len(weights) == 2 and all(w.dtype == np.int8 for w in weights)


def test_ptq_accuracy_close_to_float(quantized):
    assert quantized.quant_path == "ptq"
    assert quantized.accuracy_float - quantized.accuracy_quantized <= 0.02
    assert quantized.steps[0]["name"] == "ptq:minmax"


def test_save_load_round_trip(quantized, tmp_path):
    quantized.save(tmp_path)
    back = QuantizedModel.load(tmp_path)
    assert back.path.read_bytes() == quantized.path.read_bytes()
    assert back.config.calibrator is Calibrator.minmax
    assert back.to_json()["quantization"]["path"] == "ptq"


@pytest.mark.parametrize("kwargs, message", [
    ({"bits": 4}, "only 8-bit"),
    ({"budget": 1.5}, "fraction"),
    ({"calibration_samples": 0}, "at least one"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(UsageError, match=message):
        QuantConfig(**kwargs).validate()
