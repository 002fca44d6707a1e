"""The agent's version verb, parity in a bench plan, and the onnxruntime engine, run as a subprocess."""

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


def plan(tmp_path, bundle, reference=None, **protocol) -> str:
    doc = {
        "engines": ["tvm"],
        "warmup": 1,
        "rounds": 2,
        "number": 3,
        "min_round_ms": 0,
        "time_evaluator": True,
        "bundles": [{"name": "b", "dir": str(bundle.path), "reference": reference}],
        **protocol,
    }
    path = tmp_path / f"plan-{len(list(tmp_path.glob('plan-*')))}.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_bench_reports_parity_against_given_references(host_bundle, quantized, digits, tmp_path):
    from edgeopt.toolkit.onnx_run import predict

    x = digits.x_test[:20]
    ref = predict(quantized.path, x)
    np.savez(tmp_path / "ref.npz", x=x, ref=ref)
    code, doc = agent("bench", "--plan", plan(tmp_path, host_bundle, str(tmp_path / "ref.npz")), "--threads", "1")
    assert code == 0, doc
    [v] = doc["variants"]
    assert v["parity"]["samples"] == 20 and v["parity"]["top1_agreement"] >= 0.95
    assert v["tvm"]["latency_ms"]["runs"] == 6
    # wrong references are noticed: parity is computed, not assumed
    np.savez(tmp_path / "bad.npz", x=x, ref=-ref)
    code, doc = agent("bench", "--plan", plan(tmp_path, host_bundle, str(tmp_path / "bad.npz")), "--threads", "1")
    assert doc["variants"][0]["parity"]["top1_agreement"] < 0.5


def test_onnxruntime_engine_needs_the_onnx_in_the_bundle(host_bundle, tmp_path):
    """Not a failure of the plan: the engine says why it did not run (the host decides)."""
    code, doc = agent("bench", "--plan", plan(tmp_path, host_bundle, engines=["ort"]))
    assert code == 0, doc
    ort = doc["variants"][0]["ort"]
    assert ort["available"] is False and "model.onnx" in ort["reason"]
