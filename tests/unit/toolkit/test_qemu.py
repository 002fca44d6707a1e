"""The emulated board's pieces that need no QEMU: recipe hashing, the host-key and boards.toml
bookkeeping `up`/`down` do, the fake cpuinfo, the missing-package message."""

from __future__ import annotations

import pytest
from edgeopt.toolkit.boards.config import load_boards
from edgeopt.toolkit.boards.qemu import host, recipe, register
from edgeopt.toolkit.boards.qemu.user import cpuinfo

from edgeopt.errors import BoardError, HostKeyError

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqX0eR1Jm3b1rM0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEOPT_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "cfg"


def test_recipe_key_changes_with_the_recipe_only():
    assert recipe.key(recipe.recipe()) == recipe.key(recipe.recipe())
    assert recipe.key(recipe.recipe()) != recipe.key(recipe.recipe("http://mirror.example/debian"))
    r = recipe.recipe()
    assert "apache-tvm==0.27.0.post1" in r["wheels"] and "onnxruntime" in r["wheels"]
    assert "/home/edgeopt/.edgeopt/venv" in r["customize"]  # where `edgeopt board setup` puts it


def test_up_records_and_down_removes_exactly_its_own_lines(cfg):
    cfg.mkdir()
    (cfg / "known_hosts").write_text("[10.0.0.1]:22 ssh-ed25519 AAAAother\n")
    (cfg / "boards.toml").write_text('[boards.rzv2l]\nhost = "192.168.1.50"\n')
    register.record_host_keys("user", "127.0.0.1", 2222, [KEY])
    register.write_board(
        "user", "qemu", host="127.0.0.1", port=2222, user="edgeopt", identity_file=cfg / "id", target="aarch64"
    )
    boards = load_boards()
    assert boards["qemu"].port == 2222 and boards["qemu"].target == "aarch64" and "rzv2l" in boards
    assert f"[127.0.0.1]:2222 {KEY} edgeopt-qemu-user" in (cfg / "known_hosts").read_text()
    register.forget_host_keys("user")
    register.remove_board("user")
    assert (cfg / "known_hosts").read_text() == "[10.0.0.1]:22 ssh-ed25519 AAAAother\n"
    assert (cfg / "boards.toml").read_text() == '[boards.rzv2l]\nhost = "192.168.1.50"\n'


def test_a_foreign_key_for_the_port_is_refused(cfg):
    cfg.mkdir()
    (cfg / "known_hosts").write_text("[127.0.0.1]:2222 ssh-ed25519 AAAAsomeoneelse\n")
    with pytest.raises(HostKeyError, match="another host key"):
        register.record_host_keys("user", "127.0.0.1", 2222, [KEY])


def test_a_users_own_qemu_table_is_not_overwritten(cfg):
    cfg.mkdir()
    (cfg / "boards.toml").write_text('[boards.qemu]\nhost = "10.1.1.1"\n')
    with pytest.raises(BoardError, match="of its own"):
        register.write_board(
            "user", "qemu", host="127.0.0.1", port=2222, user="edgeopt", identity_file=cfg / "id", target="aarch64"
        )


def test_fake_cpuinfo_names_the_core_and_its_features():
    from edgeopt.board.agent.bundle import cpu_flags  # noqa: F401  (the agent parses the same format)

    text = cpuinfo("cortex-a76", ["fp", "asimd", "asimddp"], 2)
    assert text.count("processor\t: ") == 2 and "CPU part\t: 0xd0b" in text
    assert "Features\t: fp asimd asimddp" in text and "model name\t: cortex-a76 (emulated" in text


def test_missing_host_packages_named_in_one_error(monkeypatch):
    monkeypatch.setattr(host, "HOST_PACKAGES", {**host.HOST_PACKAGES, "mmdebstrap": "/nonexistent/mmdebstrap"})
    with pytest.raises(host.QemuHostError) as e:
        host.require(root=False)
    assert "mmdebstrap" in str(e.value) and "apt-get install" in str(e.value)
