"""A user's own model: formats, conversion of graphs to torch layers, structured pruning of them,
unlabelled calibration data, and what the bundle's manifest says afterwards."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from edgeopt.toolkit import examples
from edgeopt.toolkit.export import export_onnx
from edgeopt.toolkit.loader import ModelFormat, load
from edgeopt.toolkit.models import InputSpec, Model


@pytest.fixture(scope="module")
def mobilenet_onnx(tmp_path_factory):
    d = tmp_path_factory.mktemp("mbv2")
    m = examples.build("mobilenet").eval()
    return m, export_onnx(Model(m, InputSpec("input", (1, 3, 16, 16))), d / "mbv2.onnx")


@pytest.mark.parametrize("fmt", ["module", "state_dict", "torchscript", "exported", "onnx"])
def test_every_format_loads_to_the_same_function(tmp_path, fmt):
    m = examples.build("kws").eval()
    x = torch.from_numpy(examples.make_data("kws", train=4, val=1, test=1)["x"])
    path = tmp_path / "m"
    if fmt == "module":
        torch.save(m, path)
    elif fmt == "state_dict":
        torch.save(m.state_dict(), path)
    elif fmt == "torchscript":
        torch.jit.save(torch.jit.trace(m, x[:1]), path)
    elif fmt == "exported":
        torch.export.save(torch.export.export(m, (x[:1],)), path)
    else:
        export_onnx(Model(m, InputSpec("input", (1, 40, 98))), path)
    loaded = load(path, factory="edgeopt.toolkit.examples:KeywordSpotter1D", sample_shape=(1, 40, 98))
    assert loaded.format is ModelFormat(fmt)
    with torch.no_grad():
        assert torch.allclose(loaded.module(x), m(x), atol=1e-4)
    # graphs come back as real layers, which pruning works on
    assert any(isinstance(layer, torch.nn.Conv1d) for layer in loaded.module.modules())


def test_structured_pruning_of_a_converted_onnx_keeps_residual_and_depthwise_consistent(mobilenet_onnx, tmp_path):
    from edgeopt.toolkit.prune import Method, PruneConfig, Schedule
    from edgeopt.toolkit.prune.engine import _Plan

    _, path = mobilenet_onnx
    module = load(path).module
    example = torch.zeros(1, 3, 16, 16)
    plan = _Plan(module, example, PruneConfig(method=Method.structured, schedule=Schedule.oneshot))
    plan.prune_to(module, 0.70)
    assert plan.removed(module) >= 0.70
    out = module(torch.rand(2, 3, 16, 16))
    assert out.shape == (2, 4)
    for layer in module.modules():  # depthwise stays depthwise: one group per channel
        if isinstance(layer, torch.nn.Conv2d) and layer.groups > 1:
            assert layer.groups == layer.in_channels == layer.out_channels
    # and the pruned graph still exports
    export_onnx(Model(module, InputSpec("input", (1, 3, 16, 16))), tmp_path / "pruned.onnx")


def test_unlabelled_calibration_data_claims_no_accuracy(mobilenet_onnx, tmp_path, capsys):
    from edgeopt.toolkit.cli import main

    _, path = mobilenet_onnx
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).normal(size=(16, 3, 16, 16)).astype(np.float32))
    code = main(
        ["quantize", str(path), "--data", str(tmp_path / "calib.npz"), "--out", str(tmp_path / "q"), "--json", "-q"]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert doc["accuracy"]["quantized"] is None and "no labels" in doc["validation"]["note"]
    assert (tmp_path / "q" / "model.int8.onnx").is_file()


def test_unsupported_onnx_operator_is_refused_by_name(tmp_path, capsys):
    import onnx
    from edgeopt.toolkit.cli import main
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Erf", ["input"], ["output"], name="erf0")],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 20])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 20])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "erf.onnx")
    np.savez(tmp_path / "d.npz", x=np.zeros((30, 20), np.float32), y=np.zeros(30, np.int64))
    code = main(
        ["prune", str(tmp_path / "erf.onnx"), "--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "p"), "-q"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 3 and len(err.splitlines()) == 1 and "operator Erf" in err and "erf.onnx" in err


def test_stage_folder_says_what_it_needs_to_load_again(tmp_path, monkeypatch):
    import importlib
    import sys

    from edgeopt.errors import InputError

    (tmp_path / "usernet_i17.py").write_text(
        "import torch\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__(); "
        "self.fc = torch.nn.Linear(20, 4)\n"
        "    def forward(self, x):\n        return self.fc(x)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    net = importlib.import_module("usernet_i17").Net()
    Model(net, InputSpec("input", (1, 20))).save(tmp_path / "stage")
    spec = json.loads((tmp_path / "stage/spec.json").read_text())
    assert spec["load_requires"]["python_modules"] == ["usernet_i17"]
    assert Model.load(tmp_path / "stage").module(torch.zeros(1, 20)).shape == (1, 4)
    # the user's module gone: one InputError naming it and the fix, not a ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "usernet_i17")
    (tmp_path / "usernet_i17.py").unlink()
    with pytest.raises(InputError, match="usernet_i17.*PYTHONPATH"):
        Model.load(tmp_path / "stage")


@pytest.mark.slow
def test_compile_after_input_shape_records_the_real_output_shape(tmp_path, capsys):
    import onnx
    from edgeopt.toolkit.cli import main

    path = export_onnx(Model(examples.build("mlp"), InputSpec("input", (1, 20))), tmp_path / "m.onnx")
    model = onnx.load(str(path))
    for v in (model.graph.input[0], model.graph.output[0]):
        v.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(model, tmp_path / "dyn.onnx")
    # a quantize stage folder made from a structured prune: its sparsity goes into the manifest
    carried = {
        "global": 0.704,
        "method": "structured",
        "source": "prune.json",
        "layers": [{"name": "0", "params": 2560, "zeros": 1802, "sparsity": 0.703906}],
    }
    (tmp_path / "quant.json").write_text(json.dumps({"sparsity": carried}))
    code = main(
        [
            "compile",
            str(tmp_path / "dyn.onnx"),
            "--input-shape",
            "input=1,20",
            "--out",
            str(tmp_path / "b"),
            "--json",
            "-q",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["outputs"][0]["shape"] == [1, 4] and doc["inputs"][0]["shape"] == [1, 20]  # was [0, 4]
    from edgeopt.toolkit.bench.variants import expand

    (variant,) = expand([tmp_path / "b"])
    described = variant.describe()["sparsity"]
    # the bench report's figure is the pruning stage's, not a count of zeros in the (unpruned) ONNX
    assert described["global"] == 0.704 and "prune.json" in described["source"]


@pytest.mark.slow
def test_a_batch_input_shape_compiles_checked_n_at_a_time_and_bench_says_why_not(tmp_path, capsys):
    """--input-shape with a batch of 3: parity runs the library 3 samples at a time (it exited 70
    feeding one); bench, whose agent measures one sample per call, refuses it in one line (exit 2)."""
    import onnx
    from edgeopt.toolkit.cli import main

    path = export_onnx(Model(examples.build("mlp"), InputSpec("input", (1, 20))), tmp_path / "m.onnx")
    model = onnx.load(str(path))
    for v in (model.graph.input[0], model.graph.output[0]):
        v.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(model, tmp_path / "dyn.onnx")
    code = main(
        [
            "compile",
            str(tmp_path / "dyn.onnx"),
            "--input-shape",
            "input=3,20",
            "--out",
            str(tmp_path / "b"),
            "--json",
            "-q",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["inputs"][0]["shape"] == [3, 20] and doc["outputs"][0]["shape"] == [3, 4]
    assert doc["parity"]["samples"] % 3 == 0 and doc["parity"]["max_abs_diff"] <= doc["parity"]["tolerance"]
    code = main(["bench", str(tmp_path / "b"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "built for a batch of 3" in err and "--input-shape NAME=1" in err
