"""The CLI's error contract: one clear line on stderr, a documented exit code, no traceback."""
import socket
import subprocess
import sys

import pytest

from toolkit.cli import main


def one_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("edgeopt: error: ")
    return lines[0]


def test_wrong_option(capsys):
    assert main(["run", "--no-such-option"]) == 2
    assert "--no-such-option" in one_line(capsys.readouterr().err)


def test_missing_data_file(capsys, tmp_path):
    assert main(["run", "--data", str(tmp_path / "missing.npz")]) == 3
    assert "missing.npz" in one_line(capsys.readouterr().err)


def test_missing_config_file(capsys, tmp_path):
    assert main(["run", "--config", str(tmp_path / "none.toml")]) == 3
    assert "none.toml" in one_line(capsys.readouterr().err)


def test_below_70_refused_with_reason(capsys):
    assert main(["run", "--sparsity", "0.5"]) == 2
    assert "70%" in one_line(capsys.readouterr().err)


def test_unknown_model_and_target(capsys):
    assert main(["run", "--model", "resnet50"]) == 3
    assert "mlp" in one_line(capsys.readouterr().err)
    assert main(["run", "--target", "riscv"]) == 2
    assert "host" in one_line(capsys.readouterr().err)


def test_local_port_in_use(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["run", "--local-port", str(port)]) == 7
    line = one_line(capsys.readouterr().err)
    assert str(port) in line and "in use" in line


def test_console_script_reports_the_same_way():
    r = subprocess.run([sys.executable, "-m", "toolkit", "run", "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stdout == ""
    one_line(r.stderr)


def test_help_lists_run(capsys):
    assert main(["--help"]) == 0
    assert "run" in capsys.readouterr().out
