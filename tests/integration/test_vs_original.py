"""Every latency report carries the user's starting point (issue 18, item 1): onnxruntime running
the original dense fp32 model on the same board in the same run, `speedup_vs_original`, and a flag
plus a lever when the bundle is slower. The case: a small conv net compiled fp32 and untuned
(TVM's default schedules), which on x86 hosts runs many times slower than onnxruntime. The test
asserts the flag's consistency with the numbers measured, never a speed."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from edgeopt.toolkit.cli import main

pytestmark = pytest.mark.slow

FAST = ["--runs", "16", "--rounds", "4", "--warmup", "2", "--profile-runs", "0"]


def _conv_net(path):
    """3x32x32 -> two 3x3 convolutions (32 channels) -> global pool -> 10 classes, random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = lambda *s: (rng.standard_normal(s) * 0.1).astype(np.float32)  # noqa: E731
    inits = [
        numpy_helper.from_array(a, n)
        for n, a in [
            ("w1", w(32, 3, 3, 3)),
            ("b1", w(32)),
            ("w2", w(32, 32, 3, 3)),
            ("b2", w(32)),
            ("w3", w(32, 10)),
            ("b3", w(10)),
        ]
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def slow_bundle(tmp_path_factory):
    """An fp32, untuned TVM bundle of the conv net, carrying that same net as its original."""
    from edgeopt.compile import compile_onnx, get_target
    from edgeopt.toolkit import original

    d = tmp_path_factory.mktemp("vs-original")
    src = _conv_net(d / "conv.onnx")
    bundle, _ = compile_onnx(src, target=get_target("host"), out_dir=d / "bundle", onnx_copy=True)
    return original.attach(bundle, src, source="test conv net")


def test_attached_original_is_listed_and_hashed(slow_bundle):
    from edgeopt.compile import Bundle
    from edgeopt.toolkit.original import FILE

    again = Bundle.load(slow_bundle.path)  # verifies every listed file's hash
    assert FILE in again.files and again.manifest["original"]["precision"] == "fp32"


def test_bench_flags_a_bundle_slower_than_its_original(slow_bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEOPT_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("EDGEOPT_DATA_DIR", str(tmp_path / "data"))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(
            [
                "bench",
                str(slow_bundle.path),
                "--board",
                "local",
                *FAST,
                "--out",
                str(tmp_path / "report"),
                "--json",
                "--quiet",
            ]
        )
    assert code == 0
    doc = json.loads(buf.getvalue())
    board = doc["boards"][0]
    row = next(iter(doc["summary"]["boards"][board["name"]]["variants"].values()))
    vs = row["vs_original"]
    assert vs["available"], vs
    measured = next(iter(board["results"].values()))
    orig_p50 = measured["original"]["latency_ms"]["p50"]  # the agent's own measurement of original.onnx
    assert vs["p50_ms"] == orig_p50
    assert vs["speedup_vs_original"] == pytest.approx(orig_p50 / row["p50_ms"])
    assert vs["slower_than_original"] == (orig_p50 < row["p50_ms"])
    md = (tmp_path / "report" / "report.md").read_text()
    if vs["slower_than_original"]:  # what this bundle is built to be; reported, not assumed
        assert vs["lever"] and vs["levers"][0]["name"] == "tune"  # fp32 and untuned: tuning is the first lever
        assert "SLOWER" in md
    else:
        assert vs["lever"] is None and "SLOWER" not in md


def _light_original(path):
    """The same 3x32x32 input, averaged to 3 numbers: onnxruntime runs it in microseconds."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "light",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_bench_flags_a_bundle_known_to_be_slower(slow_bundle, tmp_path, monkeypatch):
    """Known by construction, not by timing: the bundle (two untuned fp32 3x3 convolutions, ~10M
    multiply-adds) carries as its starting point a model that only averages the input (3K adds).
    Whatever the machine, it is slower than that start: the JSON must flag it, with a lever."""
    import shutil

    from edgeopt.compile import Bundle
    from edgeopt.toolkit import original

    monkeypatch.setenv("EDGEOPT_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("EDGEOPT_DATA_DIR", str(tmp_path / "data"))
    shutil.copytree(slow_bundle.path, tmp_path / "bundle")
    bundle = original.attach(
        Bundle.load(tmp_path / "bundle"), _light_original(tmp_path / "light.onnx"), source="an averaging model"
    )
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(
            [
                "bench",
                str(bundle.path),
                "--board",
                "local",
                *FAST,
                "--out",
                str(tmp_path / "report"),
                "--json",
                "--quiet",
            ]
        )
    assert code == 0
    doc = json.loads(buf.getvalue())
    row = next(iter(doc["summary"]["boards"][doc["boards"][0]["name"]]["variants"].values()))
    vs = row["vs_original"]
    assert vs["available"] and vs["slower_than_original"] is True and vs["speedup_vs_original"] < 1.0
    assert vs["lever"] == vs["levers"][0]["text"] and vs["levers"][0]["name"] == "tune"
    buf = io.StringIO()  # one bundle on one board, no report folder: the same flag in its JSON
    with contextlib.redirect_stdout(buf):
        code = main(
            ["bench", str(bundle.path), "--board", "local", "--runs", "16", "--warmup", "2", "--json", "--quiet"]
        )
    assert code == 0
    doc = json.loads(buf.getvalue())
    assert doc["slower_than_original"] is True and doc["speedup_vs_original"] < 1.0
    assert doc["vs_original"]["p50_ms"] == doc["original"]["latency_ms"]["p50"]
    assert doc["vs_original"]["levers"][0]["name"] == "tune"
    buf = io.StringIO()  # the same bench as text: a row per thread count, the verdict, parity
    with contextlib.redirect_stdout(buf):
        code = main(["bench", str(bundle.path), "--runs", "8", "--warmup", "1", "--threads", "1,2", "--quiet"])
    assert code == 0
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("board edgeopt@127.0.0.1:") and "first inference" in lines[0]
    assert [line.split()[:2] for line in lines if line.startswith("tvm ")] == [["tvm", "1"], ["tvm", "2"]]
    assert any(line.startswith("vs the original model (1 threads): ") for line in lines)
    assert lines[-1].startswith("parity with onnxruntime on the host: top-1 agreement ")
