"""The Pareto front and the best setting within the budget."""

from __future__ import annotations

from edgeopt.toolkit.sweep.pareto import best, front


def rec(sid, acc, p50, size, ok=True, within=True):
    return {
        "setting_id": sid,
        "ok": ok,
        "val_accuracy": acc,
        "bytes": size,
        "within_budget": within,
        "boards": {"a": {"p50_ms": p50}, "b": {"p50_ms": p50 * 2}},
    }


def test_front_drops_dominated_and_failed_settings():
    rs = [
        rec("fast", 0.90, 1.0, 100),
        rec("accurate", 0.95, 2.0, 100),
        rec("dominated", 0.90, 2.0, 200),
        rec("small", 0.85, 3.0, 50),
        rec("broken", 0.99, 0.1, 1, ok=False),
    ]
    assert [r["setting_id"] for r in front(rs, ["a", "b"])] == ["fast", "accurate", "small"]


def test_best_is_the_fastest_within_budget_or_none():
    rs = [rec("fast", 0.80, 1.0, 100, within=False), rec("ok", 0.95, 2.0, 100), rec("ok-big", 0.96, 2.0, 300)]
    assert best(rs, ["a"])["setting_id"] == "ok"
    assert best([rec("x", 0.5, 1.0, 1, within=False)], ["a"]) is None


def test_a_board_is_an_objective():
    r1, r2 = rec("one", 0.9, 1.0, 100), rec("two", 0.9, 1.0, 100)
    r2["boards"]["b"]["p50_ms"] = 0.5  # equal on board a, faster on board b
    assert [r["setting_id"] for r in front([r1, r2], ["a", "b"])] == ["two"]
    assert {r["setting_id"] for r in front([r1, r2], ["a"])} == {"one", "two"}


def test_a_setting_sampled_twice_is_one_row_measured_first():
    from edgeopt.toolkit.sweep.engine import _unique

    rs = [
        {"setting_id": "s", "ok": False, "error": "board busy"},
        {"setting_id": "s", "ok": True, "boards": {"a": 1}},
        {"setting_id": "t", "ok": True, "boards": {}},
    ]
    u = {r["setting_id"]: r for r in _unique(rs)}
    assert len(u) == 2 and u["s"]["ok"] and u["s"]["repeats"] == ["board busy"]
