"""The fused int8 layers on Arm, run on emulated Arm cores (QEMU user mode, the image's own
python3 and TVM runtime) and checked against the QDQ model as written (edgeopt.reference: onnxruntime
on the host, dequantize -> fp32 op -> quantize, no fused integer kernels):
max abs diff 0, top-1 agreement 1.0 on 8 inputs. cortex-a76 runs the dot-product (sdot) kernels,
cortex-a72 the NEON ones. Besides the four models of issue 19, a small 1-D conv model and a
grouped-conv one (tests/e2e/arm_models.py) check the layers run as 2-D / dense ones. The same run
counts guest instructions per inference (toolkit/boards/qemu/count.py), so the counting path is
exercised too."""

from __future__ import annotations

import numpy as np
import pytest
from edgeopt.compile import compile_onnx, get_target

from edgeopt.reference import predict

from .arm_models import make

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

CASES = [("cortex-a76", "cortex-a76", "dotprod"), ("cortex-a72", "cortex-a72", "neon")]


@pytest.fixture(scope="module")
def rootfs():
    from edgeopt.toolkit.boards.qemu.build import find
    from edgeopt.toolkit.boards.qemu.count import plugin

    image = find()
    if image is None:
        pytest.skip("the QEMU board image is not built (edgeopt board qemu build)")
    plugin()  # the instruction-count plugin: qemu-user and its header are set-up requirements
    return image.rootfs


# fused layers of each kind the small shape models must have (stats in the manifest's int8_ops)
SHAPE_LAYERS = {"conv1d": {"conv1d": 3, "depthwise": 1, "grouped": 1}, "grouped": {"grouped": 2}}


@pytest.mark.parametrize("model", ["mlp", "cnn", "resnet", "mobilenetv2", "conv1d", "grouped"])
@pytest.mark.parametrize("target, cpu, isa", CASES)
def test_fused_int8_layers_are_exact_on_the_emulated_core(model, target, cpu, isa, rootfs, tmp_path):
    import json

    from edgeopt.toolkit.boards.qemu.count import Engine, count

    m = make(model, tmp_path / "m")
    bundle, _ = compile_onnx(m["int8"], target=get_target(target), out_dir=tmp_path / "b")
    ops = json.loads((bundle.path / "manifest.json").read_text())["arithmetic"]["int8_ops"]
    assert ops["kernels"] == isa and ops["fused"] >= 1
    for kind, n in SHAPE_LAYERS.get(model, {}).items():
        assert ops[kind] == n, kind
    if model in SHAPE_LAYERS:  # every layer fused, none left to int32 ops with fp32 between them
        assert ops["fused"] == ops["conv1d"] + ops["conv2d"] + ops["matmul"]
    ref = predict(m["int8"], m["x"].reshape(-1, *m["x"].shape[2:]))
    got = count(rootfs=rootfs, cpu=cpu, engine=Engine.tvm, model=bundle.path / "model.so", x=m["x"], warmup=1, runs=1)
    assert got.output.shape == ref.shape
    assert float(np.abs(got.output - ref).max()) == 0.0
    assert float((got.output.argmax(1) == ref.argmax(1)).mean()) == 1.0
    assert got.per_inference > 0
