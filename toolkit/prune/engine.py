"""The pruning loop: allocate per-layer ratios, prune along the schedule, fine-tune between
steps (optionally distilling from the dense model), then make the result permanent."""

from __future__ import annotations

import copy
import math
from typing import Callable

import torch
from torch import nn

from edgeopt.errors import UsageError

from ..data import Dataset
from ..models import Model
from ..sparsity import compare, prunable_layers
from ..train import evaluate, train
from . import sensitivity, structured, unstructured
from .artifact import PrunedModel
from .config import Allocation, Method, PruneConfig, Scope

BISECTION_STEPS = 16


class _Plan:
    """How to prune one module: which layers, with what per-layer shape, by which method."""

    def __init__(self, module: nn.Module, example: torch.Tensor, config: PruneConfig) -> None:
        self.config = config
        self.example = example
        self.structured = config.method is Method.structured
        names = [n for n, _ in prunable_layers(module)]
        unknown = sorted(set(config.exclude) - set(names))
        if unknown:
            raise UsageError(
                f"--exclude names no prunable layer: {', '.join(unknown)}", hint=f"prunable layers: {', '.join(names)}"
            )
        # a structured pruner must keep the outputs of the layers that produce the model's output
        self.ignored = list(config.exclude) + (
            [n for n in structured.output_layers(module, example) if n not in config.exclude] if self.structured else []
        )
        self.candidates = [n for n in names if n not in self.ignored]
        self.total = sum(layer.weight.numel() for _, layer in prunable_layers(module))
        self.base: dict[str, float] | None = (
            None if config.scope is Scope.global_ else {n: 1.0 for n in self.candidates}
        )
        self.p = 1 if config.importance.value == "l1" else 2
        self.channels = {n: layer.weight.shape[0] for n, layer in prunable_layers(module)}

    def removed(self, module: nn.Module) -> float:
        return 1.0 - unstructured.nonzero_params(module) / self.total

    def apply(self, module: nn.Module, scale: float, ratios: dict[str, float] | None = None) -> None:
        """Prune in place: each layer by scale * its base ratio (or `ratios` as given)."""
        ratios = (
            ratios
            if ratios is not None
            else (None if self.base is None else {n: scale * r for n, r in self.base.items()})
        )
        if self.structured:
            if ratios is not None:
                # ratios are of the original channels; torch-pruning takes ratios of today's
                now = {n: layer.weight.shape[0] for n, layer in prunable_layers(module)}
                ratios = {
                    n: max(0.0, 1.0 - (1.0 - min(r, structured.MAX_LAYER_RATIO)) * self.channels[n] / now[n])
                    for n, r in ratios.items()
                }
            structured.apply(module, self.example, ratios=ratios, global_ratio=scale, ignored=self.ignored, p=self.p)
        elif ratios is not None:
            unstructured.apply_ratios(module, ratios)
        else:
            unstructured.apply_global(
                module, self.candidates, math.ceil(scale * self.total), cap=unstructured.global_cap(self.config.target)
            )

    def prune_one(self, module: nn.Module, name: str, ratio: float) -> nn.Module:
        trial = copy.deepcopy(module)
        self.apply(trial, 0.0, {name: ratio})
        return trial

    def prune_to(self, module: nn.Module, target: float) -> None:
        """Prune `module` in place until at least `target` of the original weights are gone."""
        if self.removed(module) >= target:
            return
        if not self.structured and self.base is None:
            self.apply(module, target)  # a global threshold hits a count exactly, within the layer caps
            if self.removed(module) < target - 1e-9:
                raise UsageError(
                    f"cannot remove {target:.0%} of the prunable weights with these settings (at most "
                    f"{self.removed(module):.1%}: no layer is pruned past "
                    f"{unstructured.global_cap(self.config.target):.1%})",
                    hint="exclude fewer layers",
                )
            return
        positive = [r for r in (self.base or {"_": 1.0}).values() if r > 0] or [1.0]
        hi = structured.MAX_LAYER_RATIO / min(positive) if self.structured else 1.0 / min(positive)

        def reached(scale: float) -> float:
            trial = copy.deepcopy(module)
            self.apply(trial, scale)
            return self.removed(trial)

        best = reached(hi)
        if best < target - 1e-9:
            raise UsageError(
                f"cannot remove {target:.0%} of the prunable weights with these settings (at most {best:.1%})",
                hint="exclude fewer layers, or use --method magnitude",
            )
        lo = 0.0
        for _ in range(BISECTION_STEPS):
            mid = (lo + hi) / 2
            if reached(mid) >= target:
                hi = mid
            else:
                lo = mid
        self.apply(module, hi)


def _recover(
    module: nn.Module,
    data: Dataset,
    config: PruneConfig,
    plan: _Plan,
    dense: nn.Module,
    on_step: Callable[[dict], None] | None,
) -> list[dict]:
    """While the pruned model's validation accuracy is more than the budget below the dense
    model's: another round of fine-tuning, distilled from the dense model (its soft labels carry
    what the removed weights knew). At most `recovery_rounds`; the best round by validation
    accuracy is kept, so a round can never make the result worse."""
    x_val, y_val = data.x_val, data.y_val
    dense_val = evaluate(dense, x_val, y_val)
    best_val = evaluate(module, x_val, y_val)
    best_state, last_is_best = copy.deepcopy(module.state_dict()), True
    steps = []
    for r in range(config.recovery_rounds):
        if dense_val - best_val <= config.budget + 1e-12:
            break
        train(
            module,
            data.x_train,
            data.y_train,
            epochs=max(config.final_epochs, 1),
            seed=config.seed + 100 + r,
            lr=2 * config.lr,
            teacher=dense,
            distill_alpha=config.distill_alpha,
            temperature=config.temperature,
        )
        val = evaluate(module, x_val, y_val)
        step = {
            "step": len(config.step_targets) + r + 1,
            "recovery": True,
            "target": config.target,
            "removed": plan.removed(module),
            "val_accuracy": val,
            "dense_val_accuracy": dense_val,
        }
        steps.append(step)
        if on_step:
            on_step(step)
        last_is_best = val > best_val
        if last_is_best:
            best_val, best_state = val, copy.deepcopy(module.state_dict())
    if not last_is_best:
        module.load_state_dict(best_state)
    return steps


def prune(
    model: Model, data: Dataset, *, config: PruneConfig, on_step: Callable[[dict], None] | None = None
) -> PrunedModel:
    """Prune a copy of `model` to `config.target`; the dense model is left as it was. Decisions
    (sensitivity, allocation) use the validation split; accuracy is reported on the test split."""
    config.validate()
    original = model.module.eval()
    module = copy.deepcopy(original)
    example = torch.zeros(model.spec.shape)
    x_val, y_val = data.x_val, data.y_val
    plan = _Plan(module, example, config)
    teacher = original if config.distill else None

    table = shares = None
    if config.allocation is Allocation.sensitivity:
        table = sensitivity.scan(
            module,
            plan.candidates,
            config.sensitivity_ratios,
            prune_one=plan.prune_one,
            score=lambda m: evaluate(m, x_val, y_val),
            removed=plan.removed,
        )
        if config.latency_weighted:
            from .latency import layer_latencies

            latencies = layer_latencies(module, model.spec.shape, plan.candidates)
            total_ms = sum(latencies.values())
            shares = {n: ms / total_ms for n, ms in latencies.items()}
        allocation = sensitivity.allocate(table, config.target, shares)
        if any(r > 0 for r in allocation.values()):
            plan.base = allocation

    steps = []
    targets = config.step_targets
    for i, target in enumerate(targets):
        plan.prune_to(module, target)
        last = i == len(targets) - 1
        train(
            module,
            data.x_train,
            data.y_train,
            epochs=config.final_epochs if last else config.epochs_per_step,
            seed=config.seed + i,
            lr=config.lr,
            teacher=teacher,
            distill_alpha=config.distill_alpha,
            temperature=config.temperature,
        )
        step = {
            "step": i + 1,
            "target": target,
            "removed": plan.removed(module),
            "val_accuracy": evaluate(module, x_val, y_val),
        }
        steps.append(step)
        if on_step:
            on_step(step)
    if config.budget is not None:
        steps += _recover(module, data, config, plan, original, on_step=on_step)
    if not plan.structured:
        unstructured.finish(module)
    module.eval()
    pruned = Model(module, model.spec, evaluate(module, data.x_test, data.y_test))
    return PrunedModel(
        model=pruned,
        layers=compare(original, module, model.spec.shape),
        accuracy_before=evaluate(original, data.x_test, data.y_test),
        accuracy_after=pruned.accuracy,
        config=config,
        steps=steps,
        sensitivity=sensitivity.to_json(table) if table else None,
        layer_latency_share=shares if table else None,
        allocation=plan.base,
    )
