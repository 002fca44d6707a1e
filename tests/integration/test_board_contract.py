"""One set of board contract tests, run against three SSH servers: the embedded local board
(asyncssh), Debian's OpenSSH server started on a loopback port with its own config and keys, and
the QEMU-emulated aarch64 board (the image's own arm64 OpenSSH under qemu-user, user mode),
which gets bundles cross-compiled for aarch64.

Nothing is mocked: real paramiko, real SFTP, the real agent. The board's store is on this
machine's disk, so the tests can damage a remote file or read its inode."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from edgeopt.board.local import LocalBoard
from edgeopt.toolkit.boards.deploy import HOST_ONLY_MODULES, BoardSpec, Connection, Deployment, agent_digest
from edgeopt.toolkit.boards.ops import measure
from edgeopt.toolkit.cli import main

from .. import qemuboard
from . import sshd

BANNED = HOST_ONLY_MODULES


@dataclasses.dataclass
class Board:
    kind: str
    host: str
    port: int
    user: str
    client_key: Path
    known_hosts_line: str  # the board's true host key, as known_hosts spells it
    store_base: Path  # where this board's remote_root resolves on this machine
    remote_base: str  # remote_root prefix as the board sees it ('' = relative to the login dir)
    python: str | None
    arch: str = platform.machine()  # the board's `uname -m`
    target: str = "host"  # the compile target for its bundles
    board_home: str | None = None  # the login directory as the board sees it (None: as this machine does)

    def root(self, name: str) -> str:
        return f"{self.remote_base}{name}"

    def local(self, remote: str) -> Path:
        """The file on this machine behind a remote path."""
        return self.store_base / remote[len(self.remote_base) :] if self.remote_base else self.store_base / remote

    def on_board(self, remote: str) -> str:
        """A remote path as the board's own processes see it."""
        if self.board_home is None:
            return str(self.local(remote))
        return remote if remote.startswith("/") else f"{self.board_home}/{remote}"

    def spec(self, *, known_hosts: Path, remote_root: str, **kw) -> BoardSpec:
        return BoardSpec(
            kind="ssh",
            name=self.kind,
            host=self.host,
            port=self.port,
            user=self.user,
            identity_file=self.client_key,
            known_hosts=known_hosts,
            use_ssh_agent=False,
            python=self.python,
            remote_root=remote_root,
            connect_timeout_s=10,
            **kw,
        )

    def toml(self, name: str, remote_root: str) -> str:
        return "\n".join(
            [
                f"[boards.{name}]",
                f'host = "{self.host}"',
                f"port = {self.port}",
                f'user = "{self.user}"',
                f'identity_file = "{self.client_key}"',
                f'remote_root = "{remote_root}"',
                *([f'python = "{self.python}"'] if self.python else []),
                "",
            ]
        )


@pytest.fixture(
    scope="module", params=["local", "openssh", pytest.param("qemu", marks=[pytest.mark.qemu, pytest.mark.slow])]
)
def board(request, tmp_path_factory):
    if request.param == "local":
        with LocalBoard() as b:
            # the local board's SFTP is rooted at its home, and commands run there: relative root
            yield Board(
                "local",
                b.host,
                b.port,
                b.user,
                b.client_key,
                b.known_hosts.read_text().strip(),
                store_base=b.home,
                remote_base="",
                python=None,
            )
        return
    if request.param == "qemu":
        image = qemuboard.image()
        with qemuboard.config_dir(tmp_path_factory.mktemp("qemu-cfg")), qemuboard.running("user") as doc:
            home = Path(doc["root"]) / "home" / image.user
            # the test stores are fresh directories without the image's venv: name its python
            yield Board(
                "qemu",
                "127.0.0.1",
                doc["port"],
                image.user,
                image.client_key,
                next(f"[127.0.0.1]:{doc['port']} {k}" for k in image.host_keys if k.startswith("ssh-ed25519")),
                store_base=home,
                remote_base="",
                python=f"/home/{image.user}/.edgeopt/venv/bin/python",
                arch="aarch64",
                target="aarch64",
                board_home=f"/home/{image.user}",
            )
        return
    reason = sshd.unavailable_reason()
    if reason:
        pytest.skip(f"OpenSSH board: {reason}")
    with sshd.OpenSSHBoard() as b:
        # commands run in the real login directory, so the store is absolute, under the test's dir
        yield Board(
            "openssh",
            b.host,
            b.port,
            b.user,
            b.client_key,
            b.known_hosts.read_text().strip(),
            store_base=b.home,
            remote_base=str(b.home) + "/",
            python=sys.executable,
        )


@pytest.fixture
def root(board) -> str:
    """A fresh, empty store on the board for one test."""
    return board.root(f".edgeopt-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def trusted(board, tmp_path) -> Path:
    kh = tmp_path / "known_hosts"
    kh.write_text(board.known_hosts_line + "\n")
    return kh


@pytest.fixture
def user_env(board, root, tmp_path, monkeypatch) -> Path:
    """A clean user: HOME (no ~/.ssh), a config dir with boards.toml naming the board `b`."""
    home = tmp_path / "home"
    cfg = tmp_path / "cfg"
    home.mkdir()
    cfg.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("EDGEOPT_CONFIG_DIR", str(cfg))
    monkeypatch.chdir(tmp_path)
    (cfg / "boards.toml").write_text(board.toml("b", root))
    return cfg


_BUNDLES: dict = {}


def _compiled(quantized, tmp_path_factory, target: str, onnx_copy: bool):
    from edgeopt.compile import compile_onnx, get_target

    if (target, onnx_copy) not in _BUNDLES:
        out = tmp_path_factory.mktemp(f"bundle-{target}") / "bundle"
        _BUNDLES[target, onnx_copy] = compile_onnx(
            quantized.path, target=get_target(target), out_dir=out, onnx_copy=onnx_copy
        )[0]
    return _BUNDLES[target, onnx_copy]


@pytest.fixture(scope="module")
def onnx_bundle(board, quantized, tmp_path_factory):
    """The int8 MLP for the board's target, with its ONNX inside (for parity and the onnxruntime baseline)."""
    return _compiled(quantized, tmp_path_factory, board.target, True)


@pytest.fixture(scope="module")
def host_bundle(board, host_bundle, quantized, tmp_path_factory):
    """A bundle for the board's target without its ONNX (the session's host bundle on an x86 board)."""
    return host_bundle if board.target == "host" else _compiled(quantized, tmp_path_factory, board.target, False)


@pytest.fixture(scope="module")
def foreign_bundle(board, request):
    """A bundle for another architecture than the board's."""
    return request.getfixturevalue("arm_bundle") if board.arch != "aarch64" else request.getfixturevalue("x86_bundle")


@pytest.fixture(scope="module")
def x86_bundle(quantized, tmp_path_factory):
    if platform.machine() != "x86_64":
        pytest.skip("this machine is not x86_64")
    return _compiled(quantized, tmp_path_factory, "host", False)


@pytest.fixture(scope="module")
def arm_bundle(quantized, tmp_path_factory):
    import shutil

    from edgeopt.compile import compile_onnx, get_target

    if shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.skip("aarch64-linux-gnu-gcc not installed (apt-get install gcc-aarch64-linux-gnu)")
    out = tmp_path_factory.mktemp("arm-bundle") / "bundle"
    return compile_onnx(quantized.path, target=get_target("aarch64"), out_dir=out)[0]


@pytest.fixture(scope="module")
def digits_npz(digits, tmp_path_factory):
    p = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(p, x=digits.x_test[:32], y=digits.y_test[:32])
    return p


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("edgeopt: error: ")
    return lines[0]


def cli_json(capsys, *argv) -> dict:
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


# -- deploy + bench ---------------------------------------------------------------------------------


def test_deploy_and_bench(board, user_env, onnx_bundle, digits_npz, capsys):
    (user_env / "known_hosts").write_text(board.known_hosts_line + "\n")
    doc = cli_json(
        capsys,
        "bench",
        str(onnx_bundle.path),
        "--board",
        "b",
        "--runs",
        "50",
        "--warmup",
        "5",
        "--data",
        str(digits_npz),
    )
    lat = doc["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] and lat["mean"] > 0 and lat["std"] >= 0
    assert lat["runs"] == 50
    assert doc["load_ms"] > 0 and doc["first_ms"] > 0 and doc["rss_mb"] > 0
    assert doc["time_evaluator_median_ms"] > 0
    assert doc["board"]["arch"] == board.arch
    assert doc["bundle"]["library_sha256"] == onnx_bundle.library_sha256
    # parity against onnxruntime on the host, computed on the board
    assert doc["parity"]["samples"] == 32
    assert doc["parity"]["top1_agreement"] >= 0.95
    assert doc["parity"]["max_abs_diff"] <= onnx_bundle.manifest["parity"]["tolerance"]
    assert not BANNED & set(doc["agent"]["imports"]) and "onnxruntime" not in doc["agent"]["imports"]
    assert doc["agent"]["digest"] == agent_digest()


def test_bench_thread_sweep_and_ort_baseline(board, user_env, onnx_bundle, capsys):
    (user_env / "known_hosts").write_text(board.known_hosts_line + "\n")
    doc = cli_json(
        capsys,
        "bench",
        str(onnx_bundle.path),
        "--board",
        "b",
        "--runs",
        "10",
        "--warmup",
        "2",
        "--threads",
        "1,2",
        "--baseline",
        "ort",
    )
    assert [s["threads"] for s in doc["sweep"]] == [1, 2]
    assert doc["threads"] == 1
    for s in doc["sweep"]:
        assert s["latency_ms"]["runs"] == 10 and s["baseline"]["engine"] == "onnxruntime"
        assert s["baseline"]["threads"] == s["threads"] and s["baseline"]["latency_ms"]["p50"] > 0
    assert doc["baseline"]["parity"]["top1_agreement"] == 1.0  # the same ONNX, the same engine
    # onnxruntime ran in a process of its own: the TVM measurement's agent never loaded it
    assert "onnxruntime" in doc["baseline"]["imports"] and "onnxruntime" not in doc["agent"]["imports"]
    assert not BANNED & (set(doc["agent"]["imports"]) | set(doc["baseline"]["imports"]))


def test_baseline_without_onnx_is_refused(board, user_env, host_bundle, capsys):
    (user_env / "known_hosts").write_text(board.known_hosts_line + "\n")
    assert main(["bench", str(host_bundle.path), "--board", "b", "--baseline", "ort"]) == 2
    assert "model.onnx" in one_line(capsys.readouterr().err)


# -- the content-addressed store ----------------------------------------------------------------------


def test_second_deploy_uploads_nothing(board, root, trusted, onnx_bundle):
    spec = board.spec(known_hosts=trusted, remote_root=root)
    with Connection(spec) as c:
        first = Deployment(c, onnx_bundle).upload()
        n_first = c.uploads
        assert n_first == len(first.uploaded) == len(first.plan())  # a fresh store gets everything
        stamps = {p: os.stat(board.local(p)) for p in first.uploaded}
    with Connection(spec) as c:
        second = Deployment(c, onnx_bundle).upload()
        assert c.uploads == 0 and second.uploaded == [] and sorted(second.skipped) == sorted(first.uploaded)
        assert second.agent("version")["agent_digest"] == agent_digest()
    for p, st in stamps.items():  # not even rewritten with the same bytes
        now = os.stat(board.local(p))
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), p


def test_second_deploy_cli_uploads_nothing(board, user_env, onnx_bundle, capsys):
    (user_env / "known_hosts").write_text(board.known_hosts_line + "\n")
    first = cli_json(capsys, "deploy", str(onnx_bundle.path), "--board", "b")
    second = cli_json(capsys, "deploy", str(onnx_bundle.path), "--board", "b")
    assert len(first["uploaded"]) > 0 and first["uploaded_bytes"] > 0
    assert second["uploaded"] == [] and second["uploaded_bytes"] == 0
    assert sorted(second["skipped"]) == sorted(first["uploaded"])


def test_damaged_remote_file_is_uploaded_again(board, root, trusted, onnx_bundle):
    spec = board.spec(known_hosts=trusted, remote_root=root)
    with Connection(spec) as c:
        dep = Deployment(c, onnx_bundle).upload()
        lib = str(dep.bundle_dir / "model.so")
        with open(board.local(lib), "r+b") as f:  # same size, one byte flipped
            b = f.read(1)
            f.seek(0)
            f.write(bytes([b[0] ^ 0xFF]))
        os.remove(board.local(str(dep.bundle_dir / "manifest.json")))
        again = Deployment(c, onnx_bundle).upload()
        assert sorted(again.uploaded) == sorted([lib, str(dep.bundle_dir / "manifest.json")])
        assert c.uploads == len(dep.uploaded) + 2
        [doc] = measure(
            again, x=None, ref=None, no_parity_reason="none given", warmup=1, repeat=1, number=2, min_repeat_ms=0
        )
        assert doc["bundle"]["library_sha256"] == onnx_bundle.library_sha256
        # no temporary upload names are left behind
        assert not [p for p in board.local(str(dep.bundle_dir)).iterdir() if p.name.endswith(".part")]


def test_agent_changed_on_the_board_is_caught_and_replaced(board, root, trusted, host_bundle):
    from edgeopt.errors import AgentError

    spec = board.spec(known_hosts=trusted, remote_root=root)
    with Connection(spec) as c:
        dep = Deployment(c, host_bundle).upload()
        cli = board.local(str(dep.agent_dir / "board/agent/cli.py"))
        cli.write_text(cli.read_text() + "\n# changed on the board\n")
        with pytest.raises(AgentError, match="not the one this edgeopt uploaded"):
            dep.agent("version")
        again = Deployment(c, host_bundle).upload()
        assert again.uploaded == [str(dep.agent_dir / "board/agent/cli.py")]
        assert again.agent("version")["agent_digest"] == agent_digest()


def test_foreign_bundle_is_refused_before_anything_runs(board, user_env, root, foreign_bundle, capsys):
    (user_env / "known_hosts").write_text(board.known_hosts_line + "\n")
    want = foreign_bundle.manifest["target"]["arch"]
    assert want != board.arch
    for cmd in ("deploy", "bench"):
        assert main([cmd, str(foreign_bundle.path), "--board", "b"]) == 6
        line = one_line(capsys.readouterr().err)
        assert want in line and board.arch in line and "nothing was uploaded" in line
    assert not board.local(root).exists()  # not a file was sent, not an agent was run


# -- host keys ------------------------------------------------------------------------------------------


def test_unknown_key_refused_then_trusted_then_changed_key_refused(board, user_env, onnx_bundle, capsys):
    recorded = user_env / "known_hosts"
    bundle = str(onnx_bundle.path)
    assert main(["deploy", bundle, "--board", "b"]) == 8
    line = one_line(capsys.readouterr().err)
    assert "unknown" in line and "--trust-new-host" in line and "SHA256:" in line
    assert not recorded.exists()  # nothing recorded behind the user's back

    assert main(["deploy", bundle, "--board", "b", "--trust-new-host"]) == 0
    capsys.readouterr()
    host_key = board.known_hosts_line.split(" ", 1)[1]
    assert [line.split(" ", 1)[1] for line in recorded.read_text().splitlines()] == [host_key]
    assert main(["deploy", bundle, "--board", "b"]) == 0  # recorded: no flag needed now
    capsys.readouterr()

    with LocalBoard() as other:  # another key for the same address
        other_key = other.known_hosts.read_text().split(" ", 1)[1]
    name = board.known_hosts_line.split(" ", 1)[0]
    recorded.write_text(f"{name} {other_key}")
    for extra in ([], ["--trust-new-host"]):  # a changed key is refused, trusted or not
        assert main(["deploy", bundle, "--board", "b", *extra]) == 8
        line = one_line(capsys.readouterr().err)
        assert "CHANGED" in line and "ssh-keygen -R" in line
    assert recorded.read_text() == f"{name} {other_key}"


def test_no_retry_on_auth_or_host_key_failure(board, root, trusted, tmp_path):
    from edgeopt.errors import BoardUnreachableError, HostKeyError

    key = tmp_path / "stranger"
    sshd.write_key(key)
    c = Connection(dataclasses.replace(board.spec(known_hosts=trusted, remote_root=root), identity_file=key))
    with pytest.raises(BoardUnreachableError, match="authentication"):
        c.connect()
    assert c.attempts == 1
    empty = tmp_path / "empty"
    empty.write_text("")
    c = Connection(board.spec(known_hosts=empty, remote_root=root))
    with pytest.raises(HostKeyError):
        c.connect()
    assert c.attempts == 1


def test_ssh_config_alias(board, root, trusted, tmp_path, monkeypatch):
    from edgeopt.toolkit.boards.names import board_spec

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/config").write_text(
        f"Host myboard\n  HostName {board.host}\n  Port {board.port}\n"
        f"  User {board.user}\n  IdentityFile {board.client_key}\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("EDGEOPT_CONFIG_DIR", str(tmp_path / "cfg"))
    spec = board_spec("myboard", known_hosts=trusted)
    assert (spec.host, spec.port, spec.user, spec.identity_file) == (
        board.host,
        board.port,
        board.user,
        board.client_key,
    )
    with Connection(dataclasses.replace(spec, use_ssh_agent=False)) as c:
        assert c.arch() == board.arch


# -- board info / clean ------------------------------------------------------------------------------


def test_board_info_and_clean(board, user_env, onnx_bundle, host_bundle, capsys):
    (user_env / "known_hosts").write_text(board.known_hosts_line + "\n")
    for b in (host_bundle, onnx_bundle):
        cli_json(capsys, "deploy", str(b.path), "--board", "b")
    info = cli_json(capsys, "board", "info", "b")
    assert info["board"]["arch"] == board.arch and info["runtime_ok"]
    assert sorted(info["store"]["bundles"]) == sorted([host_bundle.id, onnx_bundle.id])
    cleaned = cli_json(capsys, "board", "clean", "b", "--keep", "1")
    assert cleaned["kept"] == [onnx_bundle.id]  # the most recently deployed
    assert cli_json(capsys, "board", "info", "b")["store"]["bundles"] == [onnx_bundle.id]


def test_doctor_checks_the_board(board, user_env, capsys):
    (user_env / "known_hosts").write_text(board.known_hosts_line + "\n")
    code = main(["doctor", "--board", "b", "--json"])
    doc = json.loads(capsys.readouterr().out)
    board_checks = {c["name"]: c for c in doc["checks"] if c["scope"] == "board"}
    assert board_checks["ssh"]["ok"] and board_checks["tvm runtime"]["ok"], doc
    assert code == (0 if doc["ok"] else 1)


# -- provisioning -------------------------------------------------------------------------------------


def test_board_setup_installs_the_runtime_into_a_venv(
    board, root, user_env, onnx_bundle, tmp_path, monkeypatch, capsys
):
    """The host downloads the wheels (pip's cache and index, as configured on the host), the board
    installs them offline (--no-index) into <root>/venv, and the agent then runs with that venv."""
    monkeypatch.setenv("EDGEOPT_CACHE_DIR", str(tmp_path / "cache"))
    (user_env / "known_hosts").write_text(board.known_hosts_line + "\n")
    # no python= in boards.toml: the agent must find the venv by itself
    (user_env / "boards.toml").write_text(board.toml("b", root).replace(f'python = "{board.python}"\n', ""))
    doc = cli_json(capsys, "board", "setup", "b")
    venv_python = f"{root}/venv/bin/python"
    assert doc["python"] == venv_python and doc["tvm"] == "0.27.0.post1"
    assert len(doc["wheels_uploaded"]) == doc["wheels_total"] >= 5
    assert board.local(venv_python).exists()
    info = cli_json(capsys, "board", "info", "b")
    assert info["provisioned"] and info["runtime_ok"] and info["python"] == venv_python
    bench = cli_json(capsys, "bench", str(onnx_bundle.path), "--board", "b", "--runs", "5", "--warmup", "1")
    assert bench["board"]["executable"].startswith(board.on_board(f"{root}/venv"))
    assert bench["latency_ms"]["runs"] == 5
    again = cli_json(capsys, "board", "setup", "b")
    assert again["wheels_uploaded"] == []  # already on the board, same sha256


def test_failed_upload_leaves_no_temporary_file(board, root, trusted, tmp_path):
    from pathlib import PurePosixPath

    from edgeopt.errors import BoardError

    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 50_000)
    target = PurePosixPath(root) / "d" / "f.bin"
    with Connection(board.spec(known_hosts=trusted, remote_root=root)) as c:
        c.makedirs(target)  # a directory where the file should go: the rename must fail
        with pytest.raises(BoardError, match="uploading f.bin"):
            c.upload(src, target)
    assert [p.name for p in board.local(str(target.parent)).iterdir()] == ["f.bin"]
    assert board.local(str(target)).is_dir()
