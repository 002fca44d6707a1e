"""The emulated aarch64 board, end to end, with the real tools: the image built by mmdebstrap,
the board's own arm64 OpenSSH server (qemu-user in a chroot, or a booted kernel under
qemu-system-aarch64), paramiko with the host key verified, the agent running the cross-compiled
bundle with the TVM runtime. Numbers are printed (run with -s to see them), never asserted."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from edgeopt.toolkit.cli import main

from .. import qemuboard

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

AUXV = (
    "import ctypes; g = ctypes.CDLL(None).getauxval; g.restype = ctypes.c_ulong; "
    "g.argtypes = [ctypes.c_ulong]; print(g(16), g(26))"
)
ASIMDDP = 1 << 20  # HWCAP_ASIMDDP: the dot product instructions


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    with qemuboard.config_dir(tmp_path_factory.mktemp("qemu-cfg")) as d:
        yield d


def left_behind(before: dict, after: dict) -> list[str]:
    from edgeopt.toolkit.boards.config import cache_dir

    ours = str(cache_dir() / "qemu")
    out = [f"mount {m}" for m in sorted(after["mounts"] - before["mounts"])]
    if after["binfmt"] != before["binfmt"]:
        out.append(f"binfmt_misc {before['binfmt']} -> {after['binfmt']}")
    out += [
        f"process {pid} {cmd!r} (root {root})"
        for pid, (cmd, root) in after["procs"].items()
        if root.startswith(ours) or ours in cmd
    ]
    return out


def test_user_mode_up_down_leaves_nothing(cfg):
    from edgeopt.toolkit.boards.deploy import Connection
    from edgeopt.toolkit.boards.qemu import host, state

    before = qemuboard.host_snapshot()
    with qemuboard.running("user") as doc:
        during = qemuboard.host_snapshot()
        root = doc["root"]
        assert {f"{root}{m}" for m in ("", "/proc", "/sys", "/dev", "/dev/pts", "/proc/cpuinfo")} <= during["mounts"]
        assert host.binfmt_registered()
        # reachable the normal way: the boards.toml entry `up` wrote, the host key it recorded
        assert "[boards.qemu]" in (cfg / "boards.toml").read_text()
        assert (cfg / "known_hosts").read_text().count(f"[127.0.0.1]:{doc['port']} ") == len(
            qemuboard.image().host_keys
        )
        with Connection(qemuboard.spec("user", doc)) as c:
            assert c.arch() == "aarch64"
            code, out, _ = c.run(["cat", "/proc/cpuinfo"])
            assert code == 0 and "cortex-a72 (emulated" in out
            code, out, _ = c.run(["sh", "-c", "echo $QEMU_CPU"])
            assert out.strip() == "cortex-a72"
        assert [p for p, (cmd, r) in during["procs"].items() if r == root]  # sshd runs in the chroot
    after = qemuboard.host_snapshot()
    assert left_behind(before, after) == []
    assert not state.run_dir("user").exists() and state.load("user") is None
    assert not (cfg / "boards.toml").exists()
    assert not (cfg / "known_hosts").exists()  # it held only the board's keys


@pytest.fixture(scope="module")
def quantized_onnx(quantized):
    return quantized.path


@pytest.mark.parametrize("target", ["aarch64", "cortex-a55", "cortex-a72", "cortex-a76"])
def test_every_arm_target_runs_on_its_core(target, cfg, quantized_onnx, digits, tmp_path):
    """Each named aarch64 target's bundle, on the user-mode board emulating that core (QEMU 7.2
    has no Cortex-A55: the A76, the closest core it has with the A55's dot product), against
    onnxruntime on the host."""
    from edgeopt.compile import compile_onnx, get_target
    from edgeopt.toolkit.boards.deploy import Connection
    from edgeopt.toolkit.boards.ops import bench
    from edgeopt.toolkit.boards.qemu.user import TARGET_CPU

    bundle, _ = compile_onnx(quantized_onnx, target=get_target(target), out_dir=tmp_path / "bundle", onnx_copy=True)
    data = tmp_path / "x.npz"
    np.savez(data, x=digits.x_test[:32])  # bench sends at most 32
    cpu = TARGET_CPU[target]
    with qemuboard.running("user", cpu=cpu) as doc:
        with Connection(qemuboard.spec("user", doc)) as c:
            code, out, _ = c.run(["python3", "-c", AUXV])  # what the emulated core really has
            hwcap = int(out.split()[0])
            assert code == 0 and bool(hwcap & ASIMDDP) == (cpu == "cortex-a76")
            t = time.monotonic()
            r = bench(c, bundle, runs=10, warmup=2, data=data)
    p = r["parity"]
    print(
        f"\n[qemu] target {target}: QEMU_CPU={cpu}, top-1 agreement {p['top1_agreement']:.4f}, "
        f"max abs diff {p['max_abs_diff']:.3g} over {p['samples']} inputs, p50 {r['latency_ms']['p50']:.3f} ms "
        f"(emulated), bench {time.monotonic() - t:.1f} s"
    )
    assert r["board"]["arch"] == "aarch64" and cpu in r["board"]["cpu"]
    assert r["bundle"]["library_sha256"] == bundle.library_sha256
    assert p["samples"] == 32 and p["top1_agreement"] >= 0.99
    assert p["max_abs_diff"] <= bundle.manifest["parity"]["tolerance"]
    ins = r["instructions_per_inference"]  # counted on the board's own core (toolkit/boards/qemu/count.py)
    assert ins["available"], ins.get("reason")
    assert ins["cpu"] == cpu and ins["tvm"] > 0


def _run_e2e(mode: str, board: str, capsys) -> dict:
    capsys.readouterr()  # what came before (the board's start-up line)
    t = time.monotonic()
    code = main(["run", "--board", board, "--epochs", "5", "--json", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    report = json.loads(out)
    p, lat = report["parity"], report["latency_ms"]
    with capsys.disabled():
        print(
            f"\n[qemu] e2e {mode} mode: {time.monotonic() - t:.0f} s (board stages "
            f"{sum(report['timings_s'].get(k, 0) for k in ('board', 'deploy', 'eval', 'bench')):.0f} s); "
            f"target {report['bundle']['target']}, top-1 agreement {p['top1_agreement']:.4f}, max abs diff "
            f"{p['max_abs_diff']:.3g}, accuracy on board {report['accuracy']['board']:.4f}, latency p50 "
            f"{lat['p50']:.3f} ms "
            f"p90 {lat['p90']:.3f} ms ({lat['runs']} runs; emulated)"
        )
    assert report["bundle"]["target"] == "aarch64"  # --board qemu compiles for aarch64 by itself
    assert report["board"]["arch"] == "aarch64" and report["board"]["kind"] == f"qemu-{mode}"
    assert report["board"]["emulated"] is True and "not hardware numbers" in report["board"]["note"]
    assert p["top1_agreement"] >= 0.99
    assert lat["p50"] > 0 and lat["runs"] > 0
    return report


def test_e2e_user_mode(cfg, capsys):
    """built-in model -> aarch64 bundle -> user-mode board (started by `up`) over OpenSSH."""
    before = qemuboard.host_snapshot()
    with qemuboard.running("user"):
        _run_e2e("user", "qemu", capsys)
    assert left_behind(before, qemuboard.host_snapshot()) == []


def test_e2e_system_mode(cfg, capsys):
    """The same on a booted aarch64 kernel (Cortex-A57, systemd, the image's sshd), through a
    forwarded loopback port; `down` then leaves no process behind."""
    from edgeopt.toolkit.boards.qemu import state

    before = qemuboard.host_snapshot()
    with qemuboard.running("system") as doc:
        assert doc.get("boot_s")
        with capsys.disabled():
            print(f"\n[qemu] system mode booted to a working sshd in {doc['boot_s']:.0f} s")
        _run_e2e("system", "qemu-system", capsys)
        pid = doc["pid"]
    deadline = time.monotonic() + 120  # exited; init reaps the daemonized process (bounded, generous under load)
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not os.path.exists(f"/proc/{pid}")
    assert left_behind(before, qemuboard.host_snapshot()) == []
    assert state.load("system") is None and not (cfg / "boards.toml").exists()


def test_run_starts_and_stops_the_board_when_it_is_not_up(cfg, capsys):
    """`--board qemu` with nothing up: started for the command, stopped after."""
    from edgeopt.toolkit.boards.qemu import state

    qemuboard.image()
    assert state.load("user") is None
    before = qemuboard.host_snapshot()
    code = main(["board", "info", "qemu", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    info = json.loads(out)
    assert info["board"]["arch"] == "aarch64" and info["runtime_ok"] and info["provisioned"]
    assert state.load("user") is None
    assert left_behind(before, qemuboard.host_snapshot()) == []


def test_missing_image_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGEOPT_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("EDGEOPT_CONFIG_DIR", str(tmp_path / "cfg"))
    assert main(["board", "qemu", "up", "--mode", "user"]) == 7
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "edgeopt board qemu build" in err[0]
    assert main(["board", "qemu", "status"]) == 0
    assert "not built" in capsys.readouterr().out


def test_a_core_without_the_bundles_features_refuses_it(cfg, quantized_onnx, tmp_path, capsys):
    """The cpuinfo user mode shows is the emulated core's own: a Cortex-A55 bundle (dot product)
    on a Cortex-A53 is refused by the agent before it runs, not killed by SIGILL."""
    from edgeopt.compile import compile_onnx, get_target

    bundle, _ = compile_onnx(quantized_onnx, target=get_target("cortex-a55"), out_dir=tmp_path / "b", onnx_copy=False)
    with qemuboard.running("user", cpu="cortex-a53"):
        capsys.readouterr()
        assert main(["bench", str(bundle.path), "--board", "qemu", "--runs", "2", "--warmup", "0"]) == 6
        err = capsys.readouterr().err
        assert "target_mismatch" in err and "asimddp" in err
        # and a second `up` of the same mode is one clear line, not a second board
        assert main(["board", "qemu", "up", "--mode", "user"]) == 7
        assert "already up" in capsys.readouterr().err
