"""Tuning that measures on boards (compile --tune --board): the real SSH board(s) on 127.0.0.1, TVM's
RPC server started on the board, a port forward of the verified SSH connection, TVM's tracker on
the host's loopback, MetaSchedule's RPC runner. Small budgets (2-8 trials); no timing asserted."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest
from edgeopt.compile import compile_onnx, get_target

from ..unit.compile.test_targets import _tiny_matmul_onnx

pytestmark = pytest.mark.slow


def server_pids(matchkey: str) -> list[int]:
    """The local boards run on this machine: their processes are in this /proc."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                if matchkey in (p / "cmdline").read_bytes().decode(errors="replace"):
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def listening(conn, port: int) -> list[str]:
    """The local addresses listening on `port`, from the board's own /proc/net/tcp{,6} over SSH."""
    code, out, _ = conn.run(["cat", "/proc/net/tcp", "/proc/net/tcp6"])
    assert code == 0
    found = []
    for line in out.splitlines()[1:]:
        f = line.split()
        if len(f) > 3 and ":" in f[1] and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
            addr = f[1].rsplit(":", 1)[0]
            found.append(".".join(str(int(addr[i : i + 2], 16)) for i in (6, 4, 2, 0)) if len(addr) == 8 else addr)
    return found


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEOPT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_tuning_on_a_board_measures_there_keys_by_board_and_leaves_nothing(tmp_path, cache, capsys):
    from edgeopt.toolkit.boards.tuning import tuning_boards
    from edgeopt.toolkit.cli import main

    model = _tiny_matmul_onnx(tmp_path / "tiny.onnx")
    target = get_target("host")
    seen: dict = {}

    with tuning_boards(["local"], target) as pool:
        b, ep = pool.boards[0], pool.endpoints[0]
        assert b.server.alive and server_pids(b.matchkey)

        def on_trials(done: int) -> None:  # while tuning runs: what listens on the board
            if "addresses" not in seen:
                seen["addresses"] = listening(b.conn, ep.board_port)
                seen["sessions"] = ep.sessions()

        bundle, parity = compile_onnx(
            model, target=target, out_dir=tmp_path / "b", tune_trials=4, on_trials=on_trials, tune_boards=pool
        )
        matchkey = b.matchkey
    t = bundle.manifest["tuning"]
    # the RPC server listened on the board's loopback only, and was measuring through the forward
    assert seen["addresses"] == ["127.0.0.1"] and seen["sessions"] > 0
    # the measurements came from the board: every candidate was loaded there (its server's own log)
    [m] = t["measured_on"]
    assert m["name"] == "local" and m["measured"] >= 1 and m["sessions"] >= m["measured"]
    records = [json.loads(line) for line in (cache / "tuning" / t["database"] / "database_tuning_record.json").open()]
    assert any(r[1][1][0] < 1.0 for r in records)  # real run times, not the 1e10 of a failed run
    # the board's identity keys the records; the bundle applies them; parity with onnxruntime holds
    assert t["board"]["cpu"] and t["board"]["cores"] and t["board"]["tvm"] and t["board"]["cpu_features"]
    assert t["applied"] >= 1 and t["kept"] == "tuned"
    assert parity.max_abs_diff <= parity.tolerance
    # stopped on success: no process of the server is left on the board
    assert b.left == [] and server_pids(matchkey) == []

    # the same kind of board again (a new local board, same CPU and TVM), from the CLI: the
    # records are reused, nothing is measured; tuned on this machine instead: another database
    capsys.readouterr()
    code = main(
        [
            "compile",
            str(model),
            "--out",
            str(tmp_path / "b2"),
            "--tune",
            "--trials",
            "4",
            "--board",
            "local",
            "--json",
            "--quiet",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    again = json.loads(out)["tuning"]
    assert again["reused"] is True and again["database"] == t["database"] and again["board"] == t["board"]
    host, _ = compile_onnx(model, target=target, out_dir=tmp_path / "b3", tune_trials=2)
    assert host.manifest["tuning"]["database"] != t["database"] and "board" not in host.manifest["tuning"]


def test_a_failed_or_interrupted_tuning_stops_the_board_server(tmp_path, cache):
    """Ctrl-C in the middle of tuning (KeyboardInterrupt from the progress callback): the
    server's channel is closed and its process group is gone from the board."""
    from edgeopt.toolkit.boards.tuning import tuning_boards

    model = _tiny_matmul_onnx(tmp_path / "tiny.onnx")
    target = get_target("host")
    keys = []

    def interrupt(done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(BaseException) as info:
        with tuning_boards(["local"], target) as pool:
            keys.append(pool.boards[0].matchkey)
            assert server_pids(keys[0])
            compile_onnx(
                model, target=target, out_dir=tmp_path / "b", tune_trials=2, on_trials=interrupt, tune_boards=pool
            )
    assert info.type is not AssertionError, info.value
    assert pool.boards[0].left == [] and server_pids(keys[0]) == []


def test_a_board_of_another_kind_is_refused_before_tuning(tmp_path):
    from edgeopt.toolkit.boards.tuning import check_kind, tuning_boards

    from edgeopt.errors import BoardError

    with pytest.raises(BoardError, match="refused before tuning"):
        with tuning_boards(["local"], get_target("cortex-a76")):
            pass
    # the features an Arm target needs, against what an A72 board reports (no asimddp)
    a72 = {"arch": "aarch64", "cpu": "cortex-a72", "cpu_features": ["fp", "asimd", "crc32"], "tvm": "0.27.0"}
    with pytest.raises(BoardError, match=r"lacks CPU features .*asimddp"):
        check_kind(get_target("cortex-a76"), "pi4", a72)
    check_kind(get_target("cortex-a72"), "pi4", a72)


def test_a_farm_measures_on_every_board_and_survives_one_dropping_out(tmp_path, cache, caplog):
    """Two local boards (the host target), one tracker: both measure; one board is stopped in
    the middle (its SSH server goes away), the run finishes on the other with a warning."""
    from edgeopt.board.local import LocalBoard
    from edgeopt.toolkit.boards.deploy import BoardSpec
    from edgeopt.toolkit.boards.tuning import board_pool

    model = _tiny_matmul_onnx(tmp_path / "tiny.onnx")
    target = get_target("host")
    caplog.set_level(logging.WARNING, logger="edgeopt.tune")
    with LocalBoard() as one, LocalBoard() as two:
        specs = [
            BoardSpec(
                kind="local",
                name=f"local{i}",
                host=b.host,
                port=b.port,
                user=b.user,
                identity_file=b.client_key,
                known_hosts=b.known_hosts,
                use_ssh_agent=False,
            )
            for i, b in enumerate((one, two))
        ]
        with board_pool(specs, target) as pool:
            a, b = pool.endpoints
            stopped = threading.Event()

            def kill_when_both_measured() -> None:  # bounded: gives up with the tuning
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline and not done.is_set():
                    if a.loaded() >= 1 and b.loaded() >= 1:
                        two.stop()
                        stopped.set()
                        return
                    time.sleep(0.05)

            done = threading.Event()
            killer = threading.Thread(target=kill_when_both_measured, daemon=True)
            killer.start()
            try:
                bundle, parity = compile_onnx(
                    model, target=target, out_dir=tmp_path / "b", tune_trials=16, tune_boards=pool
                )
            finally:
                done.set()
                killer.join(10)
            keys = [x.matchkey for x in pool.boards]
            peaks = [x.forward.peak for x in pool.boards]
    assert stopped.is_set(), "the two boards never both measured"
    t = bundle.manifest["tuning"]
    by = {m["name"]: m for m in t["measured_on"]}
    assert by["local0"]["measured"] > 0 and by["local1"]["measured"] > 0
    assert "dropped" in by["local1"] and "dropped" not in by["local0"]
    # each board served one measurement at a time: never two sessions open at once at the host's end
    # of its forward (the only way to its server, which listens on the board's loopback)
    assert peaks == [1, 1] and by["local0"]["sessions"] > 1
    assert any("local1 dropped out of the tuning pool" in r.getMessage() for r in caplog.records)
    # the tuning finished on the other board: records, applied, parity
    assert t["trials"] == 16 and t["applied"] >= 1 and parity.max_abs_diff <= parity.tolerance
    assert all(server_pids(k) == [] for k in keys)


def test_a_group_of_boards_tunes_as_a_farm(tmp_path, monkeypatch):
    """`--board lab` names the boards of boards.toml's [groups] lab; a real board only once."""
    from edgeopt.toolkit.boards.tuning import expand

    from edgeopt.errors import UsageError

    monkeypatch.setenv("EDGEOPT_CONFIG_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "boards.toml").write_text(
        '[boards.pi]\nhost = "127.0.0.1"\n\n[groups]\nlab = ["local", "local"]\ntwice = ["pi", "pi"]\n'
    )
    assert expand(["lab"]) == ["local", "local"] and expand(["lab", "pi"]) == ["local", "local", "pi"]
    with pytest.raises(UsageError, match="named twice"):
        expand(["twice"])


def rpc_servers() -> list[int]:
    """TVM RPC server processes on this machine (a local board's are here)."""
    return server_pids("tvm.exec.rpc_server")


def test_run_tunes_on_its_board_and_stops_the_server_before_deploying(tmp_path, cache, capsys):
    """`edgeopt run --tune`: the whole flow, the bundle tuned with candidates timed on the run's
    board (the local one, host target), then deployed and measured there."""
    from edgeopt.compile.bundle import Bundle
    from edgeopt.toolkit.cli import main

    out = tmp_path / "run"
    code = main(["run", "--epochs", "3", "--tune", "--tune-trials", "4", "--out", str(out), "--json", "--quiet"])
    stdout, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    report = json.loads(stdout)
    t = report["bundle"]["tuning"]
    [m] = t["measured_on"]
    assert m["name"] == "local" and m["measured"] >= 1 and t["applied"] >= 1 and t["kept"] == "tuned"
    assert t["board"]["cpu"] and t["trials"] == 4
    assert Bundle.load(out / "bundle").manifest["tuning"]["database"] == t["database"]
    # the tuned bundle ran on the board, agreeing with onnxruntime there
    tolerance = Bundle.load(out / "bundle").manifest["parity"]["tolerance"]
    assert report["parity"]["max_abs_diff"] <= tolerance and report["parity"]["top1_agreement"] >= 0.99
    assert report["latency_ms"]["runs"] >= 1
    assert rpc_servers() == []


def test_run_tune_refuses_a_board_of_another_kind_before_training(tmp_path, capsys):
    from edgeopt.toolkit.cli import main

    out = tmp_path / "run"
    code = main(["run", "--tune", "--target", "cortex-a76", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code != 0 and "refused before tuning" in err
    assert not (out / "model").exists()  # nothing trained
    assert rpc_servers() == []
    code = main(["run", "--tune", "--tune-trials", "0", "--quiet"])
    assert code == 2 and "tunes nothing" in capsys.readouterr().err
