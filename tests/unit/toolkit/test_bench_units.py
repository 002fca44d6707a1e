"""The bench report's pure parts: fleet exit codes, which boards share a CPU, [groups], history refs."""

from __future__ import annotations

import json

import pytest
from edgeopt.toolkit.bench import fleet, history

from edgeopt.errors import InputError, UsageError


def test_exit_code():
    ok, bad7, bad8 = {"ok": True}, {"ok": False, "exit_code": 7}, {"ok": False, "exit_code": 8}
    assert fleet.exit_code([ok, ok]) == 0
    assert fleet.exit_code([ok, bad7]) == 9  # some failed: the report holds the others
    assert fleet.exit_code([bad8, bad7]) == 8  # all failed: the first failure's own code


def test_cpu_identity_and_shared_marking():
    assert fleet.cpu_identity("127.0.0.1") == fleet.cpu_identity("localhost") == fleet.THIS_MACHINE
    assert fleet.cpu_identity("127.0.0.2") == fleet.THIS_MACHINE  # all of 127/8 is this machine
    assert fleet.cpu_identity("192.0.2.7") == "192.0.2.7"  # TEST-NET-1, resolved without a lookup
    boards = [
        {"name": "a", "ok": True, "cpu_identity": "x"},
        {"name": "b", "ok": True, "cpu_identity": "x"},
        {"name": "c", "ok": True, "cpu_identity": "y"},
        {"name": "d", "ok": False, "cpu_identity": "x"},
    ]
    fleet.mark_shared(boards)
    assert [b["shares_cpu_with"] for b in boards] == [["b"], ["a"], [], []]


def test_groups_expand_and_validate(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEOPT_CONFIG_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "boards.toml").write_text('[boards.a]\nhost = "10.0.0.1"\n\n[groups]\nlab = ["a", "local", "a"]\n')
    assert fleet.expand_boards(["lab", "local"]) == ["a", "local"]
    assert fleet.expand_boards([]) == ["local"]
    with pytest.raises(UsageError, match="cannot read board"):
        fleet.expand_boards(["lab", "bad name!"])
    (tmp_path / "boards.toml").write_text('[groups]\nlab = "a"\n')
    with pytest.raises(InputError, match="groups.lab must be a non-empty list"):
        fleet.expand_boards(["lab"])


def test_history_refs(tmp_path):
    h = tmp_path / "h.jsonl"
    for i in range(3):
        history.append({"schema": "edgeopt.bench-report/1", "id": f"abcd{i}e", "boards": []}, h, None)
    assert history.resolve("@-1", h)["id"] == "abcd2e" and history.resolve("@0", h)["id"] == "abcd0e"
    assert history.resolve("abcd1", h)["id"] == "abcd1e"
    with pytest.raises(InputError, match="matches 3 runs"):
        history.resolve("abcd", h)
    with pytest.raises(InputError, match="has 3 run"):
        history.resolve("@5", h)
    h.write_text(h.read_text() + "not json\n")
    with pytest.raises(InputError, match="line 4 is not JSON"):
        history.load(h)
    report = tmp_path / "r"
    report.mkdir()
    (report / "report.json").write_text(json.dumps({"schema": "edgeopt.bench-report/1", "id": "x"}))
    assert history.resolve(str(report), h)["id"] == "x"
