"""Structured pruning that removes neurons and filters, via torch-pruning's dependency graph
(it keeps BatchNorm, residual adds, depthwise groups and concatenations consistent)."""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from edgeopt.errors import UnsupportedModelError

from ..sparsity import prunable_layers

MAX_LAYER_RATIO = 0.95  # never remove a layer's last channels


def output_layers(module: nn.Module, example: torch.Tensor) -> list[str]:
    """Prunable layers whose output is the model's output (their outputs must stay)."""
    outs: dict[str, torch.Tensor] = {}
    hooks = [
        layer.register_forward_hook(lambda m, i, o, n=name: outs.__setitem__(n, o))
        for name, layer in prunable_layers(module)
    ]
    try:
        with torch.no_grad():
            result = module.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    results = result if isinstance(result, (tuple, list)) else [result]
    names = [n for n, o in outs.items() if any(o is r or (o.shape == r.shape and torch.equal(o, r)) for r in results)]
    if not names:  # e.g. a softmax after the classifier: keep the last layer
        names = [prunable_layers(module)[-1][0]]
    return names


def apply(
    module: nn.Module,
    example: torch.Tensor,
    *,
    ratios: dict[str, float] | None,
    global_ratio: float,
    ignored: list[str],
    p: int,
) -> None:
    """Remove channels in place: per-layer `ratios` (of each layer's current output channels),
    or, when `ratios` is None, `global_ratio` of all channels ranked across layers."""
    layers = dict(prunable_layers(module))
    kwargs = {}
    if ratios is not None:
        ratio_dict = {layers[n]: min(MAX_LAYER_RATIO, r) for n, r in ratios.items() if r > 0}
        if not ratio_dict:
            return
        kwargs = {"global_pruning": False, "pruning_ratio": 0.0, "pruning_ratio_dict": ratio_dict}
    else:
        if global_ratio <= 0:
            return
        kwargs = {"global_pruning": True, "pruning_ratio": min(MAX_LAYER_RATIO, global_ratio)}
    try:
        pruner = tp.pruner.MetaPruner(
            module,
            example,
            importance=tp.importance.GroupMagnitudeImportance(p=p),
            ignored_layers=[layers[n] for n in ignored],
            max_pruning_ratio=MAX_LAYER_RATIO,
            **kwargs,
        )
        pruner.step()
    except Exception as exc:  # torch-pruning fails on graphs it cannot trace
        raise UnsupportedModelError(
            "structured pruning cannot follow this model's graph: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            hint="try --method magnitude",
        ) from exc
