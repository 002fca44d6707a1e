"""Sensitivity scan (accuracy drop of each layer pruned alone, at several ratios) and the
allocation of per-layer ratios that reaches a global target with the least predicted loss."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class Point:
    ratio: float
    accuracy: float
    drop: float  # validation accuracy lost, a fraction
    removed: float  # fraction of all original prunable weights this removes


def scan(
    module: nn.Module,
    names: list[str],
    ratios: tuple[float, ...],
    *,
    prune_one: Callable[[nn.Module, str, float], nn.Module],
    score: Callable[[nn.Module], float],
    removed: Callable[[nn.Module], float],
) -> dict[str, list[Point]]:
    """`prune_one(module, name, ratio)` returns a pruned copy; no fine-tuning in between."""
    base = score(module)
    table = {}
    for name in names:
        points = []
        for r in ratios:
            pruned = prune_one(module, name, r)
            acc = score(pruned)
            points.append(Point(r, acc, base - acc, removed(pruned)))
        table[name] = points
    return table


def allocate(
    table: dict[str, list[Point]], target: float, latency_share: dict[str, float] | None = None
) -> dict[str, float]:
    """Greedy: repeatedly take the next ratio step of the layer that loses the least accuracy
    per weight removed, until the (additively predicted) removal reaches the target. With
    `latency_share` (each layer's fraction of the time), the gain is half weights removed,
    half time saved (ratio x share), so time-heavy layers are pruned first at equal loss."""
    curves = {n: [Point(0.0, 0.0, 0.0, 0.0), *pts] for n, pts in table.items()}
    idx = {n: 0 for n in curves}
    while sum(curves[n][idx[n]].removed for n in curves) < target:
        best, best_cost = None, None
        for n, pts in curves.items():
            if idx[n] + 1 >= len(pts):
                continue
            a, b = pts[idx[n]], pts[idx[n] + 1]
            gain = b.removed - a.removed
            if latency_share is not None:
                gain = 0.5 * gain + 0.5 * (b.ratio - a.ratio) * latency_share.get(n, 0.0)
            gain = max(gain, 1e-9)
            cost = max(b.drop, 0.0) - max(a.drop, 0.0)
            cost = max(cost, 0.0) / gain
            if best_cost is None or cost < best_cost:
                best, best_cost = n, cost
        if best is None:
            break  # every layer at its largest scanned ratio
        idx[best] += 1
    return {n: curves[n][idx[n]].ratio for n in curves}


def to_json(table: dict[str, list[Point]]) -> dict:
    return {n: [asdict(p) for p in pts] for n, pts in table.items()}
