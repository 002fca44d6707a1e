"""Cross-compiled bundles for the Arm targets (run on an aarch64 board: see the QEMU tests)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from edgeopt.compile import TARGETS, Bundle, compile_onnx, get_target

from edgeopt.errors import CompileError

ELF_MACHINE_AARCH64 = 0xB7


def elf_machine(path) -> int:
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF"
    return int.from_bytes(head[18:20], "little")


def test_registry_names():
    assert {"host", "aarch64", "cortex-a55", "cortex-a72", "cortex-a76"} <= set(TARGETS)
    assert get_target("cortex-a55").tvm_target()["mcpu"] == "cortex-a55"
    assert "+dotprod" in get_target("cortex-a55").tvm_target()["mattr"]


@pytest.mark.parametrize("name", ["aarch64", "cortex-a55"])
def test_cross_compile_gives_an_aarch64_library(name, quantized, tmp_path):
    bundle, parity = compile_onnx(quantized.path, target=get_target(name), out_dir=tmp_path / name)
    assert parity is None  # cannot run here: checked on the board
    assert elf_machine(bundle.path / "model.so") == ELF_MACHINE_AARCH64
    m = Bundle.load(bundle.path).manifest
    assert m["target"]["arch"] == "aarch64" and m["target"]["triple"] == "aarch64-linux-gnu"
    assert "asimd" in m["target"]["required_cpu_flags"]
    if name == "cortex-a55":
        assert "asimddp" in m["target"]["required_cpu_flags"]


def test_board_agent_refuses_an_arm_bundle_on_this_cpu(quantized, tmp_path):
    import os
    import platform
    from pathlib import Path

    if platform.machine() == "aarch64":
        pytest.skip("this host is aarch64")
    bundle, _ = compile_onnx(quantized.path, target=get_target("aarch64"), out_dir=tmp_path / "b")
    repo = Path(__file__).resolve().parents[3]
    plan = tmp_path / "plan.json"  # the agent's one measuring verb (board/agent/plan.py)
    plan.write_text(json.dumps({"engines": ["tvm"], "bundles": [{"name": "b", "dir": str(bundle.path)}]}))
    r = subprocess.run(
        [sys.executable, "-m", "board.agent", "bench", "--plan", str(plan)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and doc["error"]["kind"] == "target_mismatch"
    assert "aarch64" in doc["error"]["message"]


def test_missing_cross_compiler_is_one_clear_error(quantized, tmp_path, monkeypatch):
    import dataclasses

    missing = dataclasses.replace(get_target("aarch64"), cc="no-such-gcc-xyz")
    with pytest.raises(CompileError, match="apt-get install gcc-aarch64-linux-gnu"):
        compile_onnx(quantized.path, target=missing, out_dir=tmp_path / "b")


def test_compile_cli_json(quantized, tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeopt",
            "compile",
            str(quantized.path),
            "--target",
            "host",
            "--out",
            str(tmp_path / "b"),
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["bundle"]["bytes"] > 0 and doc["target"]["name"] == "host"
    assert doc["parity"]["max_abs_diff"] is not None and doc["target"]["triple"]
    assert doc["arithmetic"]["int8_ops"]["matmul"] == 2  # the int8 MLP runs integer kernels
    from edgeopt.compile import Bundle

    m = Bundle.load(tmp_path / "b").manifest  # the ONNX travels in the bundle, hashed like the library
    assert "model.onnx" in m["files"] and m["preprocessing"]["declared"] is False
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeopt",
            "compile",
            str(quantized.path),
            "--out",
            str(tmp_path / "c"),
            "--no-onnx",
            "--float-arith",
            "--scale",
            "0.5",
            "--mean",
            "0.1",
            "--std",
            "0.3",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    m = Bundle.load(tmp_path / "c").manifest
    assert set(m["files"]) == {"model.so"} and m["arithmetic"]["int8_ops"] is None
    assert m["preprocessing"] == {"layout": "NCHW", "scale": 0.5, "mean": [0.1], "std": [0.3], "declared": True}


def test_compile_cli_input_shape_for_symbolic_dims(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    onnx.save(model, str(tmp_path / "m.onnx"))
    base = [sys.executable, "-m", "edgeopt", "compile", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "b")]
    r = subprocess.run(base, capture_output=True, text=True)
    assert r.returncode == 3 and "--input-shape x=" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(base + ["--input-shape", "x=1,4", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["inputs"] == [{"name": "x", "shape": [1, 4], "dtype": "float32"}]


def _tiny_matmul_onnx(path):
    """One 16x16 matmul + bias + ReLU: a single, quick task for MetaSchedule."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(16, 16)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(size=(16,)).astype(np.float32), "b")
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["m"]),
            helper.make_node("Add", ["m", "b"], ["a"]),
            helper.make_node("Relu", ["a"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        initializer=[w, b],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), str(path))
    return path


@pytest.mark.slow
def test_tuning_is_correct_cached_reused_and_quiet(tmp_path, monkeypatch):
    """`edgeopt compile --tune` on a tiny model, 2 trials: the tuned bundle agrees with
    onnxruntime, the database is cached and reused, MetaSchedule's log lines land in the log
    directory the output names and none reaches the terminal, and a bar shows trials/budget."""
    import os
    from pathlib import Path

    cache = tmp_path / "cache"
    model = _tiny_matmul_onnx(tmp_path / "tiny.onnx")
    # a terminal as rich sees one (the bar draws), wide enough that no path is wrapped
    env = {
        **os.environ,
        "EDGEOPT_CACHE_DIR": str(cache),
        "TTY_COMPATIBLE": "1",
        "TTY_INTERACTIVE": "1",
        "COLUMNS": "400",
    }
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeopt",
            "compile",
            str(model),
            "--tune",
            "--trials",
            "2",
            "--out",
            str(tmp_path / "t1"),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    t = doc["tuning"]
    assert t["reused"] is False and t["trials"] == 2 and 1 <= t["tuned_tasks"] <= t["tasks"]
    assert doc["parity"]["max_abs_diff"] <= doc["parity"]["tolerance"]  # tuned code agrees with onnxruntime
    db = cache / "tuning" / t["database"]
    records = (db / "database_tuning_record.json").read_text().splitlines()
    assert len({json.loads(line)[0] for line in records}) == t["tuned_tasks"]  # each got a measured schedule
    lat = t["latency_us"]  # the faster of the tuned and untuned builds is kept, measured here
    assert lat[t["kept"]] == min(lat.values()) > 0

    # quiet: MetaSchedule's lines are in the named log directory, not on the terminal
    log = Path(t["log"])
    assert log == db / "logs" and str(log) in r.stderr
    lines = [line for f in log.iterdir() for line in f.read_text().splitlines()]
    assert len(lines) >= 10 and any("[INFO]" in line for line in lines)
    terminal = r.stdout + r.stderr
    assert "[INFO]" not in terminal and "[DEBUG]" not in terminal and "meta_schedule" not in terminal
    assert not {line.split("] ", 1)[-1] for line in lines if "] " in line} & set(terminal.splitlines())
    # visible: the bar showed trials measured against the budget
    assert "2/2" in r.stderr and "trials" in r.stderr

    monkeypatch.setenv("EDGEOPT_CACHE_DIR", str(cache))
    again, _ = compile_onnx(model, target=get_target("host"), out_dir=tmp_path / "t2", tune_trials=2)
    timing = ("kept", "latency_us")  # measured anew each compile
    assert {k: v for k, v in again.manifest["tuning"].items() if k not in timing} == {
        **{k: v for k, v in t.items() if k not in timing},
        "reused": True,
    }


def test_tuning_for_a_cross_target_is_refused(quantized, tmp_path):
    from edgeopt.errors import UsageError

    with pytest.raises(UsageError, match="needs a board of that kind"):
        compile_onnx(quantized.path, target=get_target("cortex-a72"), out_dir=tmp_path / "b", tune_trials=8)


def test_tuning_budget_goes_to_the_heavy_tasks_first():
    """A matmul and three element-wise ops: the matmul (nearly all the arithmetic) gets three
    quarters of the budget; the others share the rest only while each can have a trial."""
    import tvm
    from edgeopt.compile.tune import budget
    from tvm import relax
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((64, 256), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(x, relax.const(np.ones((256, 256), np.float32))))
            # on their own input, so that they stay tasks of their own
            others = [bb.emit(op(x)) for op in (relax.op.exp, relax.op.sqrt, relax.op.permute_dims)]
            out = bb.emit_output(relax.Tuple([y, *others]))
        bb.emit_func_output(out)
    target = tvm.target.Target({"kind": "llvm"})
    with target:
        mod = relax.get_pipeline("zero")(bb.get())
    tasks = list(extract_tasks(mod, target))
    assert len(tasks) >= 2
    tiers = budget(tasks, 40)
    (heavy, per_heavy), *rest = tiers
    assert [t.task_name for t in heavy] == ["matmul"] and per_heavy == 30 and len(tasks) == 4
    assert rest and sum(len(g) for g, _ in rest) == len(tasks) - 1
    assert per_heavy * len(heavy) + sum(p * len(g) for g, p in rest) <= 40
    assert budget(tasks, 8) == [(heavy, 8)]  # too small to give the light ones a trial each
