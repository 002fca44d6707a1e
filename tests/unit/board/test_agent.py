"""The board agent run as a plain subprocess (the SSH path is tested in integration/)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from edgeopt.toolkit.bench.options import BenchOptions
from edgeopt.toolkit.boards.deploy import HOST_ONLY_MODULES

REPO = Path(__file__).resolve().parents[3]
# and onnxruntime: optional on a board, loaded only for a baseline (none is asked here)
HOST_ONLY = HOST_ONLY_MODULES | {"onnxruntime"}


def agent(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TVM_USE_RUNTIME_LIB": "1"}
    r = subprocess.run([sys.executable, "-m", "board.agent", *args], capture_output=True, text=True, env=env, cwd=cwd)
    doc = json.loads(r.stdout)  # stdout is exactly one JSON document
    return r.returncode, doc


def test_info_reports_board_facts():
    code, doc = agent("info")
    assert code == 0 and doc["ok"] and doc["schema"] == "edgeopt.agent/1"
    b = doc["board"]
    assert b["arch"] and b["cores"] >= 1 and b["python"].count(".") == 2
    assert b["tvm"].startswith("0.27")
    assert not HOST_ONLY & set(doc["imports"])


def plan_file(tmp_path, bundle_dir, **protocol) -> str:
    """A one-bundle plan of the `bench` verb (board/agent/plan.py)."""
    plan = {
        "engines": ["tvm"],
        "warmup": 3,
        "rounds": 3,
        "number": 5,
        "min_round_ms": 20,
        "time_evaluator": True,
        "keep_samples": True,
        "bundles": [{"name": "b", "dir": str(bundle_dir), "reference": None}],
        **protocol,
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return str(path)


def test_bench_protocol(host_bundle, tmp_path):
    code, doc = agent("bench", "--plan", plan_file(tmp_path, host_bundle.path), "--threads", "1")
    assert code == 0, doc
    [v] = doc["variants"]
    tvm = v["tvm"]
    lat = tvm["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["runs"] == len(tvm["samples_ms"]) == sum(tvm["calls_per_round"])
    # at least `number` calls and at least min_round_ms in each of the 3 rounds
    assert all(c >= 5 for c in tvm["calls_per_round"]) and len(tvm["calls_per_round"]) == 3
    # a call of this bundle takes microseconds: 20 ms rounds hold far more than `number` calls
    assert all(c > 5 for c in tvm["calls_per_round"])
    assert tvm["load_ms"] > 0 and tvm["first_ms"] > 0
    assert tvm["time_evaluator_median_ms"] > 0
    assert tvm["python_overhead_ms"] == tvm["repeat_mean_median_ms"] - tvm["time_evaluator_median_ms"]
    assert doc["threads"] == 1 and doc["protocol"]["min_round_ms"] == 20
    assert v["bundle"]["library_sha256"] == host_bundle.library_sha256
    assert "ort" not in v and "parity" not in v  # none asked, no reference given
    assert not HOST_ONLY & set(doc["imports"])
    assert "torch" not in doc["imports"]


def test_bench_plan_that_cannot_be_read_is_a_data_failure(tmp_path):
    (tmp_path / "plan.json").write_text("{not json")
    code, doc = agent("bench", "--plan", str(tmp_path / "plan.json"))
    assert code == 1 and doc["ok"] is False and doc["error"]["kind"] == "data"


def test_eval_accuracy_and_parity(host_bundle, quantized, digits, tmp_path):
    from edgeopt.toolkit.onnx_run import predict

    x, y = digits.x_test[:50], digits.y_test[:50]
    ref = predict(quantized.path, x)
    np.savez(tmp_path / "d.npz", x=x, y=y, ref=ref)
    code, doc = agent("eval", "--bundle", str(host_bundle.path), "--data", str(tmp_path / "d.npz"))
    assert code == 0, doc
    expected = float((ref.argmax(1) == y).mean())
    assert abs(doc["accuracy"] - expected) <= 1 / 50
    assert doc["parity"]["top1_agreement"] >= 0.98
    # int8 engines may differ by one output quantization step at a rounding boundary
    assert doc["parity"]["max_abs_diff"] <= host_bundle.manifest["parity"]["tolerance"]
    assert doc["parity"]["mean_abs_diff"] < 1e-3


def test_infer_writes_outputs(host_bundle, digits, tmp_path):
    np.savez(tmp_path / "in.npz", x=digits.x_test[:3])
    code, doc = agent(
        "infer",
        "--bundle",
        str(host_bundle.path),
        "--input",
        str(tmp_path / "in.npz"),
        "--output",
        str(tmp_path / "out.npz"),
    )
    assert code == 0, doc
    assert np.load(tmp_path / "out.npz")["y"].shape == (3, 10)


def _copy_manifest(host_bundle, tmp_path, **target):
    d = tmp_path / "b"
    shutil.copytree(host_bundle.path, d)
    m = json.loads((d / "manifest.json").read_text())
    m["target"].update(target)
    (d / "manifest.json").write_text(json.dumps(m))
    return d


def test_bundle_for_another_cpu_is_refused(host_bundle, tmp_path):
    other = "aarch64" if os.uname().machine != "aarch64" else "x86_64"
    d = _copy_manifest(host_bundle, tmp_path, arch=other, name="cortex-a55")
    code, doc = agent("bench", "--plan", plan_file(tmp_path, d))
    assert code == 1 and not doc["ok"]
    assert doc["error"]["kind"] == "target_mismatch"
    assert other in doc["error"]["message"]


def test_bundle_needing_missing_cpu_features_is_refused(host_bundle, tmp_path):
    # as if built with -mcpu for a newer CPU of the same architecture
    d = _copy_manifest(host_bundle, tmp_path, required_cpu_flags=["avx512f", "no_such_feature_xyz"])
    code, doc = agent("bench", "--plan", plan_file(tmp_path, d))
    assert code == 1 and doc["error"]["kind"] == "target_mismatch"
    assert "no_such_feature_xyz" in doc["error"]["message"]


def test_damaged_library_is_refused(host_bundle, tmp_path):
    d = _copy_manifest(host_bundle, tmp_path)
    with open(d / "model.so", "ab") as f:
        f.write(b"x")
    code, doc = agent("eval", "--bundle", str(d), "--data", "nothing.npz")
    assert code == 1 and doc["error"]["kind"] == "bundle_damaged"


def test_bad_arguments_exit_2():
    r = subprocess.run(
        [sys.executable, "-m", "board.agent", "fly"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert r.returncode == 2


def test_a_malformed_plan_is_one_data_error_before_anything_loads(tmp_path):
    cases = {
        "[1, 2]": "not an object",
        '{"bundles": []}': "has no bundles",
        '{"bundles": [{"name": "b"}]}': "bundles[0]",
        '{"rounds": 0, "bundles": [{"name": "b", "dir": "x"}]}': "rounds=0",
        '{"engines": ["gpu"], "bundles": [{"name": "b", "dir": "x"}]}': "engines=",
        '{"round": 3, "bundles": [{"name": "b", "dir": "x"}]}': "unknown keys ['round']",
    }
    for i, (text, says) in enumerate(cases.items()):
        path = tmp_path / f"plan{i}.json"
        path.write_text(text)
        code, doc = agent("bench", "--plan", str(path))
        assert code == 1 and doc["error"]["kind"] == "data", (text, doc)
        assert says in doc["error"]["message"], (text, doc["error"]["message"])


def test_a_plan_may_leave_the_protocol_to_its_defaults(host_bundle, tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"bundles": [{"name": "b", "dir": str(host_bundle.path)}]}))
    code, doc = agent("bench", "--plan", str(path), "--threads", "1")
    assert code == 0, doc
    p = doc["protocol"]
    host = BenchOptions()  # the agent's defaults are `edgeopt bench`'s
    assert (p["engines"], p["warmup"], p["rounds"], p["calls_per_round"]) == (
        ["tvm"],
        host.warmup,
        host.rounds_used,
        host.calls_per_round,
    )
    assert doc["variants"][0]["tvm"]["latency_ms"]["runs"] >= host.runs
