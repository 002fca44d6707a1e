"""Pruning: unstructured magnitude or structured (neurons/filters removed), one-shot or gradual,
optional distillation and sensitivity-based per-layer ratios."""
from .artifact import PrunedModel
from .config import (MIN_TARGET, Allocation, Importance, Method, PruneConfig, Schedule, Scope,
                     cubic_schedule)
from .engine import prune

__all__ = ["MIN_TARGET", "Allocation", "Importance", "Method", "PruneConfig", "PrunedModel", "Schedule",
           "Scope", "cubic_schedule", "prune"]
