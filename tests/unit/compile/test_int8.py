"""compile/int8.py: QDQ conv2d/matmul run as int8 x int8 -> int32 in TVM, checked against onnxruntime."""

import numpy as np
import pytest
import torch
from edgeopt.compile import compile_onnx, get_target
from edgeopt.compile.onnx_model import default_tolerance, load_onnx
from edgeopt.compile.parity import check_parity
from edgeopt.toolkit.export import export_onnx
from edgeopt.toolkit.models import InputSpec, Model, build_model
from edgeopt.toolkit.quantize import ort_ptq
from edgeopt.toolkit.quantize.config import Calibrator


def _qdq(module, shape, tmp_path, calib, *, per_channel=True):
    model = Model(module.eval(), InputSpec("input", shape))
    fp32 = export_onnx(model, tmp_path / "fp32.onnx")
    pre = ort_ptq.preprocess(fp32, tmp_path / "pre.onnx")
    int8 = ort_ptq.quantize(
        pre,
        tmp_path / "int8.onnx",
        input_name="input",
        calib=calib,
        calibrator=Calibrator.minmax,
        bits=8,
        per_channel=per_channel,
    )
    return fp32, int8


def _host_has_vnni():
    return "avx512vnni" in get_target("host").describe()["cpu_features"]


def _count(path, op):
    return sum(n.op_type == op for n in load_onnx(path).graph.node)


@pytest.mark.slow
@pytest.mark.parametrize("name, shape", [("mlp", (1, 1, 28, 28)), ("cnn", (1, 1, 28, 28)), ("resnet", (1, 3, 32, 32))])
def test_builtin_int8_bundles_run_integer_ops_store_int8_weights_and_match_onnxruntime(name, shape, digits, tmp_path):
    torch.manual_seed(0)
    module = build_model(name, num_classes=10, input_shape=shape)
    if shape[1] == 1:
        calib, inputs = digits.x_train[:64], digits.x_test
    else:  # random weights and inputs: the resnet is here for latency, not accuracy
        rng = np.random.default_rng(0)
        calib, inputs = rng.random((64, *shape[1:]), dtype=np.float32), rng.random((64, *shape[1:]), dtype=np.float32)
    fp32, int8 = _qdq(module, shape, tmp_path, calib)
    real, parity = compile_onnx(int8, target=get_target("host"), out_dir=tmp_path / "int8", parity_inputs=inputs)
    ops = real.manifest["arithmetic"]["int8_ops"]
    assert ops["conv2d"] == _count(int8, "Conv") and ops["matmul"] == _count(int8, "Gemm") + _count(int8, "MatMul")
    assert ops["conv2d"] + ops["matmul"] > 0 and ops["skipped"] == []
    # the host's fused kernels run every layer: vpdpbusd on AVX512-VNNI, vpmaddwd on AVX2
    from edgeopt.compile.kernels import for_target, layers

    assert ops["kernels"] == for_target(get_target("host")).name
    assert ops["fused"] == ops["conv2d"] + ops["matmul"]
    assert (ops["vnni"] > 0) == _host_has_vnni()
    # the one-channel first conv: pixel vectors where they need fewer dot products, and then the
    # max-pool after it inside the same kernel
    first = layers.rows_ok(ops["kernels"], 1, 6, 5, 5, (1, 1), (1, 1)) if name == "cnn" else False
    assert ops["pixel_vectors"] == ops["pools"] == int(first)
    assert parity.top1_agreement >= 0.99 and parity.max_abs_diff <= default_tolerance(load_onnx(int8))

    dense, _ = compile_onnx(fp32, target=get_target("host"), out_dir=tmp_path / "fp32")
    w_real = real.manifest["arithmetic"]["weight_bytes"]
    w_fp32 = dense.manifest["arithmetic"]["weight_bytes"]
    assert w_real.get("int8", 0) > 0 and w_fp32.get("int8", 0) == 0
    assert sum(w_fp32.values()) >= 3.5 * sum(w_real.values())  # int8 weights, not folded back to fp32
    assert real.bytes < dense.bytes  # the whole bundle (library + the ONNX it carries) is smaller too


class _PaddedConvNet(torch.nn.Module):
    """Inputs in [-1, 1] give the activations a zero point near 128; padding then has to be
    done in the quantized domain with that zero point, not with 0."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=(2, 1), stride=2)
        self.fc = torch.nn.Linear(8 * 9 * 8, 10)

    def forward(self, x):
        y = torch.tanh(self.conv(x))  # tanh keeps negative values: a non-zero zero point again
        return self.fc(torch.flatten(self.conv2(y), 1))


@pytest.mark.parametrize("per_channel", [True, False])
def test_nonzero_activation_zero_point_and_padding_match_onnxruntime(per_channel, tmp_path):
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    calib = rng.uniform(-1, 1, (32, 3, 16, 16)).astype(np.float32)
    _, int8 = _qdq(_PaddedConvNet(), (1, 3, 16, 16), tmp_path, calib, per_channel=per_channel)
    inputs = rng.uniform(-1, 1, (32, 3, 16, 16)).astype(np.float32)
    bundle, _ = compile_onnx(int8, target=get_target("host"), out_dir=tmp_path / "b", parity_inputs=inputs)
    assert bundle.manifest["arithmetic"]["int8_ops"]["conv2d"] == 2
    p = check_parity(bundle.path / "model.so", int8, inputs, tolerance=default_tolerance(load_onnx(int8)))
    # integer accumulation is exact; only the float requantization may round differently by a step
    assert p.max_abs_diff <= default_tolerance(load_onnx(int8)) and p.top1_agreement >= 0.99


def test_integer_false_keeps_tvms_fp32_arithmetic(quantized, tmp_path):
    b, _ = compile_onnx(quantized.path, target=get_target("host"), out_dir=tmp_path / "b", integer=False)
    assert b.manifest["arithmetic"]["int8_ops"] is None
    assert "int8" not in b.manifest["arithmetic"]["weight_bytes"]


@pytest.mark.slow
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_max_pool_joins_the_first_layer_only_when_it_drops_the_ragged_edge(ceil_mode, tmp_path):
    """An odd-sized image: a floor-mode 2x2 pool runs inside the first layer's kernel; a
    ceil-mode one (which keeps the half windows at the edge) stays a pooling step. Both agree
    with the QDQ model exactly."""
    from edgeopt.compile.kernels import layers

    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2, ceil_mode=ceil_mode),
        torch.nn.Flatten(),
        torch.nn.Linear(3 * (5 if ceil_mode else 4) ** 2, 4),
    )
    shape = (1, 1, 9, 9)
    rng = np.random.default_rng(0)
    _, int8 = _qdq(module, shape, tmp_path, rng.random((16, *shape[1:]), dtype=np.float32))
    bundle, parity = compile_onnx(
        int8,
        target=get_target("host"),
        out_dir=tmp_path / "b",
        parity_inputs=rng.random((16, *shape[1:]), dtype=np.float32),
    )
    ops = bundle.manifest["arithmetic"]["int8_ops"]
    first = layers.rows_ok(ops["kernels"], 1, 3, 5, 5, (1, 1), (1, 1))  # every AVX2 CPU
    assert ops["pixel_vectors"] == int(first) and ops["pools"] == int(first and not ceil_mode)
    assert parity.max_abs_diff == 0
