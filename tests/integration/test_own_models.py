"""Users' own models through `edgeopt run` end to end on the local board: four families built in
code (toolkit/examples.py), each saved as a module file, TorchScript and ONNX, with its own data
(given validation and test splits). Sparsity >= 0.70, int8, board within 0.005 of the host."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from edgeopt.toolkit import examples

pytestmark = pytest.mark.slow

FORMATS = ("module", "torchscript", "onnx")


@pytest.fixture(scope="module")
def brought(tmp_path_factory):
    """Per family: the data file and the trained model in each format, as a user would save them."""
    from edgeopt.toolkit.export import export_onnx
    from edgeopt.toolkit.models import InputSpec, Model

    d = tmp_path_factory.mktemp("own")
    files = {}
    for fam in examples.FAMILIES:
        data = examples.make_data(fam, train=400, val=100, test=400)
        np.savez(d / f"{fam}.npz", **data)
        m = examples.trained(fam, data).eval()
        shape = (1, *examples.FAMILIES[fam].sample_shape)
        torch.save(m, d / f"{fam}.pt")
        torch.jit.save(torch.jit.trace(m, torch.zeros(shape)), d / f"{fam}.ts.pt")
        export_onnx(Model(m, InputSpec("input", shape)), d / f"{fam}.onnx")
        files[fam] = {
            "data": d / f"{fam}.npz",
            "module": d / f"{fam}.pt",
            "torchscript": d / f"{fam}.ts.pt",
            "onnx": d / f"{fam}.onnx",
        }
    return files


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("family", list(examples.FAMILIES))
def test_run_own_model(brought, tmp_path, family, fmt):
    f = brought[family]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeopt",
            "run",
            "--model",
            str(f[fmt]),
            "--data",
            str(f["data"]),
            "--schedule",
            "oneshot",
            "--json",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    acc = rep["accuracy"]
    assert rep["sparsity"]["global"] >= 0.70
    assert rep["quantization"]["bits"] == 8 and rep["quantization"]["path"] in ("ptq", "ptq+fallback", "qat")
    assert abs(acc["board"] - acc["final"]) <= 0.005
    assert acc["final"] > 0.5  # four classes: far above chance, so the accuracy means something
    assert "x_test/y_test" in acc["measured_on"] and acc["test_samples"] == 400
    manifest = json.loads((tmp_path / "run/bundle/manifest.json").read_text())
    assert manifest["sparsity"]["global"] == pytest.approx(rep["sparsity"]["after_pruning"])
    assert manifest["inputs"][0]["shape"] == [1, *examples.FAMILIES[family].sample_shape]
    ops = manifest["arithmetic"]["int8_ops"]
    if family == "kws":  # 1-D convs on the fused int8 kernels, not int32 ops with fp32 between layers
        assert ops["conv1d"] == 3 and ops["fused"] == ops["conv1d"] + ops["conv2d"] + ops["matmul"]
    spec = json.loads((tmp_path / "run/model/spec.json").read_text())
    # the stage folder says what loading it again takes: these classes live in edgeopt itself
    assert spec["source"]["format"] == fmt and spec["load_requires"]["python_modules"] == []


def test_run_and_prune_on_unlabelled_data_report_agreement_not_accuracy(brought, tmp_path):
    """No y anywhere: the user's model's own top-1 stands in for labels, and everything reported
    as accuracy is agreement with it, said in the report."""
    f = brought["mlp"]
    x = np.load(f["data"])["x"]
    np.savez(tmp_path / "unlabelled.npz", x=x)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeopt",
            "run",
            "--model",
            str(f["module"]),
            "--data",
            str(tmp_path / "unlabelled.npz"),
            "--schedule",
            "oneshot",
            "--json",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    acc = json.loads(r.stdout)["accuracy"]
    assert acc["kind"] == "agreement_with_original"
    assert acc["dense"] == 1.0  # the original agrees with itself
    assert "original model's top-1" in acc["measured_on"] and "never trained on" in acc["measured_on"]
    assert acc["test_samples"] == round(len(x) * 0.2) and 0.5 < acc["board"] <= 1.0
    assert abs(acc["board"] - acc["final"]) <= 0.005
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeopt",
            "prune",
            str(f["module"]),
            "--data",
            str(tmp_path / "unlabelled.npz"),
            "--schedule",
            "oneshot",
            "--final-epochs",
            "1",
            "--json",
            "--quiet",
            "--out",
            str(tmp_path / "pruned"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["accuracy"]["before"] == 1.0 and doc["sparsity"]["global"] >= 0.70
