"""The agent's version verb, parity in bench, and the onnxruntime baseline, run as a subprocess."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]


def agent(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TVM_USE_RUNTIME_LIB": "1"}
    r = subprocess.run([sys.executable, "-m", "board.agent", *args], capture_output=True, text=True, env=env)
    return r.returncode, json.loads(r.stdout)


def test_version_is_cheap_and_matches_the_host_digest():
    from edgeopt.toolkit.boards.deploy import agent_digest

    code, doc = agent("version")
    assert code == 0 and doc["agent_digest"] == agent_digest()
    assert "tvm" not in doc["imports"] and "tvm" not in doc["board"]


def test_bench_reports_parity_against_given_references(host_bundle, quantized, digits, tmp_path):
    from edgeopt.toolkit.onnx_run import predict

    x = digits.x_test[:20]
    ref = predict(quantized.path, x)
    np.savez(tmp_path / "ref.npz", x=x, ref=ref)
    args = ["bench", "--bundle", str(host_bundle.path), "--warmup", "1", "--repeat", "2", "--number", "3",
            "--min-repeat-ms", "0", "--threads", "1"]
    code, doc = agent(*args, "--reference", str(tmp_path / "ref.npz"))
    assert code == 0, doc
    assert doc["parity"]["samples"] == 20 and doc["parity"]["top1_agreement"] >= 0.95
    assert doc["latency_ms"]["runs"] == 6
    assert doc["python_overhead_ms"] == doc["repeat_mean_median_ms"] - doc["time_evaluator_median_ms"]
    # wrong references are noticed: parity is computed, not assumed
    np.savez(tmp_path / "bad.npz", x=x, ref=-ref)
    code, doc = agent(*args, "--reference", str(tmp_path / "bad.npz"))
    assert doc["parity"]["top1_agreement"] < 0.5


def test_baseline_needs_the_onnx_in_the_bundle(host_bundle):
    code, doc = agent("bench", "--bundle", str(host_bundle.path), "--baseline", "ort", "--repeat", "1",
                      "--number", "1", "--min-repeat-ms", "0")
    assert code == 1 and doc["error"]["kind"] == "baseline_unavailable"
    assert "model.onnx" in doc["error"]["message"]
