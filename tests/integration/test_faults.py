"""Fault injection: one test per row of docs/reliability.md's table, against a real OpenSSH
server on loopback as the board (tests/integration/sshd.py). Faults are real: a hostile `python`
on the board (a shell script that hangs, crashes, floods or lies), a socket shut mid-upload or
mid-bench, SIGINT to a real `edgeopt` process, a full tmpfs, a tampered store.

After every row the autouse fixture `still_healthy` asserts that a normal deploy + bench of the
same board passes and that `ps` on the board shows no process of ours. Every loop is bounded in
count and time; all traffic stays on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from edgeopt.toolkit.boards import ops as boardops
from edgeopt.toolkit.boards.deploy import BoardSpec, Connection, Deployment
from edgeopt.toolkit.cli import main

from edgeopt.errors import BoardConnectionLostError, BoardError, BoardUnreachableError, BundleError

from . import sshd

POLL_S = 0.2
POLL_MAX = 150  # at most 30 s of polling per wait, whatever the load


@pytest.fixture(scope="module")
def board():
    reason = sshd.unavailable_reason()
    if reason:
        pytest.skip(f"OpenSSH board: {reason}")
    with sshd.OpenSSHBoard() as b:
        (b.dir / "bin").mkdir()
        yield b


def spec_of(board, **kw) -> BoardSpec:
    base = dict(
        kind="ssh",
        name="b",
        host=board.host,
        port=board.port,
        user=board.user,
        identity_file=board.client_key,
        known_hosts=board.known_hosts,
        use_ssh_agent=False,
        python=sys.executable,
        remote_root=board.remote_root,
        connect_timeout_s=10,
    )
    base.update(kw)
    return BoardSpec(**base)


def hostile(board, name: str, body: str) -> str:
    """A `python` on the board that is a shell script doing `body` (ignoring its arguments)."""
    path = board.dir / "bin" / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def ours(board) -> list[str]:
    """Processes on the board started by edgeopt for this board (their command line names a file
    under the board's directory), sshd itself excepted: one `ps` over SSH."""
    with Connection(spec_of(board)) as c:
        code, out, _ = c.run(["ps", "-eo", "pid=,args="])
    assert code == 0
    lines = [line.strip().split(None, 1) for line in out.splitlines() if str(board.dir) in line]
    return [" ".join(w) for w in lines if len(w) == 2 and not w[1].startswith(("sshd", "/usr/sbin/sshd"))]


def wait_until(what, check) -> None:
    for _ in range(POLL_MAX):
        if check():
            return
        time.sleep(POLL_S)
    raise AssertionError(f"not within {POLL_MAX * POLL_S:.0f} s: {what}")


def agent_running(board) -> bool:
    return any("board.agent" in line or "runpy" in line for line in ours(board))


@pytest.fixture(autouse=True)
def still_healthy(request, board, host_bundle):
    """After the row: no process of ours on the board, then a normal deploy + bench passes."""
    yield
    left: list[str] = []

    def clean() -> bool:
        left[:] = ours(board)
        return not left

    try:
        wait_until("no process of ours left on the board", clean)
    except AssertionError:
        raise AssertionError(f"left on the board: {left}") from None
    with Connection(spec_of(board)) as conn:
        doc = boardops.bench(conn, host_bundle, runs=5, warmup=1)
    assert doc["latency_ms"]["runs"] >= 5 and doc["board"]["arch"]


@pytest.fixture
def user(board, tmp_path, monkeypatch):
    """A clean user whose boards.toml names the board `b`; returns a function that rewrites it."""
    home, cfg = tmp_path / "home", tmp_path / "cfg"
    home.mkdir()
    cfg.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("EDGEOPT_CONFIG_DIR", str(cfg))
    monkeypatch.delenv("EDGEOPT_BOARD_TIMEOUT", raising=False)
    monkeypatch.chdir(tmp_path)

    def write(**kw) -> Path:
        entry = {
            "host": board.host,
            "port": board.port,
            "user": board.user,
            "identity_file": str(board.client_key),
            "remote_root": board.remote_root,
            "python": sys.executable,
            "known_hosts": str(board.known_hosts),
        }
        entry.update(kw)
        lines = ["[boards.b]"] + [f"{k} = {json.dumps(v)}" for k, v in entry.items() if v is not None]
        (cfg / "boards.toml").write_text("\n".join(lines) + "\n")
        return cfg / "boards.toml"

    write()
    return write


def cli(capsys, *argv) -> tuple[int, str]:
    """Run edgeopt; return (exit code, its one stderr line when it failed)."""
    code = main(list(argv))
    _, err = capsys.readouterr()
    if code == 0:
        return code, ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgeopt: error: ") and "Traceback" not in err, err
    assert code != 70, err
    return code, lines[0]


def copy_bundle(bundle, dst: Path) -> Path:
    shutil.copytree(bundle.path, dst)
    return dst


def rewrite_manifest(path: Path, change) -> None:
    m = json.loads((path / "manifest.json").read_text())
    change(m)
    (path / "manifest.json").write_text(json.dumps(m))


# -- connecting ----------------------------------------------------------------------------------------


def test_refused(board):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(BoardUnreachableError, match="connection refused") as e:
            Connection(spec_of(board, port=port, connect_retries=1, retry_backoff_s=0.05)).connect()
    assert e.value.exit_code == 7 and "after 2 attempts" in str(e.value)


def test_silent_peer(board):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        for _ in range(100):  # bounded: 20 s at most
            if stop.is_set():
                return
            try:
                held.append(srv.accept()[0])  # accept, never speak
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        conn = Connection(
            spec_of(board, port=srv.getsockname()[1], connect_timeout_s=1, connect_retries=1, retry_backoff_s=0.05)
        )
        with pytest.raises(BoardUnreachableError, match="timed out waiting for the SSH banner") as e:
            conn.connect()
        assert conn.attempts == 2 and e.value.exit_code == 7
    finally:
        stop.set()
        t.join(30)
        for s in held:
            s.close()
        srv.close()


def test_auth_failure_uses_the_named_key_only(board, user, tmp_path, capsys):
    # the right key sits in ~/.ssh, where OpenSSH and paramiko look by default; boards.toml names
    # a wrong one: only that one is offered (IdentitiesOnly), so authentication fails
    ssh = Path(os.environ["HOME"]) / ".ssh"
    ssh.mkdir()
    shutil.copy(board.client_key, ssh / "id_ed25519")
    wrong = tmp_path / "wrong_key"
    sshd.write_key(wrong)
    user(identity_file=str(wrong))
    code, line = cli(capsys, "board", "info", "b")
    assert code == 7 and "authentication" in line
    user(identity_file=str(wrong), identities_only=False)  # asked otherwise: ~/.ssh's key is tried too
    assert cli(capsys, "board", "info", "b")[0] == 0


def test_unknown_host_key(board, user, tmp_path, capsys):
    empty = tmp_path / "kh"
    empty.write_text("")
    user(known_hosts=str(empty))
    code, line = cli(capsys, "board", "info", "b")
    assert code == 8 and "unknown" in line
    assert empty.read_text() == ""


def test_changed_host_key(board, user, tmp_path, capsys):
    other = tmp_path / "other"
    pub = sshd.write_key(other)
    kh = tmp_path / "kh"
    kh.write_text(f"[{board.host}]:{board.port} {pub}\n")
    user(known_hosts=str(kh))
    code, line = cli(capsys, "board", "info", "b")
    assert code == 8 and "CHANGED" in line


# -- dropped connections and Ctrl-C --------------------------------------------------------------------


def test_connection_killed_mid_upload(board, host_bundle, monkeypatch):
    import paramiko

    root = f"{board.home}/store-{uuid.uuid4().hex[:6]}"
    spec = spec_of(board, remote_root=root)
    real_put = paramiko.SFTPClient.put

    def put_then_drop(self, localpath, remotepath, callback=None, confirm=True):
        if not localpath.endswith("model.so"):
            return real_put(self, localpath, remotepath, callback=callback, confirm=confirm)

        def drop(sent, total):
            if sent >= 32768:  # part of the file is on the board: the connection dies
                self.get_channel().get_transport().sock.shutdown(socket.SHUT_RDWR)

        return real_put(self, localpath, remotepath, callback=drop, confirm=confirm)

    monkeypatch.setattr(paramiko.SFTPClient, "put", put_then_drop)
    with Connection(spec) as conn:
        with pytest.raises(BoardError, match="uploading model.so") as e:
            boardops.deploy(conn, host_bundle)
    assert e.value.exit_code == 7 and "the next deploy of this bundle removes it" in str(e.value)
    monkeypatch.setattr(paramiko.SFTPClient, "put", real_put)
    bundle_dir = Path(root) / "bundles" / host_bundle.id
    parts = [p.name for p in bundle_dir.iterdir() if p.name.endswith(".part")]
    assert parts, "the dropped upload should have left its .part file"
    with Connection(spec) as conn:
        doc = boardops.deploy(conn, host_bundle)
    assert sorted(Path(p).name for p in doc["removed_stale"]) == sorted(parts)
    assert not [p for p in bundle_dir.iterdir() if p.name.endswith(".part")]


def test_connection_killed_mid_bench(board, host_bundle):
    spec = spec_of(board)
    with Connection(spec) as conn:

        def drop() -> None:
            wait_until("the bench agent runs", lambda: agent_running(board))
            conn._client.get_transport().sock.shutdown(socket.SHUT_RDWR)

        t = threading.Thread(target=drop, daemon=True)
        t.start()
        with pytest.raises(BoardConnectionLostError, match="lost the SSH connection") as e:
            boardops.bench(conn, host_bundle, runs=5, warmup=1, min_repeat_ms=4000)
        t.join(60)
    assert e.value.exit_code == 7
    # its temporary folder stayed (the connection was gone); named for when a later run may remove it
    tmp = Path(board.remote_root) / "tmp"
    left = [p for p in tmp.iterdir() if p.is_dir()]
    assert len(left) == 1 and int(left[0].name.split("-")[0]) > time.time()
    expired = left[0].rename(tmp / ("1-" + left[0].name.split("-", 1)[1]))  # as if its time had passed
    running = tmp / f"{int(time.time()) + 3600}-{uuid.uuid4().hex[:12]}"  # another bench's, still running
    running.mkdir()
    with Connection(spec) as conn:
        doc = boardops.bench(conn, host_bundle, runs=5, warmup=1)
    assert str(expired) in doc["removed_stale"] and not expired.exists()
    assert running.is_dir() and [p.name for p in tmp.iterdir()] == [running.name]
    running.rmdir()


def test_ctrl_c_mid_bench(board, user, host_bundle, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgeopt",
            "bench",
            str(host_bundle.path),
            "--board",
            "b",
            "--runs",
            "5",
            "--warmup",
            "1",
            "--min-repeat-ms",
            "4000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    try:
        wait_until("the bench agent runs", lambda: agent_running(board) or proc.poll() is not None)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert proc.returncode == 130, err.decode()
    assert lines == ["edgeopt: error: interrupted (Ctrl-C); on a board, the command stops with its session"]


# -- a misbehaving agent or python ---------------------------------------------------------------------


def test_agent_hang_is_stopped_at_the_timeout(board, user, host_bundle, capsys):
    user(python=hostile(board, "hang", "exec sleep 3600"))
    code, line = cli(capsys, "deploy", str(host_bundle.path), "--board", "b", "--timeout", "3")
    assert code == 7 and "board agent 'version'" in line and "did not finish in 3 s" in line
    assert "--timeout" in line


def test_timeout_from_env_and_boards_toml(board, user, monkeypatch, capsys):
    user(python=hostile(board, "hang2", "exec sleep 3600"), timeout=2)
    code, line = cli(capsys, "board", "info", "b")
    assert code == 7 and "board agent 'info'" in line and "in 2 s" in line
    monkeypatch.setenv("EDGEOPT_BOARD_TIMEOUT", "3")  # the environment wins over boards.toml
    code, line = cli(capsys, "board", "info", "b")
    assert code == 7 and "in 3 s" in line
    code, line = cli(capsys, "board", "info", "b", "--timeout", "1")  # the flag wins over both
    assert code == 7 and "in 1 s" in line


def test_agent_crash(board, user, capsys):
    user(python=hostile(board, "crash", "echo 'boom: the agent fell over' >&2; exit 3"))
    code, line = cli(capsys, "board", "info", "b")
    assert code == 7 and "exited 3 without a JSON result: boom: the agent fell over" in line


def test_agent_segfault(board, user, capsys):
    user(python=hostile(board, "segv", "kill -SEGV $$"))
    code, line = cli(capsys, "board", "info", "b")
    assert code == 7 and "was killed by SIGSEGV" in line


def test_output_flood_stdout(board, user, capsys):
    user(python=hostile(board, "flood", "exec yes 'flood flood flood flood'"))
    code, line = cli(capsys, "board", "info", "b")
    assert code == 7 and "printed more than 16 MiB on stdout" in line and "stopped" in line


def test_output_flood_stderr(board, user, capsys):
    user(python=hostile(board, "flood2", "exec yes 'flood flood flood flood' >&2"))
    code, line = cli(capsys, "board", "info", "b")
    assert code == 7 and "printed more than 1 MiB on stderr" in line and len(line) < 1000


@pytest.mark.parametrize(
    "doc,expect",
    [
        ("[1,2,3]", "printed a JSON list"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper than 32"),
        ('{"schema": "edgeopt.agent/1", "ok": true}', "does not match its schema"),
        ("not json at all", "without a JSON result"),
    ],
)
def test_malformed_agent_json(board, user, capsys, doc, expect, tmp_path):
    f = tmp_path / "doc.json"
    f.write_text(doc)
    user(python=hostile(board, f"liar{uuid.uuid4().hex[:6]}", f"cat '{f}'"))
    code, line = cli(capsys, "board", "info", "b")
    assert code == 7 and expect in line


def test_modified_agent_is_replaced(board, host_bundle):
    with Connection(spec_of(board)) as conn:
        dep = Deployment(conn, host_bundle).upload()
        victim = Path(str(dep.agent_dir)) / "board" / "agent" / "measure.py"
        victim.write_text(victim.read_text() + "\n# tampered\n")
        again = boardops.deploy(conn, host_bundle)
    assert str(dep.agent_dir / "board" / "agent" / "measure.py") in again["uploaded"]


def test_stray_module_in_agent_folder_is_not_imported(board, host_bundle):
    with Connection(spec_of(board)) as conn:
        dep = Deployment(conn, host_bundle).upload()
        # where PYTHONPATH used to point: a numpy.py there would have shadowed the real one
        (Path(str(dep.agent_dir)) / "numpy.py").write_text("raise SystemExit('stray numpy imported')\n")
        try:
            doc = boardops.bench(conn, host_bundle, runs=5, warmup=1)
            assert "numpy" in doc["agent"]["imports"]
        finally:
            (Path(str(dep.agent_dir)) / "numpy.py").unlink()


# -- the store ---------------------------------------------------------------------------------------


def test_corrupted_store_file(board, host_bundle):
    with Connection(spec_of(board)) as conn:
        dep = Deployment(conn, host_bundle).upload()
        lib = Path(str(dep.bundle_dir)) / "model.so"
        data = bytearray(lib.read_bytes())
        data[len(data) // 2] ^= 0xFF
        lib.write_bytes(bytes(data))
        again = boardops.deploy(conn, host_bundle)
    assert str(dep.bundle_dir / "model.so") in again["uploaded"]


def test_deleted_store_file(board, host_bundle):
    with Connection(spec_of(board)) as conn:
        dep = Deployment(conn, host_bundle).upload()
        (Path(str(dep.bundle_dir)) / "model.so").unlink()
        again = boardops.deploy(conn, host_bundle)
    assert str(dep.bundle_dir / "model.so") in again["uploaded"]


def test_disk_full(board, host_bundle, tmp_path):
    full = board.home / f"full-{uuid.uuid4().hex[:6]}"
    full.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], capture_output=True, text=True)
    assert r.returncode == 0, f"cannot mount a small tmpfs as the board's full disk (needs root): {r.stderr}"
    try:
        with Connection(spec_of(board, remote_root=str(full))) as conn:
            with pytest.raises(BoardError, match="uploading .* failed") as e:
                boardops.deploy(conn, host_bundle)
        assert e.value.exit_code == 7
        assert not [p for p in full.rglob("*.part")]
    finally:
        subprocess.run(["umount", str(full)], check=True)


def test_two_deploys_at_once(board, host_bundle):
    root = f"{board.home}/store-{uuid.uuid4().hex[:6]}"
    results: list = [None, None]

    def one(i: int) -> None:
        try:
            with Connection(spec_of(board, remote_root=root)) as conn:
                results[i] = boardops.bench(conn, host_bundle, runs=5, warmup=1)
        except BaseException as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert all(isinstance(r, dict) for r in results), results


def test_metacharacter_paths(board, host_bundle, tmp_path):
    marker = tmp_path / "pwned"
    root = f"{board.home}/st ore;$(touch {marker});`touch {marker}`'\"&|"
    with Connection(spec_of(board, remote_root=root)) as conn:
        doc = boardops.bench(conn, host_bundle, runs=5, warmup=1)
    assert doc["latency_ms"]["runs"] >= 5 and not marker.exists()
    assert (Path(root) / "bundles" / host_bundle.id / "manifest.json").is_file()


def test_board_info_ignores_folders_without_manifest(board, user, host_bundle, capsys):
    with Connection(spec_of(board)) as conn:
        Deployment(conn, host_bundle).upload()
    half = Path(board.remote_root) / "bundles" / ("0" * 64)
    half.mkdir(parents=True, exist_ok=True)
    try:
        code = main(["board", "info", "b", "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        bundles = json.loads(out)["store"]["bundles"]
        assert host_bundle.id in bundles and "0" * 64 not in bundles
    finally:
        half.rmdir()


# -- hostile bundles -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../../victim", "/etc/passwd", ".ssh/authorized_keys", "a\nb", "..", "x\x1b[2J"])
def test_path_escaping_manifest(board, user, host_bundle, tmp_path, capsys, name):
    victim = tmp_path / "victim"
    victim.write_text("secret\n")
    b = copy_bundle(host_bundle, tmp_path / "evil" / "a" / "b" / "bundle")
    from edgeopt.compile.bundle import sha256_file

    rewrite_manifest(b, lambda m: m["files"].__setitem__(name, {"sha256": sha256_file(victim), "bytes": 7}))
    code, line = cli(capsys, "deploy", str(b), "--board", "b")
    assert code == 6 and "refused" in line
    assert not list(Path(board.remote_root).rglob("victim"))


def test_symlink_in_bundle_leading_out(board, user, host_bundle, tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.write_text("secret\n")
    b = copy_bundle(host_bundle, tmp_path / "evil")
    (b / "extra.bin").symlink_to(victim)
    from edgeopt.compile.bundle import sha256_file

    rewrite_manifest(b, lambda m: m["files"].__setitem__("extra.bin", {"sha256": sha256_file(victim), "bytes": 7}))
    code, line = cli(capsys, "deploy", str(b), "--board", "b")
    assert code == 6 and "not a regular file inside the bundle" in line


def test_symlink_in_store_leading_out(board, host_bundle, tmp_path):
    root = Path(board.home) / f"store-{uuid.uuid4().hex[:6]}"
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "bundles").mkdir(parents=True)
    (root / "bundles" / host_bundle.id).symlink_to(outside)  # a hostile board's store
    with Connection(spec_of(board, remote_root=str(root))) as conn:
        with pytest.raises(BundleError, match="outside the store") as e:
            Deployment(conn, host_bundle).upload()
    assert e.value.exit_code == 6 and not list(outside.iterdir())


def test_bundle_without_library(board, user, host_bundle, tmp_path, capsys):
    b = copy_bundle(host_bundle, tmp_path / "nolib")
    (b / "model.so").unlink()
    rewrite_manifest(b, lambda m: m["files"].pop("model.so"))
    code, line = cli(capsys, "deploy", str(b), "--board", "b")
    assert code == 6 and "no model.so" in line
