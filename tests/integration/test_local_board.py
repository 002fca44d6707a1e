"""The embedded local board over real SSH: auth, host keys, quoting, SFTP, the agent."""

import dataclasses
from pathlib import PurePosixPath

import pytest
from edgeopt.board.local import LocalBoard
from edgeopt.toolkit.boards.deploy import HOST_ONLY_MODULES, Connection, Deployment
from edgeopt.toolkit.boards.ops import measure

from edgeopt.errors import AgentError, BoardError, BoardUnreachableError, HostKeyError


def test_exec_exit_codes_and_streams(spec):
    with Connection(spec) as c:
        assert c.run(["echo", "hello"]) == (0, "hello\n", "")
        code, out, err = c.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        assert (code, out, err) == (3, "out\n", "err\n")


def test_arguments_are_quoted(spec):
    nasty = "a b; echo INJECTED $(id) `id` 'q' \"dq\" * ~"
    with Connection(spec) as c:
        code, out, _ = c.run(["printf", "%s", nasty])
    assert code == 0 and out == nasty


def test_remote_timeout(spec):
    with Connection(spec) as c:
        with pytest.raises(BoardError, match="did not finish"):
            c.run(["sleep", "5"], timeout_s=0.5)
        assert c.run(["true"])[0] == 0  # the connection is still usable


def test_unknown_host_key_is_refused(spec, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError, match="--trust-new-host"):
        Connection(dataclasses.replace(spec, known_hosts=empty)).connect()
    assert empty.read_text() == ""  # nothing was added behind the user's back


def test_changed_host_key_is_refused_even_when_trusting_new_hosts(spec, tmp_path):
    with LocalBoard() as other:  # a different host key...
        line = other.known_hosts.read_text().split(" ", 1)[1]
    known = tmp_path / "known_hosts"
    known.write_text(f"[{spec.host}]:{spec.port} {line}")  # ...recorded for our board's address
    with pytest.raises(HostKeyError, match="CHANGED"):
        Connection(dataclasses.replace(spec, known_hosts=known, trust_new_host=True)).connect()


def test_wrong_key_is_refused(spec, tmp_path):
    with LocalBoard() as other:
        key = tmp_path / "id"
        key.write_bytes(other.client_key.read_bytes())
    key.chmod(0o600)
    with pytest.raises(BoardUnreachableError, match="authentication"):
        Connection(dataclasses.replace(spec, identity_file=key)).connect()


def test_unreachable_board():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    from edgeopt.toolkit.boards.deploy import BoardSpec

    spec = BoardSpec(kind="ssh", host="127.0.0.1", port=port, use_ssh_agent=False, connect_timeout_s=2)
    with pytest.raises(BoardUnreachableError, match="cannot reach"):
        Connection(spec).connect()


def test_upload_is_atomic_and_lands_in_home(spec, local_board, tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 100_000)
    with Connection(spec) as c:
        c.upload(src, PurePosixPath("a/b/f.bin"))
        assert (local_board.home / "a/b/f.bin").read_bytes() == src.read_bytes()
        assert [p.name for p in (local_board.home / "a/b").iterdir()] == ["f.bin"]  # no .part left
        c.remove_tree(PurePosixPath("a"))
    assert not (local_board.home / "a").exists()


def test_deploy_and_agent_over_ssh(spec, host_bundle, local_board):
    with Connection(spec) as c:
        dep = Deployment(c, host_bundle).upload()
        [doc] = measure(
            dep, x=None, ref=None, no_parity_reason="none given", warmup=1, repeat=2, number=1, min_repeat_ms=5
        )
        assert doc["bundle"]["library_sha256"] == host_bundle.library_sha256
        assert doc["latency_ms"]["runs"] >= 2
        doc = doc["agent"]
        for banned in HOST_ONLY_MODULES:
            assert banned not in doc["imports"]
        # the agent and the bundle are on the board, content-addressed
        assert (local_board.home / dep.bundle_dir / "model.so").is_file()
        assert (local_board.home / dep.agent_dir / "board/agent/cli.py").is_file()
        # a damaged remote file is caught by the agent, before anything runs
        with open(local_board.home / dep.bundle_dir / "model.so", "ab") as f:
            f.write(b"junk")
        with pytest.raises(AgentError, match="bundle_damaged"):
            dep.agent("eval", "--bundle", str(dep.bundle_dir), "--data", "x.npz")
        dep.upload()  # uploading again repairs it
        assert dep.agent("info")["ok"]
