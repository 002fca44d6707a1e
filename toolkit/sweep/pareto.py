"""The Pareto front of finished settings and the best one within the accuracy budget."""

from __future__ import annotations


def objectives(record: dict, boards: list[str]) -> tuple[float, ...]:
    """All to be minimized: -validation accuracy, p50 on every board, bundle bytes."""
    return (-record["val_accuracy"], *(record["boards"][b]["p50_ms"] for b in boards), float(record["bytes"]))


def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def front(records: list[dict], boards: list[str]) -> list[dict]:
    """Measured settings no other measured setting dominates, fastest (first board) first.
    Hand-written: O(n^2) over a few dozen trials needs no library."""
    ok = [r for r in records if r.get("ok")]
    objs = [objectives(r, boards) for r in ok]
    keep = [r for r, o in zip(ok, objs) if not any(dominates(p, o) for p in objs if p is not o)]
    return sorted(keep, key=lambda r: (r["boards"][boards[0]]["p50_ms"], r["bytes"]))


def best(records: list[dict], boards: list[str]) -> dict | None:
    """Within the budget: the lowest p50 on the first board; then the smaller bundle; then the
    higher accuracy. None when no setting met the budget."""
    within = [r for r in front(records, boards) if r.get("within_budget")]
    if not within:
        return None
    return min(within, key=lambda r: (r["boards"][boards[0]]["p50_ms"], r["bytes"], -r["val_accuracy"]))
