"""Boards by name (boards.toml), ~/.ssh/config, thread lists, transient errors, and the board
commands' error contract (one line, documented exit code) - no board needed for any of it."""

import json
import socket

import pytest
from edgeopt.toolkit.cli import main

from edgeopt.errors import BoardUnreachableError, InputError, UsageError


@pytest.fixture
def user(tmp_path, monkeypatch):
    home, cfg, cwd = tmp_path / "home", tmp_path / "cfg", tmp_path / "cwd"
    for d in (home / ".ssh", cfg, cwd):
        d.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("EDGEOPT_CONFIG_DIR", str(cfg))
    monkeypatch.chdir(cwd)
    return home, cfg, cwd


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("edgeopt: error: ")
    return lines[0]


def test_boards_toml_and_local_file_wins(user):
    from edgeopt.toolkit.boards.names import board_spec

    home, cfg, cwd = user
    (cfg / "boards.toml").write_text(
        '[boards.rzv2l]\nhost = "10.0.0.5"\nuser = "root"\nport = 2222\ntarget = "cortex-a55"\n'
        '[boards.pi]\nhost = "pi.lan"\n'
    )
    spec = board_spec("rzv2l")
    assert (spec.host, spec.port, spec.user, spec.target, spec.name) == (
        "10.0.0.5",
        2222,
        "root",
        "cortex-a55",
        "rzv2l",
    )
    (cwd / "boards.toml").write_text('[boards.rzv2l]\nhost = "192.168.1.9"\n')
    assert board_spec("rzv2l").host == "192.168.1.9"  # ./boards.toml wins
    assert board_spec("pi").host == "pi.lan"  # the config dir's other names still count


def test_user_at_host_and_ssh_config(user):
    from edgeopt.toolkit.boards.names import board_spec

    home, cfg, cwd = user
    key = home / ".ssh" / "id_board"
    key.write_text("not read here")
    (home / ".ssh" / "config").write_text(
        f"Host pi\n  HostName 192.168.7.2\n  User pi\n  Port 2200\n  IdentityFile {key}\n"
    )
    spec = board_spec("pi")
    assert (spec.host, spec.user, spec.port, spec.identity_file) == ("192.168.7.2", "pi", 2200, key)
    spec = board_spec("admin@pi:23")  # what the user typed wins over ssh config
    assert (spec.host, spec.user, spec.port) == ("192.168.7.2", "admin", 23)
    assert board_spec("root@10.1.2.3").port == 22


@pytest.mark.parametrize(
    "text,match",
    [
        ('[boards.x]\nuser = "a"\n', "needs host"),
        ('[boards.x]\nhost = "h"\nport = "22"\n', "port"),
        ('[boards.x]\nhost = "h"\npassword = "p"\n', "unknown key"),
        ('[boards.x\nhost = "h"\n', "not valid TOML"),
    ],
)
def test_bad_boards_toml(user, text, match):
    from edgeopt.toolkit.boards.names import board_spec

    (user[1] / "boards.toml").write_text(text)
    with pytest.raises(InputError, match=match):
        board_spec("x")


def test_unreadable_board_name(user):
    from edgeopt.toolkit.boards.names import board_spec

    with pytest.raises(UsageError, match="boards.toml"):
        board_spec("no such board!")


def test_thread_lists():
    from edgeopt.toolkit.boards.ops import parse_threads

    assert parse_threads("1,2,4") == [1, 2, 4] and parse_threads(None) == [None]
    for bad in ("a,b", "0", "1,-2"):
        with pytest.raises(UsageError):
            parse_threads(bad)


def test_refused_connections_are_retried_with_backoff():
    from edgeopt.toolkit.boards.deploy import BoardSpec, Connection

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    c = Connection(
        BoardSpec(kind="ssh", host="127.0.0.1", port=port, use_ssh_agent=False, connect_retries=2, retry_backoff_s=0.01)
    )
    with pytest.raises(BoardUnreachableError, match="after 3 attempts"):
        c.connect()
    assert c.attempts == 3


def test_unresolvable_host_is_not_retried():
    from edgeopt.toolkit.boards.deploy import BoardSpec, Connection

    c = Connection(BoardSpec(kind="ssh", host="no-such-host.invalid", use_ssh_agent=False, retry_backoff_s=0.01))
    with pytest.raises(BoardUnreachableError):
        c.connect()
    assert c.attempts == 1


@pytest.mark.parametrize(
    "argv,code,word",
    [
        (["bench", "BUNDLE", "--threads", "1,x"], 2, "--threads"),
        (["bench", "NOPE", "--board", "local"], 6, "not a bundle"),
        (["deploy", "BUNDLE", "--board", "bad name!"], 2, "cannot read board"),
        (["board", "clean", "x@127.0.0.1", "--keep", "-1"], 2, "--keep"),
        (["bench", "BUNDLE", "--onnx", "missing.onnx"], 3, "missing.onnx"),
    ],
)
def test_board_commands_fail_with_one_line(user, host_bundle, capsys, argv, code, word):
    argv = [str(host_bundle.path) if a == "BUNDLE" else a for a in argv]
    assert main(argv) == code
    assert word in one_line(capsys.readouterr().err)


def test_unreachable_board_cli(user, host_bundle, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (user[1] / "boards.toml").write_text(f'[boards.off]\nhost = "127.0.0.1"\nport = {port}\n')
    assert main(["deploy", str(host_bundle.path), "--board", "off"]) == 7
    assert "cannot reach board" in one_line(capsys.readouterr().err)


def test_doctor_host_checks(user, capsys):
    code = main(["doctor", "--json"])
    doc = json.loads(capsys.readouterr().out)
    names = {c["name"]: c for c in doc["checks"]}
    assert names["apache-tvm"]["ok"] and names["apache-tvm-ffi"]["ok"]
    assert code == (0 if doc["ok"] else 1)
