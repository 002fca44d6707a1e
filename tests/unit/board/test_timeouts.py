"""Board command timeouts: per-verb defaults, scaled for emulated boards, a set value wins; and
an exit code that is a signal is named."""

from __future__ import annotations

import pytest
from edgeopt.toolkit.boards.deploy import (
    DEFAULT_TIMEOUT_S,
    EMULATED_TIMEOUT_SCALE,
    VERB_TIMEOUT_S,
    BoardSpec,
    describe_exit,
    signal_name,
)
from edgeopt.toolkit.boards.names import with_env_timeout

from edgeopt.errors import UsageError


def test_defaults_per_verb_and_scaled_when_emulated():
    real = BoardSpec(kind="ssh", host="h")
    emulated = BoardSpec(kind="qemu-system", host="h")
    assert real.timeout_for("version") == VERB_TIMEOUT_S["version"]
    assert real.timeout_for("bench") == DEFAULT_TIMEOUT_S
    assert emulated.timeout_for("bench") == DEFAULT_TIMEOUT_S * EMULATED_TIMEOUT_SCALE
    assert emulated.timeout_for("version") == VERB_TIMEOUT_S["version"] * EMULATED_TIMEOUT_SCALE
    set_one = BoardSpec(kind="qemu-user", host="h", command_timeout_s=42)
    assert set_one.timeout_for("bench") == set_one.timeout_for("version") == 42


def test_environment_variable(monkeypatch):
    spec = BoardSpec(kind="ssh", host="h", command_timeout_s=5)
    monkeypatch.delenv("EDGEOPT_BOARD_TIMEOUT", raising=False)
    assert with_env_timeout(spec).command_timeout_s == 5
    monkeypatch.setenv("EDGEOPT_BOARD_TIMEOUT", "1800")
    assert with_env_timeout(spec).command_timeout_s == 1800
    for bad in ("soon", "0", "-3", "1e9"):
        monkeypatch.setenv("EDGEOPT_BOARD_TIMEOUT", bad)
        with pytest.raises(UsageError, match="EDGEOPT_BOARD_TIMEOUT"):
            with_env_timeout(spec)


def test_signals_are_named():
    assert signal_name(139) == "SIGSEGV" and signal_name(137) == "SIGKILL"
    assert signal_name(3) is None and signal_name(0) is None
    assert describe_exit(139) == "was killed by SIGSEGV (exit 139)"
    assert describe_exit(3) == "exited 3"
