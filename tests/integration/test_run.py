"""`edgeopt run --json` end to end against the local SSH board: the issue's acceptance values."""

import json
import subprocess
import sys

import pytest
from edgeopt.toolkit.boards.deploy import HOST_ONLY_MODULES
from edgeopt.toolkit.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_result(tmp_path_factory):
    """The console entry point in its own process, as a user runs it."""
    out = tmp_path_factory.mktemp("run") / "artifacts"
    r = subprocess.run(
        [sys.executable, "-m", "toolkit", "run", "--json", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r.returncode, r.stdout, out, r.stderr


def test_stdout_is_exactly_one_json_document(run_result):
    code, stdout = run_result[:2]
    assert code == 0
    report = json.loads(stdout)  # raises if anything else was printed
    assert stdout.strip().count("\n") == 0
    assert report["schema"] == "edgeopt.report/1"


def test_progress_goes_to_stderr(run_result):
    stderr = run_result[3]
    for stage in ("train", "prune", "PTQ", "TVM compile", "deploy", "latency"):
        assert stage in stderr


def test_acceptance_values(run_result):
    r = json.loads(run_result[1])
    acc = r["accuracy"]
    assert r["sparsity"]["global"] >= 0.70
    assert r["quantization"]["path"] == "ptq" and r["quantization"]["bits"] == 8
    assert acc["dense"] >= 0.95
    assert acc["dense"] - acc["final"] <= 0.01
    assert abs(acc["board"] - acc["final"]) <= 0.005
    assert r["latency_ms"]["p50"] > 0
    assert r["latency_ms"]["p50"] <= r["latency_ms"]["p90"] <= r["latency_ms"]["p99"]
    assert r["latency_ms"]["runs"] >= 10
    assert r["bundle"]["bytes"] > 0
    assert r["board"]["kind"] == "local" and r["board"]["arch"]


def test_report_has_the_users_starting_point(run_result):
    """onnxruntime on the original dense fp32 model, same board, same run; the flag follows the numbers."""
    r = json.loads(run_result[1])
    vs = r["original"]
    manifest = json.loads((run_result[2] / "bundle/manifest.json").read_text())
    assert manifest["original"]["file"] in manifest["files"]
    if not vs["available"]:  # a board without onnxruntime says so and invents no number
        assert vs["reason"] and r["speedup_vs_original"] is None
        return
    assert r["speedup_vs_original"] == pytest.approx(vs["p50_ms"] / r["latency_ms"]["p50"])
    assert r["slower_than_original"] == (vs["p50_ms"] < r["latency_ms"]["p50"])
    assert (vs["lever"] is not None) == r["slower_than_original"]


def test_board_numbers_come_from_the_agent(run_result):
    r = json.loads(run_result[1])
    artifacts = run_result[2]
    manifest = json.loads((artifacts / "bundle/manifest.json").read_text())
    # the agent hashed the library it loaded, and it is the one we built
    assert r["board"]["loaded_library_sha256"] == manifest["files"]["model.so"]["sha256"]
    assert manifest["config_hash"] == r["config_hash"]
    for banned in HOST_ONLY_MODULES:
        assert banned not in r["board"]["imports"]
    assert "tvm" in r["board"]["imports"] and "numpy" in r["board"]["imports"]
    # board outputs agree with onnxruntime's on the host
    assert r["parity"]["top1_agreement"] >= 0.99
    assert r["parity"]["max_abs_diff"] <= manifest["parity"]["tolerance"]


def test_sparsity_is_recomputed_from_the_int8_onnx(run_result):
    import onnx
    from onnx import numpy_helper

    r = json.loads(run_result[1])
    model = onnx.load(str(run_result[2] / "quantized/model.int8.onnx"))
    ws = [numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("weight_quantized")]
    zeros = sum(int((w == 0).sum()) for w in ws)
    total = r["params"]["before"]
    assert total == 784 * 128 + 128 * 10
    assert r["sparsity"]["global"] == pytest.approx(zeros / total)


def test_every_stage_artifact_is_kept(run_result):
    d = run_result[2]
    for rel in (
        "model/model.pt",
        "model/spec.json",
        "pruned/pruned.pt",
        "pruned/prune.json",
        "quantized/model.onnx",
        "quantized/model.int8.onnx",
        "quantized/quant.json",
        "bundle/model.so",
        "bundle/manifest.json",
        "result.json",
        "report.json",
    ):
        assert (d / rel).is_file(), rel
    assert json.loads((d / "report.json").read_text()) == json.loads(run_result[1])


def test_stages_reload_from_disk(run_result):
    from edgeopt.compile import Bundle
    from edgeopt.toolkit.models import Model
    from edgeopt.toolkit.prune import PrunedModel
    from edgeopt.toolkit.quantize import QuantizedModel

    d = run_result[2]
    r = json.loads(run_result[1])
    assert Model.load(d / "model").accuracy == r["accuracy"]["dense"]
    assert PrunedModel.load(d / "pruned").global_sparsity >= 0.70
    assert QuantizedModel.load(d / "quantized").accuracy_quantized == r["accuracy"]["final"]
    assert Bundle.load(d / "bundle").library_sha256 == r["bundle"]["library_sha256"]


def test_table_output(capsys, tmp_path):
    # the human-readable path, on a reused config: fewer epochs to keep the suite quick
    cfg = tmp_path / "run.toml"
    cfg.write_text("epochs = 3\nrepeat = 2\nmin-repeat-ms = 10\n")
    assert main(["run", "--config", str(cfg), "--quiet"]) == 0
    out = capsys.readouterr().out
    for label in ("accuracy dense", "accuracy on board", "sparsity", "bundle bytes", "latency p50"):
        assert label in out
