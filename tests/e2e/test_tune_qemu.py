"""Tuning for an Arm target on the emulated aarch64 board (user mode, QEMU_CPU=cortex-a76): the
candidates are cross-compiled here and timed by TVM's RPC server running on the board, reached
through the SSH connection. Emulated timings are not hardware numbers and nothing here claims a
speed-up: asserted are where the measurements came from, that the bundle applies the records, and
parity with the host's reference on the board. A core without the target's features is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from edgeopt.toolkit.cli import main

from .. import qemuboard
from ..unit.compile.test_targets import _tiny_matmul_onnx

pytestmark = [pytest.mark.qemu, pytest.mark.slow]


def fresh_model(path):
    """The tiny model with a doc string of its own: a database key no earlier run has (the tuning
    cache stays the one holding the board image, which is never rebuilt)."""
    import uuid

    import onnx

    m = onnx.load(str(_tiny_matmul_onnx(path)))
    m.doc_string = f"edgeopt test {uuid.uuid4()}"
    onnx.save(m, str(path))
    return path


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    with qemuboard.config_dir(tmp_path_factory.mktemp("qemu-cfg")) as d:
        yield d


def test_tune_cortex_a76_on_the_emulated_board(cfg, tmp_path, capsys):
    from edgeopt.compile.bundle import Bundle
    from edgeopt.toolkit.boards.deploy import Connection
    from edgeopt.toolkit.boards.ops import bench

    from edgeopt import paths

    model = fresh_model(tmp_path / "tiny.onnx")
    with qemuboard.running("user", cpu="cortex-a76") as doc:
        capsys.readouterr()
        code = main(
            [
                "compile",
                str(model),
                "--target",
                "cortex-a76",
                "--tune",
                "--trials",
                "2",
                "--board",
                "qemu",
                "--out",
                str(tmp_path / "b"),
                "--json",
            ]
        )
        out, err = capsys.readouterr()
        assert code == 0, err[-3000:]
        t = json.loads(out)["tuning"]
        with capsys.disabled():
            print(f"\n[qemu] tuned on the board: {t['measured_on']}, applied {t['applied']}\n{err[-1500:]}")
        # measured on the emulated A76: its identity keys the records, its server loaded the candidates
        [m] = t["measured_on"]
        assert t["reused"] is False and m["name"] == "qemu" and m["measured"] >= 1
        assert t["board"]["arch"] == "aarch64" and "cortex-a76" in t["board"]["cpu"]
        assert "asimddp" in t["board"]["cpu_features"]
        records = [
            json.loads(line)
            for line in (paths.cache_dir() / "tuning" / t["database"] / "database_tuning_record.json").open()
        ]
        assert any(r[1][1][0] < 1.0 for r in records)  # a real run time came back from the board
        assert t["applied"] >= 1 and t["kept"] == "tuned"
        # the tuned bundle runs on the board and agrees with onnxruntime on the host
        bundle = Bundle.load(tmp_path / "b")
        assert bundle.manifest["tuning"]["database"] == t["database"]
        data = tmp_path / "x.npz"
        np.savez(data, x=np.random.default_rng(0).random((8, 16), dtype=np.float32))
        with Connection(qemuboard.spec("user", doc)) as c:
            r = bench(c, bundle, runs=3, warmup=1, data=data)
            # and no RPC server is left on the board
            code, ps, _ = c.run(["ps", "-eo", "args"])
        assert code == 0 and "tvm.exec.rpc_server" not in ps
    p = r["parity"]
    assert p["samples"] == 8 and p["max_abs_diff"] <= bundle.manifest["parity"]["tolerance"]


def test_a_core_without_the_targets_features_is_refused_before_tuning(cfg, tmp_path, capsys):
    """cortex-a76 code needs the dot product (asimddp); the emulated A72 has none."""
    model = fresh_model(tmp_path / "tiny.onnx")
    with qemuboard.running("user", cpu="cortex-a72"):
        capsys.readouterr()
        code = main(
            [
                "compile",
                str(model),
                "--target",
                "cortex-a76",
                "--tune",
                "--trials",
                "2",
                "--board",
                "qemu",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        err = capsys.readouterr().err
    assert code == 7 and "lacks CPU features" in err and "asimddp" in err and "refused before tuning" in err
    assert not (tmp_path / "b").exists()
