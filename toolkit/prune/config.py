"""Pruning options: closed choices are enums, the config is frozen and validated up front."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from edgeopt.errors import UsageError

MIN_TARGET = 0.70


class Method(str, Enum):
    magnitude = "magnitude"  # unstructured: zero the smallest weights
    structured = "structured"  # remove whole neurons / filters (torch-pruning)


class Schedule(str, Enum):
    oneshot = "oneshot"
    gradual = "gradual"  # Zhu & Gupta's cubic schedule, fine-tuning between steps


class Scope(str, Enum):
    global_ = "global"  # one threshold across layers
    layer = "layer"  # the same ratio in every layer


class Allocation(str, Enum):
    uniform = "uniform"  # as the scope says
    sensitivity = "sensitivity"  # per-layer ratios from a sensitivity scan


class Importance(str, Enum):
    l1 = "l1"
    l2 = "l2"


@dataclass(frozen=True)
class PruneConfig:
    target: float = MIN_TARGET
    method: Method = Method.magnitude
    schedule: Schedule = Schedule.gradual
    scope: Scope = Scope.global_
    allocation: Allocation = Allocation.uniform
    importance: Importance = Importance.l1
    exclude: tuple[str, ...] = ()  # layer names (as in named_modules) never pruned
    steps: int = 4
    epochs_per_step: int = 2
    final_epochs: int = 6
    lr: float = 5e-4
    distill: bool = False
    latency_weighted: bool = False  # sensitivity allocation also weighs each layer's TVM latency
    distill_alpha: float = 0.7
    temperature: float = 4.0
    sensitivity_ratios: tuple[float, ...] = (0.3, 0.5, 0.7, 0.85, 0.95)
    seed: int = 0
    allow_below_70: bool = False
    # allowed drop of validation accuracy below the dense model; past it, recovery rounds (each
    # final_epochs long, distilled from the dense model) follow the schedule. None: no recovery.
    budget: float | None = None
    recovery_rounds: int = 3

    def validate(self) -> None:
        if not 0.0 < self.target < 1.0:
            raise UsageError(f"sparsity target must be a fraction between 0 and 1, got {self.target}")
        if self.target < MIN_TARGET and not self.allow_below_70:
            raise UsageError(
                f"sparsity target {self.target} is below {MIN_TARGET}",
                hint="the DRP-AI-style flow prunes at least 70%; pass --allow-below-70 to go lower",
            )
        if self.steps < 1:
            raise UsageError(f"pruning steps must be >= 1, got {self.steps}")
        if min(self.epochs_per_step, self.final_epochs) < 0:
            raise UsageError("fine-tuning epochs cannot be negative")
        if self.latency_weighted and self.allocation is not Allocation.sensitivity:
            raise UsageError(
                "--latency-weighted weighs the sensitivity allocation", hint="add --allocation sensitivity"
            )
        if self.budget is not None and not 0.0 <= self.budget < 1.0:
            raise UsageError(f"the pruning budget is an accuracy drop, a fraction between 0 and 1, got {self.budget}")
        if self.recovery_rounds < 0:
            raise UsageError("recovery rounds cannot be negative")
        if not all(0.0 < r < 1.0 for r in self.sensitivity_ratios):
            raise UsageError("sensitivity ratios must be fractions between 0 and 1")

    @property
    def step_targets(self) -> list[float]:
        """Cumulative sparsity after each pruning step."""
        if self.schedule is Schedule.oneshot:
            return [self.target]
        return cubic_schedule(self.target, self.steps)

    def to_json(self) -> dict:
        return {
            "target": self.target,
            "method": self.method.value,
            "schedule": self.schedule.value,
            "scope": self.scope.value,
            "allocation": self.allocation.value,
            "importance": self.importance.value,
            "exclude": list(self.exclude),
            "steps": self.steps if self.schedule is Schedule.gradual else 1,
            "epochs_per_step": self.epochs_per_step,
            "final_epochs": self.final_epochs,
            "lr": self.lr,
            "distill": self.distill,
            "latency_weighted": self.latency_weighted,
            "seed": self.seed,
            "budget": self.budget,
            "recovery_rounds": self.recovery_rounds,
        }


def cubic_schedule(target: float, steps: int) -> list[float]:
    """Sparsity after each step: s_t = s_f * (1 - (1 - t/n)^3)  (Zhu & Gupta 2017)."""
    return [target * (1.0 - (1.0 - t / steps) ** 3) for t in range(1, steps + 1)]
