"""The CLI's error contract: one clear line on stderr, a documented exit code, no traceback."""

import socket
import subprocess
import sys

from edgeopt.toolkit.cli import main


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
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


def test_prune_below_70_refused(capsys, tmp_path):
    assert main(["prune", "mlp", "--target", "0.5", "--out", str(tmp_path / "p")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "--allow-below-70" in line and "70%" in line
    assert not (tmp_path / "p").exists()  # refused before anything was trained or written


def test_prune_bad_choice_and_missing_model(capsys, tmp_path):
    assert main(["prune", "mlp", "--method", "random", "--out", str(tmp_path / "p")]) == 2
    assert "--method" in one_line(capsys.readouterr().err)
    assert main(["prune", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "p")]) == 3
    assert "nope.pt" in one_line(capsys.readouterr().err)


def test_prune_json_from_a_saved_module(tmp_path, trained):
    import json

    import torch

    torch.save(trained.module, tmp_path / "m.pt")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "toolkit",
            "prune",
            str(tmp_path / "m.pt"),
            "--method",
            "structured",
            "--steps",
            "2",
            "--epochs",
            "1",
            "--final-epochs",
            "1",
            "--out",
            str(tmp_path / "p"),
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["sparsity"]["global"] >= 0.70
    assert doc["params"]["before"] == 101632 and doc["params"]["after"] <= 0.3 * 101632
    assert doc["macs"]["after"] < doc["macs"]["before"]
    assert {"before", "after"} <= set(doc["accuracy"]) and len(doc["layers"]) == 2
    assert json.loads((tmp_path / "p" / "prune.json").read_text())["params"] == doc["params"]
