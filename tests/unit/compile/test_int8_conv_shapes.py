"""compile/int8 on 1-D and grouped convolutions: fused layers (a 1-D conv is a 2-D one a row high,
a grouped one dense with block-diagonal weights; compile/int8/geometry.py) on every x86 ISA the
host runs, exact against the QDQ model as written in onnxruntime (edgeopt.reference)."""

import numpy as np
import pytest
import torch
from edgeopt.compile import compile_onnx, get_target
from edgeopt.compile.kernels import get, names
from edgeopt.compile.onnx_model import load_onnx
from edgeopt.toolkit.export import export_onnx
from edgeopt.toolkit.models import InputSpec, Model
from edgeopt.toolkit.quantize import ort_ptq
from edgeopt.toolkit.quantize.config import Calibrator
from torch import nn

from edgeopt.reference import predict
from tests.outcomes import not_run


class Net1D(nn.Module):
    """Strided and padded 1-D convs, a max-pool on the quantized tensor, a grouped one (tanh
    after it: a non-zero zero point, so the padding must be the zero point), a 1-D depthwise
    one, a dilated one (run one column high), a residual add, a global mean over time."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(10, 16, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(3, stride=2, padding=1),
            nn.Conv1d(16, 24, 3, padding=1, groups=4),
            nn.Tanh(),
            nn.Conv1d(24, 24, 3, padding=1, groups=24),
            nn.ReLU(),
            nn.Conv1d(24, 16, 3, padding=2, dilation=2),
            nn.ReLU(),
        )
        self.res = nn.Conv1d(16, 16, 3, padding=1)
        self.head = nn.Conv1d(16, 12, 1)
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        h = self.body(x)
        return self.fc(self.head(h + self.res(h)).mean(dim=2))


class Grouped2D(nn.Module):
    """Grouped 2-D convs: 2 groups of 8 channels, 4 strided groups with 3 input channels each
    (not a multiple of the 4-wide dot product), and a 1x1 one."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 12, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(12, 16, 3, stride=2, padding=1, groups=4),
            nn.Tanh(),
            nn.Conv2d(16, 16, 1, groups=2),
            nn.ReLU(),
        )
        self.fc = nn.Linear(16 * 5 * 5, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.body(x), 1))


def _kws():
    from edgeopt.toolkit import examples

    return examples.build("kws")  # the "own model" 1-D family (toolkit/examples.py), 40 x 98


# name -> (module builder, input shape, fused depthwise layers)
MODELS = {"conv1d": (Net1D, (1, 10, 30), 1), "grouped2d": (Grouped2D, (1, 3, 9, 9), 0), "kws": (_kws, (1, 40, 98), 0)}


def _make_qdq(name, d):
    """(QDQ model path, inputs) of MODELS[name] in `d`: per-channel min-max PTQ on inputs in [-1, 1]."""
    cls, shape, _ = MODELS[name]
    torch.manual_seed(0)
    fp32 = export_onnx(Model(cls().eval(), InputSpec("input", shape)), d / "fp32.onnx")
    pre = ort_ptq.preprocess(fp32, d / "pre.onnx")
    rng = np.random.default_rng(0)
    calib = rng.uniform(-1, 1, (32, *shape[1:])).astype(np.float32)
    int8 = ort_ptq.quantize(
        pre, d / "int8.onnx", input_name="input", calib=calib, calibrator=Calibrator.minmax, bits=8, per_channel=True
    )
    return int8, rng.uniform(-1, 1, (16, *shape)).astype(np.float32)


@pytest.fixture(scope="module", params=sorted(MODELS))
def qdq(request, tmp_path_factory):
    """(name, QDQ model path, inputs)"""
    return (request.param, *_make_qdq(request.param, tmp_path_factory.mktemp(request.param)))


def _convs(path):
    """(1-D convs, grouped convs that are not depthwise) in the ONNX graph."""
    import onnx

    model = load_onnx(path)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    made_by = {out: node for node in model.graph.node for out in node.output}
    ones, grouped = 0, 0
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        w = inits[made_by[node.input[1]].input[0]]  # the int8 weights its DequantizeLinear reads
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        ones += w.ndim == 3
        grouped += group > 1 and w.shape[1] > 1
    return ones, grouped


def test_compile_fuses_every_layer_and_matches_the_qdq_model_exactly(qdq, tmp_path):
    name, int8, x = qdq
    bundle, parity = compile_onnx(int8, target=get_target("host"), out_dir=tmp_path / "b", parity_inputs=x[:, 0])
    ops = bundle.manifest["arithmetic"]["int8_ops"]
    ones, grouped = _convs(int8)
    assert (ops["conv1d"], ops["grouped"]) == (ones, grouped) and ones + grouped >= 1
    # every layer fused: none left to the unfused int32 ops with fp32 between layers
    assert ops["fused"] == ops["conv1d"] + ops["conv2d"] + ops["matmul"] and ops["skipped"] == []
    assert ops["depthwise"] == MODELS[name][2]
    if name == "grouped2d":  # 4-channel groups merged in pairs to fill 8-lane blocks, not run dense
        assert sum("_g2_" in k["name"] for k in bundle.manifest["vm"]["kernels"]) == 2
    assert parity.max_abs_diff == 0 and parity.top1_agreement == 1.0


@pytest.mark.parametrize("isa", [n for n in names() if get(n).arch == "x86_64"])
def test_every_x86_isa_is_exact(qdq, isa):
    """The same layers on each x86 ISA's kernels (vnni, avx2, generic), built and run on the
    host; an ISA the host CPU lacks is NOT RUN."""
    import tvm
    from edgeopt.compile.int8 import lower_qdq_to_int8
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    _, int8, x = qdq
    info = get_target("host").describe()
    if not get(isa).runs_on(info["arch"], info["cpu_features"]):
        not_run(f"the host CPU ({info['arch']}, {info['mcpu']}) cannot run the {isa} kernels")
    mod, stats = lower_qdq_to_int8(from_onnx(load_onnx(int8), keep_params_in_input=False), kernels=isa)
    assert stats.fused == stats.conv1d + stats.conv2d + stats.matmul
    target = tvm.target.Target(get_target("host").tvm_target())
    with target:
        mod = relax.get_pipeline("zero")(mod)
    vm = relax.VirtualMachine(relax.build(mod, target), tvm.cpu())
    got = np.concatenate([vm["main"](tvm.runtime.tensor(xi)).numpy() for xi in x])
    ref = predict(int8, x[:, 0])
    assert float(np.abs(got - ref).max()) == 0.0
    assert float((got.argmax(1) == ref.argmax(1)).mean()) == 1.0


def test_grouped_weights_merge_groups_only_as_far_as_whole_lane_blocks_need():
    """geometry.py: 4 groups of 4 output channels on 8-lane blocks run as 2 kernel groups whose
    weights are block-diagonal; 16-channel groups stay 4; groups that never fill a block: dense."""
    from edgeopt.compile.int8.geometry import ConvGeometry

    def geo(n, cg, groups):
        w = np.arange(1, n * cg * 3 + 1, dtype=np.int64).reshape(n, cg, 1, 3)
        return ConvGeometry(w, (0, 1, 0, 1), (1, 1), (1, 1), groups, True)

    g = geo(16, 3, 4)
    assert g.grouped and not g.depthwise and g.kernel_groups(lambda n: 8) == 2
    b = g.block_weights(2)
    assert b.shape == (16, 6, 1, 3)
    assert (b[0:4, 0:3] == g.weights[0:4]).all() and not b[0:4, 3:].any()
    assert (b[4:8, 3:6] == g.weights[4:8]).all() and not b[4:8, :3].any()
    assert (b[8:12, 0:3] == g.weights[8:12]).all()  # group 2 opens the second kernel group
    assert geo(64, 3, 4).kernel_groups(lambda n: 16) == 4
    assert geo(24, 3, 4).kernel_groups(lambda n: 8 if n <= 8 else 16) == 1
    dense = geo(24, 3, 4).block_weights(1)
    assert dense.shape == (24, 12, 1, 3) and (dense[18:, 9:] == geo(24, 3, 4).weights[18:]).all()
    assert not dense[18:, :9].any()


def test_without_fused_kernels_1d_convs_still_run_integer_arithmetic(tmp_path):
    """No ISA (kernels=None): every conv1d becomes an int32 conv2d one row (or, dilated, one
    column) high, fp32 between layers, within one output quantization step of the QDQ model."""
    import tvm
    from edgeopt.compile.int8 import lower_qdq_to_int8
    from edgeopt.compile.onnx_model import default_tolerance
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    int8, x = _make_qdq("conv1d", tmp_path)
    mod, stats = lower_qdq_to_int8(from_onnx(load_onnx(int8), keep_params_in_input=False), kernels=None)
    assert stats.fused == 0 and stats.conv1d == _convs(int8)[0] == 6
    assert "relax.nn.conv1d" not in mod["main"].script()
    target = tvm.target.Target(get_target("host").tvm_target())
    with target:
        mod = relax.get_pipeline("zero")(mod)
    vm = relax.VirtualMachine(relax.build(mod, target), tvm.cpu())
    got = np.concatenate([vm["main"](tvm.runtime.tensor(xi)).numpy() for xi in x])
    ref = predict(int8, x[:, 0])
    assert float(np.abs(got - ref).max()) <= default_tolerance(load_onnx(int8))
    assert float((got.argmax(1) == ref.argmax(1)).mean()) >= 0.9
