"""Pruning: unstructured magnitude or structured (neurons/filters removed), one-shot or gradual,
optional distillation and sensitivity-based per-layer ratios."""

from .config import MIN_TARGET, Allocation, Importance, Method, PruneConfig, Schedule, Scope, cubic_schedule

__all__ = [
    "MIN_TARGET",
    "Allocation",
    "Importance",
    "Method",
    "PruneConfig",
    "PrunedModel",
    "Schedule",
    "Scope",
    "cubic_schedule",
    "prune",
]


def __getattr__(name: str):
    # the torch parts load on first use: the CLI reads PruneConfig's defaults without torch
    if name == "PrunedModel":
        from .artifact import PrunedModel

        return PrunedModel
    if name == "prune":
        from .engine import prune

        return prune
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
